//! What a receiver must understand to apply an envelope without changing
//! its meaning: the capability of its kind, those its content uses (person
//! encodings of scheme 2), and those the sender names in
//! `Envelope.requires`. The sender holds what a peer has not announced
//! ([`needed`]); the receiver answers "not understood" to what it lacks
//! ([`not_understood`]) instead of refusing it for good.

use crate::proto::v1::envelope::Payload;
use crate::proto::v1::{Envelope, SharedAlert};
use crate::release::{Capabilities, Capability};

/// The capabilities applying `payload` takes, its kind's first.
pub fn needed(payload: &Payload) -> Vec<Capability> {
    match payload {
        Payload::Alert(a) if uses_scheme_2(a) => {
            vec![Capability::Alert, Capability::PersonEncoding2]
        }
        Payload::Alert(_) => vec![Capability::Alert],
        Payload::HitNotice(_) => vec![Capability::HitNotice],
        Payload::HitReview(_) => vec![Capability::HitReview],
        Payload::DisclosureRequest(_) => vec![Capability::DisclosureRequest],
        Payload::DisclosureDecision(_) => vec![Capability::DisclosureDecision],
        Payload::ClarificationAnswer(_) => vec![Capability::ClarificationAnswer],
        Payload::Release(_) => vec![Capability::Release],
        Payload::ReleaseWithdrawal(_) => vec![Capability::ReleaseWithdrawal],
        Payload::StatsReports(_) | Payload::StatsAggregate(_) | Payload::StatsCall(_) => {
            vec![Capability::Stats]
        }
    }
}

/// Scheme 2 encodings carry a name filter; scheme 1 a record filter only.
fn uses_scheme_2(a: &SharedAlert) -> bool {
    a.subjects
        .iter()
        .flat_map(|s| &s.encodings)
        .any(|e| !e.name.is_empty())
}

/// Why this node (understanding `ours`) cannot apply `env`, if it cannot:
/// a kind it does not know (a newer sender's: the payload arrives empty),
/// a kind or feature it withholds, or a capability `requires` names that
/// it lacks.
pub fn not_understood(env: &Envelope, ours: &Capabilities) -> Option<String> {
    let Some(payload) = &env.payload else {
        return Some("an envelope kind this release does not know".into());
    };
    let lacking: Vec<String> = ours
        .missing(&needed(payload))
        .into_iter()
        .map(|c| c.name().to_owned())
        .chain(
            env.requires
                .iter()
                .filter(|n| Capability::from_name(n).is_none_or(|c| !ours.has(c)))
                .take(8)
                .map(|n| {
                    let n: String = n.chars().take(64).collect();
                    crate::text::escape(&n).into_owned()
                }),
        )
        .collect();
    (!lacking.is_empty()).then(|| format!("needs {}", lacking.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{HitReviewNotice, PersonEncoding, SharedSubject};

    fn alert_with(name: &[u8]) -> Payload {
        Payload::Alert(SharedAlert {
            subjects: vec![SharedSubject {
                encodings: vec![PersonEncoding {
                    name: name.to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    #[test]
    fn scheme_2_encodings_need_their_capability() {
        assert_eq!(needed(&alert_with(&[])), [Capability::Alert]);
        assert_eq!(
            needed(&alert_with(&[1; 128])),
            [Capability::Alert, Capability::PersonEncoding2]
        );
    }

    #[test]
    fn what_a_receiver_lacks_is_named() {
        let ours = Capabilities::ours();
        let review = Envelope {
            payload: Some(Payload::HitReview(HitReviewNotice::default())),
            ..Default::default()
        };
        assert_eq!(not_understood(&review, &ours), None);
        let withheld = ours.without(&[Capability::HitReview]);
        assert_eq!(
            not_understood(&review, &withheld).as_deref(),
            Some("needs hit-review")
        );
        let future = Envelope {
            requires: vec!["alert".into(), "sealed-narrative".into()],
            ..review.clone()
        };
        assert_eq!(
            not_understood(&future, &ours).as_deref(),
            Some("needs sealed-narrative")
        );
        assert!(not_understood(&Envelope::default(), &ours).is_some());
    }
}
