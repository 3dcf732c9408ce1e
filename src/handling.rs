//! What the codes on an alert promise, as rules and in plain words.
//!
//! A handling code is a promise the originator makes to the people whose
//! data the alert holds: `H1` says law-enforcement recipients only. A
//! sharing policy is written by an administrator and can be wrong, so the
//! node keeps the promise whatever the policy says ([`withheld`], checked
//! by `policy::evaluate_all` and the disclosure rules before any rule).
//! H2 and H3 restrict what a recipient does with the alert, not who
//! receives it: they travel with the alert and every screen shows them
//! with their meaning.
//!
//! The meanings here are the one text for the CLI, the console and the
//! policy's explanations: TLP 2.0, the handling codes, and the Admiralty
//! grading (source reliability A–F, information accuracy 1–6).
//!
//! Which peers are law-enforcement agencies is configuration: each
//! `[[peers]]` entry's `kind` ([`PeerKind`]), gathered per agency as
//! [`PeerKinds`]. A peer without a kind is not taken for one.

use serde::Deserialize;

use crate::ids::AgencyId;
use crate::proto::v1::{HandlingCode, InformationAccuracy, SourceReliability, Tlp};

/// What kind of agency a peer is (`[[peers]] kind` in `node.toml`): the
/// handling codes are promises about kinds of recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerKind {
    /// Police, border guard, customs, prosecution.
    LawEnforcement,
    /// A labour inspectorate.
    LabourInspectorate,
    /// A non-governmental organisation (shelters, hotlines).
    Ngo,
    /// Any other agency.
    Other,
}

impl PeerKind {
    /// The kind, as a sentence fragment ("peer ngo is an NGO").
    pub fn phrase(self) -> &'static str {
        match self {
            Self::LawEnforcement => "a law-enforcement agency",
            Self::LabourInspectorate => "a labour inspectorate",
            Self::Ngo => "an NGO",
            Self::Other => "not a law-enforcement agency",
        }
    }
}

/// The kinds of a node's peers, as `node.toml` sets them (a peer missing
/// here has no kind set).
pub type PeerKinds = std::collections::BTreeMap<AgencyId, PeerKind>;

/// Why an alert with `handling` must not go to `peer` of `kind`, if it
/// must not: H1 goes to law-enforcement agencies only, and a peer whose
/// kind is not set is not taken for one.
pub fn withheld(handling: i32, peer: &AgencyId, kind: Option<PeerKind>) -> Option<String> {
    if handling != HandlingCode::H1 as i32 || kind == Some(PeerKind::LawEnforcement) {
        return None;
    }
    Some(match kind {
        Some(k) => format!(
            "handling code H1 is for law-enforcement recipients only; peer {peer} is {}",
            k.phrase()
        ),
        None => format!(
            "handling code H1 is for law-enforcement recipients only; peer {peer} has no \
             `kind` in node.toml's [[peers]], so it is not taken for one"
        ),
    })
}

/// What a handling code asks of whoever holds the alert.
pub fn handling_meaning(code: i32) -> &'static str {
    match HandlingCode::try_from(code).unwrap_or(HandlingCode::Unspecified) {
        HandlingCode::Unspecified => "no handling code: the TLP marking alone applies",
        HandlingCode::H0 => "may be shared within the federation without further conditions",
        HandlingCode::H1 => "law-enforcement recipients only",
        HandlingCode::H2 => {
            "no onward disclosure by the recipient without the originator's consent"
        }
        HandlingCode::H3 => "special conditions: contact the originator before any action",
    }
}

/// Who may see what carries a TLP marking (FIRST TLP 2.0).
pub fn tlp_meaning(tlp: i32) -> &'static str {
    match Tlp::try_from(tlp).unwrap_or(Tlp::Unspecified) {
        Tlp::Unspecified => "no TLP marking",
        Tlp::Clear => "no limit on disclosure",
        Tlp::Green => "the community (the federation's agencies), not the public",
        Tlp::Amber => "the recipient organisation and those it serves, on a need-to-know basis",
        Tlp::AmberStrict => "the recipient organisation only",
        Tlp::Red => "named recipients only: never leaves this node",
    }
}

/// How far the source of the information has proved reliable (Admiralty A–F).
pub fn reliability_meaning(code: i32) -> &'static str {
    match SourceReliability::try_from(code).unwrap_or(SourceReliability::Unspecified) {
        SourceReliability::Unspecified => "not graded",
        SourceReliability::A => "A: completely reliable (no doubt of the source's authenticity)",
        SourceReliability::B => "B: usually reliable (minor doubts, a valid history mostly)",
        SourceReliability::C => "C: fairly reliable (doubts, but valid information before)",
        SourceReliability::D => "D: not usually reliable (significant doubts)",
        SourceReliability::E => "E: unreliable (a history of invalid information)",
        SourceReliability::F => "F: reliability cannot be judged",
    }
}

/// How far the information itself is confirmed (Admiralty 1–6).
pub fn accuracy_meaning(code: i32) -> &'static str {
    match InformationAccuracy::try_from(code).unwrap_or(InformationAccuracy::Unspecified) {
        InformationAccuracy::Unspecified => "not graded",
        InformationAccuracy::InformationAccuracy1 => "1: confirmed by other independent sources",
        InformationAccuracy::InformationAccuracy2 => {
            "2: probably true (logical, consistent, not confirmed)"
        }
        InformationAccuracy::InformationAccuracy3 => {
            "3: possibly true (reasonably logical, partly agrees)"
        }
        InformationAccuracy::InformationAccuracy4 => {
            "4: doubtful (possible, not logical, not confirmed)"
        }
        InformationAccuracy::InformationAccuracy5 => "5: improbable (illogical, contradicted)",
        InformationAccuracy::InformationAccuracy6 => "6: truth cannot be judged",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h1_reaches_law_enforcement_only() {
        let ngo = AgencyId::new("ngo").unwrap();
        let h1 = HandlingCode::H1 as i32;
        assert_eq!(withheld(h1, &ngo, Some(PeerKind::LawEnforcement)), None);
        let why = withheld(h1, &ngo, Some(PeerKind::Ngo)).unwrap();
        assert!(why.contains("peer ngo is an NGO"), "{why}");
        assert!(withheld(h1, &ngo, Some(PeerKind::LabourInspectorate)).is_some());
        assert!(withheld(h1, &ngo, None).unwrap().contains("no `kind`"));
        for other in [
            HandlingCode::Unspecified,
            HandlingCode::H0,
            HandlingCode::H2,
            HandlingCode::H3,
        ] {
            assert_eq!(withheld(other as i32, &ngo, None), None, "{other:?}");
        }
    }

    #[test]
    fn every_code_has_words() {
        for c in 0..=4 {
            assert!(!handling_meaning(c).is_empty());
        }
        assert_eq!(handling_meaning(99), handling_meaning(0));
        assert!(tlp_meaning(Tlp::Red as i32).contains("never leaves"));
    }
}
