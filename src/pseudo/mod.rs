//! Pseudonymization: raw identifiers become keyed tokens before anything
//! leaves the node.
//!
//! - [`normalize`]: one canonical string per identifier, per type.
//! - [`keyring`]: the federation's versioned matching keys, whose validity
//!   windows overlap during a rotation; [`keyfile`]: the format (versions,
//!   windows, 0600 atomic writes) it shares with the OPRF key files.
//! - [`person`]: fuzzy person encodings (scheme 2), one per block (the year
//!   of birth, and the sound of each name word): a name Bloom filter after
//!   folding transliteration variants, keyed tags of the date of birth and
//!   its misreadings; their date agreement levels, score weights, and the
//!   packed form comparisons read.
//! - [`clk`]: the keyed Bloom filters beneath them and their Dice
//!   similarity (popcount chosen at run time), the name-sound keys, and
//!   scheme 1 (kept to compare what older stores and peers hold, and as the
//!   linkage bench's baseline).
//! - [`oprf`]: exact tokens through the key service, RFC 9497 VOPRF
//!   (ristretto255-SHA512, the `voprf` crate): inputs framed with their
//!   type inside, blinding, length-checked parsing, the proof check, the
//!   token derived from an output, the key service's batch evaluation, and
//!   the RFC's test vectors.
//! - [`oprf_keys`]: the key service's secret seeds and the public keys
//!   nodes pin; versions start at 1001, with validity windows.
//! - [`Pseudonymizer`]: token = HMAC-SHA256(key vN, scheme ‖ type ‖ normalized
//!   value), under every key active now; never an unkeyed hash, which a small
//!   space such as phone numbers would let anyone enumerate.

pub mod clk;
pub mod keyfile;
pub mod keyring;
pub mod normalize;
pub mod oprf;
pub mod oprf_keys;
pub mod person;

use time::OffsetDateTime;

use crate::proto::v1::{
    Identifier, PersonEncoding, PersonName, SharedSubject, Subject, Token, identifier::Kind,
};
use crate::violation::FieldViolation;
pub use keyfile::KeyFileError;
pub use keyring::KeyRing;
pub use normalize::{NormalizeError, Normalized};

/// Domain separation for exact tokens; bump when normalization rules change
/// incompatibly (tokens of different schemes never match).
pub const TOKEN_SCHEME: &[u8] = b"casebridge/token/v1";

/// Turns subjects into pseudonymous subjects. Without a key ring the node
/// still validates and normalizes identifiers but shares no tokens.
pub struct Pseudonymizer {
    ring: Option<KeyRing>,
    default_region: Option<String>,
    /// Whether exact tokens come from the key ring (HMAC). Off once the
    /// node takes them from the OPRF key service ([`oprf`]), when the ring
    /// (if any) only keys person encodings; on for both during a migration.
    ring_tokens: bool,
}

impl Pseudonymizer {
    pub fn new(ring: Option<KeyRing>, default_region: Option<String>) -> Self {
        Self {
            ring,
            default_region,
            ring_tokens: true,
        }
    }

    /// Empty tokens of each identifier's type, standing in for the key
    /// service's in a policy test: a policy looks only at which identifier
    /// types a subject has, and a test must not spend the node's
    /// evaluation budget. Never stored or sent.
    pub fn add_stand_in_tokens(&self, subjects: &[Subject], shared: &mut [SharedSubject]) {
        for (subject, shared) in subjects.iter().zip(shared.iter_mut()) {
            for n in self.normalized(&subject.identifiers) {
                shared.tokens.push(Token {
                    r#type: n.kind as i32,
                    ..Default::default()
                });
            }
        }
    }

    /// Whether exact tokens come from the key ring.
    pub fn ring_tokens(&self) -> bool {
        self.ring_tokens && self.ring.is_some()
    }

    /// Whether exact tokens come from the key ring as well (see `ring_tokens`).
    pub fn with_ring_tokens(mut self, on: bool) -> Self {
        self.ring_tokens = on;
        self
    }

    /// The normalized values of `identifiers` that make exact tokens (those
    /// that cannot be normalized are left out: [`Pseudonymizer::identifiers`]
    /// reports them).
    pub fn normalized(&self, identifiers: &[Identifier]) -> Vec<Normalized> {
        let mut out: Vec<Normalized> = identifiers
            .iter()
            .filter_map(|id| id.kind.as_ref())
            .filter_map(|k| {
                normalize::normalize(k, self.default_region.as_deref())
                    .ok()
                    .flatten()
            })
            .collect();
        out.sort_by(|a, b| (a.kind as i32, &a.value).cmp(&(b.kind as i32, &b.value)));
        out.dedup_by(|a, b| a.kind == b.kind && a.value == b.value);
        out
    }

    pub fn ring(&self) -> Option<&KeyRing> {
        self.ring.as_ref()
    }

    /// Tokens of one normalized identifier under every key active at `at`.
    pub fn tokens(&self, n: &Normalized, at: OffsetDateTime) -> Vec<Token> {
        let Some(ring) = self.ring.as_ref().filter(|_| self.ring_tokens) else {
            return Vec::new();
        };
        ring.active(at)
            .map(|key| Token {
                r#type: n.kind as i32,
                key_version: key.version,
                value: key
                    .mac(&[
                        TOKEN_SCHEME,
                        n.kind.as_str_name().as_bytes(),
                        n.value.as_bytes(),
                    ])
                    .to_vec(),
            })
            .collect()
    }

    /// Fuzzy encodings of one person under every key active at `at`, in
    /// every block it falls in (scheme 2, see [`person`]): the sharing
    /// policy picks which blocks each peer is sent.
    pub fn encodings(&self, p: &PersonName, at: OffsetDateTime) -> Vec<PersonEncoding> {
        let Some(ring) = &self.ring else {
            return Vec::new();
        };
        ring.active(at)
            .flat_map(|key| {
                person::encode(
                    key,
                    &p.given_names,
                    &p.family_name,
                    &p.date_of_birth,
                    person::Blocks::BirthYearAndNameSound,
                )
            })
            .collect()
    }

    /// Normalizes every identifier (reporting each one that cannot be, with
    /// its field path under `path`) and derives the tokens.
    pub fn pseudonymize(
        &self,
        subjects: &[Subject],
        path: &str,
        at: OffsetDateTime,
    ) -> Result<Vec<SharedSubject>, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let mut shared = Vec::with_capacity(subjects.len());
        for (i, subject) in subjects.iter().enumerate() {
            match self.identifiers(
                &subject.identifiers,
                &format!("{path}[{i}].identifiers"),
                at,
            ) {
                Ok((tokens, encodings)) => shared.push(SharedSubject {
                    role: subject.role,
                    tokens,
                    encodings,
                }),
                Err(v) => violations.extend(v),
            }
        }
        if violations.is_empty() {
            Ok(shared)
        } else {
            Err(violations)
        }
    }

    /// Tokens and person encodings of a list of identifiers; each one that
    /// cannot be normalized is reported as `{path}[j].<field>`.
    pub fn identifiers(
        &self,
        identifiers: &[Identifier],
        path: &str,
        at: OffsetDateTime,
    ) -> Result<(Vec<Token>, Vec<PersonEncoding>), Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let mut tokens = Vec::new();
        let mut encodings = Vec::new();
        for (j, id) in identifiers.iter().enumerate() {
            let Some(kind) = &id.kind else { continue };
            if let Kind::Person(p) = kind {
                encodings.extend(self.encodings(p, at));
            }
            match normalize::normalize(kind, self.default_region.as_deref()) {
                Ok(Some(n)) => tokens.extend(self.tokens(&n, at)),
                Ok(None) => {}
                Err(e) => violations.push(FieldViolation {
                    field: format!("{path}[{j}].{}", e.field),
                    description: e.reason,
                }),
            }
        }
        // Two identifiers may normalize to the same value.
        tokens.sort_by(|a, b| {
            (a.r#type, a.key_version, &a.value).cmp(&(b.r#type, b.key_version, &b.value))
        });
        tokens.dedup();
        if violations.is_empty() {
            Ok((tokens, encodings))
        } else {
            Err(violations)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::FederationName;
    use crate::proto::v1::{Email, Identifier, IdentifierType, Phone};
    use proptest::prelude::*;

    fn ring(dir: &std::path::Path) -> KeyRing {
        let path = dir.join("keys.toml");
        keyring::generate(&path, &FederationName::new("demo.cb").unwrap()).unwrap();
        KeyRing::load(&path).unwrap()
    }

    fn subject(kinds: Vec<Kind>) -> Subject {
        Subject {
            profile: None,
            role: 0,
            identifiers: kinds
                .into_iter()
                .map(|k| Identifier { kind: Some(k) })
                .collect(),
        }
    }

    fn phone(n: &str) -> Kind {
        Kind::Phone(Phone {
            number: n.into(),
            region: "NL".into(),
        })
    }

    #[test]
    fn spellings_share_a_token_and_types_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pseudonymizer::new(Some(ring(dir.path())), None);
        let now = OffsetDateTime::now_utc();
        let a = p
            .pseudonymize(&[subject(vec![phone("06-12345678")])], "s", now)
            .unwrap();
        let b = p
            .pseudonymize(&[subject(vec![phone("+31 6 1234 5678")])], "s", now)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].tokens.len(), 1);
        assert_eq!(a[0].tokens[0].value.len(), 32);
        // The same normalized string under another type gives another token.
        let n = Normalized {
            kind: IdentifierType::Phone,
            value: "x".into(),
        };
        let m = Normalized {
            kind: IdentifierType::OnlineHandle,
            value: "x".into(),
        };
        assert_ne!(p.tokens(&n, now)[0].value, p.tokens(&m, now)[0].value);
    }

    #[test]
    fn bad_identifiers_are_reported_by_path() {
        let p = Pseudonymizer::new(None, None);
        let errs = p
            .pseudonymize(
                &[subject(vec![
                    phone("06-12345678"),
                    Kind::Email(Email {
                        address: "nope".into(),
                    }),
                ])],
                "draft.subjects",
                OffsetDateTime::now_utc(),
            )
            .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].field,
            "draft.subjects[0].identifiers[1].email.address"
        );
    }

    #[test]
    fn rotation_overlap_keeps_matching() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        keyring::generate(&path, &FederationName::new("demo.cb").unwrap()).unwrap();
        let before = Pseudonymizer::new(Some(KeyRing::load(&path).unwrap()), None);
        let n = Normalized {
            kind: IdentifierType::Phone,
            value: "+31612345678".into(),
        };
        let now = OffsetDateTime::now_utc();
        let old = before.tokens(&n, now);
        keyring::rotate(&path, time::Duration::days(30)).unwrap();
        let after = Pseudonymizer::new(Some(KeyRing::load(&path).unwrap()), None);
        let during = after.tokens(&n, OffsetDateTime::now_utc());
        assert_eq!(during.len(), 2, "both versions during the overlap");
        assert!(
            during.contains(&old[0]),
            "a node that has not rotated yet still matches"
        );
        let after_overlap = after.tokens(&n, OffsetDateTime::now_utc() + time::Duration::days(31));
        assert_eq!(after_overlap.len(), 1);
        assert_eq!(after_overlap[0].key_version, 2);
    }

    proptest! {
        /// Distinct (type, value) pairs never share a token, including pairs
        /// built to collide under naive concatenation.
        #[test]
        fn no_cross_type_or_boundary_collisions(a in "[a-z|]{0,8}", b in "[a-z|]{0,8}") {
            let dir = tempfile::tempdir().unwrap();
            let p = Pseudonymizer::new(Some(ring(dir.path())), None);
            let now = OffsetDateTime::now_utc();
            let types = [IdentifierType::Phone, IdentifierType::Email, IdentifierType::OnlineHandle];
            for (i, t1) in types.iter().enumerate() {
                for (j, t2) in types.iter().enumerate() {
                    let x = p.tokens(&Normalized { kind: *t1, value: a.clone() }, now);
                    let y = p.tokens(&Normalized { kind: *t2, value: b.clone() }, now);
                    prop_assert_eq!(x == y, i == j && a == b);
                }
            }
        }
    }
}
