//! Identifier newtypes. Each constructor enforces the syntax once, so the rest
//! of the code can rely on it (e.g. an `AgencyId` is always safe inside a URI,
//! a store key or an alert id).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use uuid::Uuid;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The value is quoted escaped and cut: it may come from a peer, and
    /// this message reaches logs, refusal records and the sender.
    #[error("{kind} {} is invalid: {reason}", crate::text::quote(value, 120))]
    Invalid {
        kind: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// Lower-case DNS-label syntax: 1..=63 of `[a-z0-9-]`, not starting or ending with `-`.
/// Used for agency ids and client names, which appear inside SPIFFE URIs and store keys.
fn check_label(kind: &'static str, value: &str) -> Result<(), IdError> {
    let bad = |reason| {
        Err(IdError::Invalid {
            kind,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() || value.len() > 63 {
        return bad("must be 1 to 63 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("only lower-case letters, digits and '-' are allowed");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return bad("must not start or end with '-'");
    }
    Ok(())
}

macro_rules! label_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_label($kind, &value)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

label_id!(
    /// An agency's id within its federation (e.g. `police`, `ngo-hotline`).
    AgencyId,
    "agency id"
);
label_id!(
    /// Name of one of an agency's own client systems (e.g. `cms`, `analyst`).
    ClientName,
    "client name"
);

/// The name of a register an agency imports (`ImportAlert.source`), which
/// the node keys the register's records by: 1 to 64 of `[a-z0-9._-]`.
/// Checked the same way by the node, a mapping file and the console.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceName(String);

impl SourceName {
    pub const MAX: usize = 64;

    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        let plain =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
        if value.is_empty() || value.len() > Self::MAX || !value.chars().all(plain) {
            return Err(IdError::Invalid {
                kind: "source",
                value,
                reason: "use 1 to 64 of a-z, 0-9, '.', '_' and '-'",
            });
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Federation name: a DNS-like name (labels joined by dots), the authority part
/// of every SPIFFE id in the federation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FederationName(String);

impl FederationName {
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        if value.len() > 253
            || value
                .split('.')
                .any(|l| check_label("federation", l).is_err())
        {
            return Err(IdError::Invalid {
                kind: "federation",
                value,
                reason: "must be dot-separated labels of lower-case letters, digits and '-'",
            });
        }
        Ok(Self(value))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FederationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FederationName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for FederationName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Globally unique alert id: `<origin agency>:<uuid v7>`. The origin is part of
/// the id so a receiver can check it against the authenticated sender, and the
/// v7 uuid keeps one origin's ids in creation order in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertId {
    origin: AgencyId,
    uuid: Uuid,
}

impl AlertId {
    pub fn generate(origin: &AgencyId) -> Self {
        Self {
            origin: origin.clone(),
            uuid: Uuid::now_v7(),
        }
    }
    pub fn origin(&self) -> &AgencyId {
        &self.origin
    }
    /// The uuid part: a v7 uuid orders one origin's alerts, and alerts of
    /// different origins roughly, by when they were recorded.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }
}

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.origin, self.uuid.hyphenated())
    }
}

impl FromStr for AlertId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| IdError::Invalid {
            kind: "alert id",
            value: s.to_owned(),
            reason,
        };
        let (origin, uuid) = s
            .split_once(':')
            .ok_or_else(|| invalid("expected `<agency>:<uuid>`"))?;
        let origin = AgencyId::new(origin)
            .map_err(|_| invalid("the agency part is not a valid agency id"))?;
        let uuid =
            Uuid::try_parse(uuid).map_err(|_| invalid("the uuid part is not a valid uuid"))?;
        // Only the canonical spelling is accepted, so one alert has one key.
        let id = Self { origin, uuid };
        if id.to_string() != s {
            return Err(invalid(
                "not in canonical form (lower-case hyphenated uuid)",
            ));
        }
        Ok(id)
    }
}

/// Ids of disclosure records: `<agency>:<tag>:<uuid v7>`, chosen by the
/// node of `<agency>`. Like an alert id, each names its origin, so a
/// receiver checks it against the authenticated sender.
macro_rules! tagged_id {
    ($(#[$doc:meta])* $name:ident, $tag:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            origin: AgencyId,
            uuid: Uuid,
        }

        impl $name {
            pub fn generate(origin: &AgencyId) -> Self {
                Self {
                    origin: origin.clone(),
                    uuid: Uuid::now_v7(),
                }
            }
            pub fn origin(&self) -> &AgencyId {
                &self.origin
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}:{}:{}", self.origin, $tag, self.uuid.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let invalid = |reason| IdError::Invalid {
                    kind: $kind,
                    value: s.to_owned(),
                    reason,
                };
                let (origin, uuid) = s
                    .split_once(concat!(":", $tag, ":"))
                    .ok_or_else(|| invalid(concat!("expected `<agency>:", $tag, ":<uuid>`")))?;
                let origin = AgencyId::new(origin)
                    .map_err(|_| invalid("the agency part is not a valid agency id"))?;
                let uuid = Uuid::try_parse(uuid)
                    .map_err(|_| invalid("the uuid part is not a valid uuid"))?;
                let id = Self { origin, uuid };
                if id.to_string() != s {
                    return Err(invalid(
                        "not in canonical form (lower-case hyphenated uuid)",
                    ));
                }
                Ok(id)
            }
        }
    };
}

tagged_id!(
    /// A disclosure request: `<requesting agency>:req:<uuid>`.
    RequestId,
    "req",
    "request id"
);

tagged_id!(
    /// A release of approved data: `<holder agency>:rel:<uuid>`.
    ReleaseId,
    "rel",
    "release id"
);

/// An ISO 3166-1 alpha-2 country code in upper case (`NL`, `DE`), checked
/// against the `isocountry` table. Alerts, identifier normalization (phone
/// regions, passport issuers) and the config all accept exactly this set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub fn new(value: &str) -> Result<Self, IdError> {
        if !Self::is_valid(value) {
            return Err(IdError::Invalid {
                kind: "country code",
                value: value.to_owned(),
                reason: "must be an ISO 3166-1 alpha-2 code in upper case (e.g. \"NL\")",
            });
        }
        let b = value.as_bytes();
        Ok(Self([b[0], b[1]]))
    }

    /// Whether `value` is a code [`CountryCode::new`] accepts.
    pub fn is_valid(value: &str) -> bool {
        value.len() == 2
            && value.bytes().all(|b| b.is_ascii_uppercase())
            && isocountry::CountryCode::for_alpha2(value).is_ok()
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("checked ASCII")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CountryCode {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn agency_ids_follow_dns_label_rules() {
        assert!(AgencyId::new("police").is_ok());
        assert!(AgencyId::new("ngo-hotline2").is_ok());
        for bad in ["", "Police", "a_b", "-x", "x-", "a:b", &"x".repeat(64)] {
            assert!(AgencyId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn alert_id_rejects_non_canonical_forms() {
        let id = AlertId::generate(&AgencyId::new("police").unwrap());
        let upper = id
            .to_string()
            .to_uppercase()
            .replacen("POLICE", "police", 1);
        assert!(upper.parse::<AlertId>().is_err());
        assert!("police".parse::<AlertId>().is_err());
        assert!("police:not-a-uuid".parse::<AlertId>().is_err());
    }

    #[test]
    fn country_codes_are_upper_case_iso_alpha2() {
        assert!(CountryCode::is_valid("DE"));
        assert!(!CountryCode::is_valid("de"));
        assert!(!CountryCode::is_valid("ZZ"));
        assert!(!CountryCode::is_valid("DEU"));
        assert_eq!(CountryCode::new("NL").unwrap().as_str(), "NL");
        assert!(CountryCode::new("nl").is_err());
    }

    proptest! {
        #[test]
        fn alert_id_round_trips(origin in "[a-z][a-z0-9-]{0,20}[a-z0-9]") {
            let id = AlertId::generate(&AgencyId::new(origin).unwrap());
            let parsed: AlertId = id.to_string().parse().unwrap();
            prop_assert_eq!(parsed, id);
        }

        /// A request id reads back as itself, and an alert id is never
        /// taken for one (nor the reverse).
        #[test]
        fn request_id_round_trips(origin in "[a-z][a-z0-9-]{0,20}[a-z0-9]") {
            let agency = AgencyId::new(origin).unwrap();
            let id = RequestId::generate(&agency);
            let parsed: RequestId = id.to_string().parse().unwrap();
            prop_assert_eq!(&parsed, &id);
            prop_assert!(id.to_string().parse::<AlertId>().is_err());
            prop_assert!(AlertId::generate(&agency).to_string().parse::<RequestId>().is_err());
        }
    }
}
