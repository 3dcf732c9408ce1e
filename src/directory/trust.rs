//! Whether a node adopts a directory, given the one it trusts: TUF's rules
//! for its root metadata, applied to the whole membership list.
//!
//! - the same federation, and a higher version (no rollback, no replay of
//!   an older list with valid signatures);
//! - not expired;
//! - signed by at least the threshold of the signer set the node trusts
//!   now — so no single operator key can forge membership;
//! - when it changes the signer set, also signed by the threshold of the
//!   new set (the new signers accept their role; TUF 5.3.4).
//!
//! A node that missed versions catches up one version at a time through
//! the versions that changed the signer set (each is kept and offered), so
//! every step is checked against the set trusted just before it.

use std::fmt;

use super::signed::Signed;
use crate::proto::v1::{Directory, SignerSet};

/// Why a directory was not adopted; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Another federation's directory.
    WrongFederation { ours: String, theirs: String },
    /// A version at or below the one in force: a rollback or a replay.
    NotNewer { current: u64, offered: u64 },
    /// Past its expiry time.
    Expired { version: u64, expires_at: i64 },
    /// Fewer valid signatures of a set than its threshold.
    BelowThreshold {
        set: SetRole,
        valid: usize,
        threshold: u32,
    },
}

/// Which signer set a threshold was counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetRole {
    /// The set of the directory in force.
    Trusted,
    /// The set the offered directory introduces.
    New,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongFederation { ours, theirs } => write!(
                f,
                "the directory is federation {}'s, not {}'s",
                crate::text::quote(theirs, 80),
                ours
            ),
            Self::NotNewer { current, offered } => write!(
                f,
                "version {offered} is not above version {current}, the one in force (a rollback or a replay)"
            ),
            Self::Expired {
                version,
                expires_at,
            } => write!(
                f,
                "version {version} expired at {}",
                crate::time::format_ms(expires_at.saturating_mul(1000))
            ),
            Self::BelowThreshold {
                set,
                valid,
                threshold,
            } => write!(
                f,
                "{valid} valid signature(s) of the {} signer set; {threshold} needed",
                match set {
                    SetRole::Trusted => "trusted",
                    SetRole::New => "new",
                }
            ),
        }
    }
}

/// The signatures of `signed` that count for `set`, against its threshold.
fn meets(signed: &Signed, set: &SignerSet, role: SetRole) -> Result<(), Refusal> {
    let valid = signed.signed_by(set).len();
    if valid < set.threshold as usize || set.threshold == 0 {
        return Err(Refusal::BelowThreshold {
            set: role,
            valid,
            threshold: set.threshold,
        });
    }
    Ok(())
}

/// Whether a node trusting `current` adopts `offered` at `now` (Unix
/// seconds).
pub fn admit(current: &Directory, offered: &Signed, now: i64) -> Result<(), Refusal> {
    let d = offered.directory();
    if d.federation != current.federation {
        return Err(Refusal::WrongFederation {
            ours: current.federation.clone(),
            theirs: d.federation.clone(),
        });
    }
    if d.version <= current.version {
        return Err(Refusal::NotNewer {
            current: current.version,
            offered: d.version,
        });
    }
    if d.expires_at <= now {
        return Err(Refusal::Expired {
            version: d.version,
            expires_at: d.expires_at,
        });
    }
    let trusted = current.signers.clone().unwrap_or_default();
    meets(offered, &trusted, SetRole::Trusted)?;
    let new = d.signers.clone().unwrap_or_default();
    if new != trusted {
        meets(offered, &new, SetRole::New)?;
    }
    Ok(())
}

/// Whether `anchor` can start a node's trust: a directory the operator
/// hands the node out of band (as TUF clients ship their first root), so
/// it must carry the threshold of its own signer set. It may have expired
/// (the node then waits for a newer version, see docs/directory.md).
pub fn anchor(anchor: &Signed, federation: &str) -> Result<(), Refusal> {
    let d = anchor.directory();
    if d.federation != federation {
        return Err(Refusal::WrongFederation {
            ours: federation.to_owned(),
            theirs: d.federation.clone(),
        });
    }
    meets(anchor, &d.signers.clone().unwrap_or_default(), SetRole::New)
}
