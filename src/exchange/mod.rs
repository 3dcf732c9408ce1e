//! Moving alerts between nodes.
//!
//! - What a peer receives of a local alert is built by
//!   [`crate::policy::shared_view_with`] alone; this module turns those views
//!   into outbox entries ([`share_item`], [`tombstone_item`]).
//! - [`outbound`]: one delivery worker per peer drains that peer's durable outbox.
//! - [`inbound`]: checks and applies what peers deliver;
//!   [`Creations`](inbound::Creations) bounds, per peer and minute, the
//!   requests, notices and reviews a peer may make this node record (over
//!   the rate the stream ends RESOURCE_EXHAUSTED, and the sender keeps the
//!   rest unacknowledged).
//! - [`needs`]: what a receiver must understand to apply an envelope; the
//!   sender holds what a peer has not announced, the receiver answers "not
//!   understood" to what it lacks (never a refusal for good).
//! - [`syntax`]: every id a peer names, checked against its syntax and its
//!   origin on arrival.
//! - [`bound_retention`]: a received alert's deadline, the sender's capped
//!   at ours, or our default when it names none.
//!
//! Received alerts are never forwarded: alert versions enter the outbox
//! only from [`crate::alert::Ledger`] (the agency's own alerts, and
//! reshares and withdrawals of them); the store also queues hit notices
//! and reviews, and [`crate::disclosure`] its requests, releases and
//! decisions, each to the one agency they concern.

pub mod inbound;
pub mod needs;
pub mod outbound;
pub mod syntax;

pub use inbound::{Inbound, InboundError, Received};
pub use outbound::{Outbound, PeerState};

use crate::ids::AgencyId;
use crate::policy::{Grant, shared_view_with, tombstone_view};
use crate::proto::v1::envelope::Payload;
use crate::proto::v1::{Alert, SharedAlert, StoredAlert};
use crate::store::OutboxItem;

/// The outbox entry that shares one version of an own alert with `peer`,
/// shaped by the deciding rule's grant (and recording which rule and which
/// levels, for the audit entry written at the peer's ack).
pub fn share_item(
    peer: AgencyId,
    record: &StoredAlert,
    rule: Option<&str>,
    grant: &Grant,
) -> OutboxItem {
    OutboxItem {
        peer,
        payload: Payload::Alert(shared_view_with(record, grant)),
        rule: rule.unwrap_or_default().to_owned(),
        disclosed: grant.describe(),
    }
}

/// The outbox entry that tells `peer` an alert it holds was retracted: ids
/// and version only, whatever the policy says now.
pub fn tombstone_item(peer: AgencyId, record: &StoredAlert) -> OutboxItem {
    OutboxItem {
        peer,
        payload: Payload::Alert(tombstone_view(record)),
        rule: String::new(),
        disclosed: "tombstone".into(),
    }
}

/// How a received alert is kept by the receiver.
pub fn received_record(shared: SharedAlert) -> StoredAlert {
    let pseudonyms = if shared.retracted {
        Vec::new()
    } else {
        shared.subjects
    };
    StoredAlert {
        tokens_pending: false,
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
            // The origin's own reference and title never travel.
            case_reference: String::new(),
            title: String::new(),
        }),
        shared_with: Vec::new(),
        pseudonyms,
        withdrawn_from: Vec::new(),
    }
}

/// Gives a received alert the retention deadline this node keeps it to:
/// the sender's, but never past this node's own maximum, and this node's
/// default when the sender named none. A received alert without a
/// deadline would never be purged here (an agency's data kept forever by
/// another agency because its node left a field empty).
pub fn bound_retention(
    record: &mut StoredAlert,
    rules: &crate::config::AlertRules,
    now: std::time::SystemTime,
) {
    let Some(content) = record.alert.as_mut().and_then(|a| a.content.as_mut()) else {
        return;
    };
    let day = std::time::Duration::from_secs(86_400);
    let latest = now + day * rules.max_retention_days.get() as u32;
    let until = match content.retention_until.as_ref() {
        None => now + day * rules.default_retention_days.get() as u32,
        Some(t) => crate::time::system_time_lossy(t).min(latest),
    };
    content.retention_until = Some(crate::time::timestamp(until));
}
