//! Moving alerts between nodes.
//!
//! - [`shared_view`] is the one place that turns a local alert into what a peer
//!   receives. It copies named fields into `SharedAlert`, a type with no field
//!   able to hold a raw identifier.
//! - [`outbound`]: one delivery worker per peer drains that peer's durable outbox.
//! - [`inbound`]: checks and applies what peers deliver.
//!
//! Received alerts are never forwarded: only [`crate::alert::Ledger`], which
//! handles the agency's own alerts, queues outbox entries.

pub mod inbound;
pub mod outbound;

pub use inbound::{Inbound, InboundError, Received};
pub use outbound::{Outbound, PeerState};

use crate::policy::Grant;
use crate::policy::model::{IdLevel, LocationLevel, TimeLevel};
use crate::proto::v1::{
    Alert, AlertContent, IdentifierType, SharedAlert, SharedSubject, StoredAlert, TimeWindow,
};

/// The view of a local alert sent to peers with every field at full detail
/// (until the sharing policy is wired into delivery).
pub fn shared_view(record: &StoredAlert) -> SharedAlert {
    shared_view_with(record, &Grant::everything())
}

/// The view of a local alert that a peer receives under `grant`: content
/// generalized to the granted levels and the pseudonymous subjects (tokens,
/// encodings) of granted identifier types only. Raw subjects are not an
/// input here, so they cannot leave the node; a tombstone carries neither
/// content nor subjects. This is the one place outbound alerts are built.
pub fn shared_view_with(record: &StoredAlert, grant: &Grant) -> SharedAlert {
    let alert = record
        .alert
        .as_ref()
        .expect("stored alerts always hold an alert");
    let content = (!alert.retracted)
        .then(|| alert.content.clone().map(|c| generalize(c, grant)))
        .flatten();
    let subjects = if alert.retracted {
        Vec::new()
    } else {
        record
            .pseudonyms
            .iter()
            .map(|s| SharedSubject {
                role: s.role,
                tokens: s
                    .tokens
                    .iter()
                    .filter(|t| grant.identifier(t.r#type) >= IdLevel::Exact)
                    .cloned()
                    .collect(),
                encodings: if grant.identifier(IdentifierType::Person as i32) == IdLevel::Fuzzy {
                    s.encodings.clone()
                } else {
                    Vec::new()
                },
            })
            .filter(|s| !s.tokens.is_empty() || !s.encodings.is_empty())
            .collect()
    };
    SharedAlert {
        id: alert.id.clone(),
        origin: alert.origin.clone(),
        version: alert.version,
        created_at: alert.created_at,
        updated_at: alert.updated_at,
        retracted: alert.retracted,
        retraction_reason: alert.retraction_reason.clone(),
        content,
        subjects,
    }
}

/// Truncates a timestamp to the start of its year, month or day (UTC).
fn truncate(ts: pbjson_types::Timestamp, level: TimeLevel) -> Option<pbjson_types::Timestamp> {
    let t = time::OffsetDateTime::from_unix_timestamp(ts.seconds).ok()?;
    let date = match level {
        TimeLevel::None => return None,
        TimeLevel::Year => {
            time::Date::from_calendar_date(t.year(), time::Month::January, 1).ok()?
        }
        TimeLevel::Month => time::Date::from_calendar_date(t.year(), t.month(), 1).ok()?,
        TimeLevel::Day => t.date(),
    };
    Some(pbjson_types::Timestamp {
        seconds: date.midnight().assume_utc().unix_timestamp(),
        nanos: 0,
    })
}

fn generalize(mut c: AlertContent, grant: &Grant) -> AlertContent {
    c.location = match grant.location {
        LocationLevel::None => None,
        level => c.location.map(|mut l| {
            if level < LocationLevel::City {
                l.city.clear();
            }
            if level < LocationLevel::Region {
                l.region.clear();
            }
            l
        }),
    };
    c.time_window = match grant.time {
        TimeLevel::None => None,
        level => c.time_window.map(|w| TimeWindow {
            start: w.start.and_then(|t| truncate(t, level)),
            end: w.end.and_then(|t| truncate(t, level)),
        }),
    };
    if !grant.narrative {
        c.narrative.clear();
    }
    if !grant.indicators {
        c.indicators.clear();
    }
    c
}

/// How a received alert is kept by the receiver.
pub fn received_record(shared: SharedAlert) -> StoredAlert {
    let pseudonyms = if shared.retracted {
        Vec::new()
    } else {
        shared.subjects
    };
    StoredAlert {
        alert: Some(Alert {
            id: shared.id,
            origin: shared.origin,
            version: shared.version,
            created_at: shared.created_at,
            updated_at: shared.updated_at,
            retracted: shared.retracted,
            retraction_reason: shared.retraction_reason,
            content: if shared.retracted {
                None
            } else {
                shared.content
            },
            subjects: Vec::new(),
        }),
        shared_with: Vec::new(),
        pseudonyms,
        withdrawn_from: Vec::new(),
    }
}
