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

use crate::proto::v1::{Alert, SharedAlert, StoredAlert};

/// The view of a local alert sent to peers: content and the pseudonymous
/// subjects (tokens only). Raw subjects are not an input here, so they
/// cannot leave the node; a tombstone carries neither content nor tokens.
pub fn shared_view(record: &StoredAlert) -> SharedAlert {
    let alert = record
        .alert
        .as_ref()
        .expect("stored alerts always hold an alert");
    SharedAlert {
        id: alert.id.clone(),
        origin: alert.origin.clone(),
        version: alert.version,
        created_at: alert.created_at,
        updated_at: alert.updated_at,
        retracted: alert.retracted,
        retraction_reason: alert.retraction_reason.clone(),
        content: if alert.retracted {
            None
        } else {
            alert.content.clone()
        },
        subjects: if alert.retracted {
            Vec::new()
        } else {
            record.pseudonyms.clone()
        },
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
    }
}
