//! The view of a local alert that a peer receives under a grant. This is
//! the one place outbound alerts are built: it copies named fields into
//! `SharedAlert`, a type with no field able to hold a raw identifier, at the
//! levels the deciding rule grants. Pure, like the rest of `policy`.

use super::Grant;
use super::model::{IdLevel, LocationLevel, TimeLevel};
use crate::proto::v1::{
    AlertContent, IdentifierType, SharedAlert, SharedSubject, StoredAlert, TimeWindow,
};

/// The view of a retracted alert: ids, version and the retraction, no
/// content and no subjects (which `shared_view_with` never copies for a
/// retracted alert, whatever the grant).
pub fn tombstone_view(record: &StoredAlert) -> SharedAlert {
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
    // While its tokens wait for the key service, no subject leaves: a peer
    // gets them all at once in the version that completes them.
    let pending = record.tokens_pending && !alert.retracted;
    let subjects = if alert.retracted || pending {
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
                encodings: s
                    .encodings
                    .iter()
                    .filter(|e| {
                        grant.identifier(IdentifierType::Person as i32)
                            >= super::eval::level_needed(
                                IdentifierType::Person as i32,
                                crate::matching::MatchedBy::of_encoding(e),
                            )
                    })
                    .cloned()
                    .collect(),
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
        subjects_pending: pending,
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

/// An alert's content at the levels of `grant`, for a release (nothing for
/// a tombstone).
pub fn released_content(record: &StoredAlert, grant: &Grant) -> Option<AlertContent> {
    let alert = record.alert.as_ref()?;
    (!alert.retracted)
        .then(|| alert.content.clone().map(|c| generalize(c, grant)))
        .flatten()
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
