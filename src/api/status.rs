//! The one place where domain errors become gRPC statuses. Invalid input gets
//! INVALID_ARGUMENT with a `google.rpc.BadRequest` detail listing every
//! offending field; storage failures are logged here and reported without
//! internal detail.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::alert::AlertError;
use crate::exchange::InboundError;
use crate::store::StoreError;

impl From<AlertError> for Status {
    fn from(e: AlertError) -> Self {
        match &e {
            AlertError::Invalid(violations) => {
                crate::violation::invalid_argument(e.to_string(), violations)
            }
            AlertError::NotFound(_) => Status::not_found(e.to_string()),
            AlertError::NotOrigin { .. } | AlertError::Retracted(_) => {
                Status::failed_precondition(e.to_string())
            }
            AlertError::VersionMismatch { .. } => Status::aborted(e.to_string()),
            AlertError::Store(detail) => {
                tracing::error!(error = %detail, "storage failure");
                Status::unavailable("the node could not store or read the alert; retry later")
            }
            AlertError::Unreadable(detail) => {
                tracing::error!(error = %detail, "a stored record does not read back");
                Status::data_loss(detail.clone())
            }
            AlertError::Tokens(t) => token_status(t),
        }
    }
}

/// Why exact tokens could not be had from the key service, as the caller
/// should read it: UNAVAILABLE for an outage, RESOURCE_EXHAUSTED with the
/// time of the next allowance for a spent budget, FAILED_PRECONDITION for
/// a key service whose proof does not verify (the operator must act).
pub fn token_status(e: &crate::tokens::TokenError) -> Status {
    use crate::pseudo::oprf::OprfError;
    use crate::tokens::TokenError;
    match e {
        TokenError::Unavailable(_) => Status::unavailable(e.to_string()),
        TokenError::OverBudget { retry_after, .. } => match retry_after {
            Some(d) => Status::with_error_details(
                Code::ResourceExhausted,
                e.to_string(),
                ErrorDetails::with_retry_info(Some(*d)),
            ),
            None => Status::resource_exhausted(e.to_string()),
        },
        TokenError::Oprf(OprfError::InputTooLong(_)) => Status::invalid_argument(e.to_string()),
        TokenError::Oprf(_) | TokenError::NoKey(_) | TokenError::Refused(_) => {
            tracing::error!(error = %e, "exact tokens refused");
            Status::failed_precondition(e.to_string())
        }
    }
}

impl From<crate::review::ReviewError> for Status {
    fn from(e: crate::review::ReviewError) -> Self {
        use crate::review::ReviewError;
        match e {
            ReviewError::Invalid(v) => AlertError::Invalid(v).into(),
            ReviewError::NotFound(_) => Status::not_found(e.to_string()),
            ReviewError::Store(e) => store_unavailable(e),
        }
    }
}

impl From<crate::disclosure::DisclosureError> for Status {
    fn from(e: crate::disclosure::DisclosureError) -> Self {
        use crate::disclosure::DisclosureError;
        match e {
            DisclosureError::Invalid(v) => AlertError::Invalid(v).into(),
            DisclosureError::NotFound(_) => Status::not_found(e.to_string()),
            DisclosureError::NotConfirmed(_) | DisclosureError::Conflict(_) => {
                Status::failed_precondition(e.to_string())
            }
            DisclosureError::Store(e) => store_unavailable(e),
            DisclosureError::Tokens(t) => token_status(&t),
        }
    }
}

impl From<crate::reports::ReportsError> for Status {
    fn from(e: crate::reports::ReportsError) -> Self {
        use crate::reports::ReportsError;
        match e {
            ReportsError::Invalid(v) => AlertError::Invalid(v).into(),
            ReportsError::NotFound(_) => Status::not_found(e.to_string()),
            ReportsError::Closed | ReportsError::Full | ReportsError::Linked(_) => {
                Status::failed_precondition(e.to_string())
            }
            ReportsError::Busy => Status::resource_exhausted(e.to_string()),
            ReportsError::Receipt(_) => Status::internal(e.to_string()),
            ReportsError::Store(e) => store_unavailable(e),
        }
    }
}

impl From<crate::network::NetworkError> for Status {
    fn from(e: crate::network::NetworkError) -> Self {
        use crate::network::NetworkError;
        match e {
            NetworkError::Invalid(_) => Status::invalid_argument(e.to_string()),
            NetworkError::NotFound(_) => Status::not_found(e.to_string()),
            NetworkError::Store(e) => store_unavailable(e),
        }
    }
}

impl From<crate::analytics::AnalyticsError> for Status {
    fn from(e: crate::analytics::AnalyticsError) -> Self {
        use crate::analytics::AnalyticsError;
        match e {
            AnalyticsError::NoPlan | AnalyticsError::Refused(_) => {
                Status::failed_precondition(e.to_string())
            }
            AnalyticsError::Peer(_) => Status::unavailable(e.to_string()),
            AnalyticsError::Vdaf(_) => Status::internal(e.to_string()),
            AnalyticsError::Store(e) => store_unavailable(e),
        }
    }
}

impl From<InboundError> for Status {
    fn from(e: InboundError) -> Self {
        match &e {
            InboundError::WrongOrigin { .. } => Status::permission_denied(e.to_string()),
            InboundError::Store(detail) => {
                tracing::error!(error = %detail, "storage failure on delivery");
                Status::unavailable("the receiving node could not store the delivery; retry later")
            }
        }
    }
}

impl From<crate::lookup::LookupError> for Status {
    fn from(e: crate::lookup::LookupError) -> Self {
        use crate::lookup::LookupError;
        match e {
            LookupError::Invalid(v) => AlertError::Invalid(v).into(),
            LookupError::RateLimited(_) => Status::resource_exhausted(e.to_string()),
            LookupError::Store(e) => store_unavailable(e),
            LookupError::Tokens(t) => token_status(&t),
        }
    }
}

impl From<crate::sharing::SharingError> for Status {
    fn from(e: crate::sharing::SharingError) -> Self {
        use crate::sharing::SharingError;
        match e {
            SharingError::Invalid(errors) => {
                let mut details = ErrorDetails::new();
                for p in &errors {
                    let hint = p
                        .hint
                        .as_ref()
                        .map(|h| format!(" (hint: {h})"))
                        .unwrap_or_default();
                    details.add_bad_request_violation(
                        p.file.display().to_string(),
                        format!("{}:{}: {}{hint}", p.line, p.column, p.message),
                    );
                }
                Status::with_error_details(
                    Code::InvalidArgument,
                    format!(
                        "policy not installed, {} problem(s); the version in force stays",
                        errors.len()
                    ),
                    details,
                )
            }
            SharingError::VersionMismatch { .. } => Status::aborted(e.to_string()),
            SharingError::NoFile | SharingError::File { .. } => {
                Status::failed_precondition(e.to_string())
            }
            SharingError::StoredInvalid { .. } => Status::internal(e.to_string()),
            SharingError::Store(e) => store_unavailable(e),
        }
    }
}

impl From<crate::core::AdminError> for Status {
    fn from(e: crate::core::AdminError) -> Self {
        use crate::core::AdminError;
        match e {
            AdminError::Invalid(v) => AlertError::Invalid(v).into(),
            AdminError::NotFound(_) => Status::not_found(e.to_string()),
            AdminError::BackupExists(_) => Status::already_exists(e.to_string()),
            AdminError::Backup(_) => {
                tracing::error!(error = %e, "backup failed");
                Status::unavailable(e.to_string())
            }
            AdminError::Task(..) => Status::internal(e.to_string()),
            AdminError::Sharing(e) => e.into(),
            AdminError::Store(e) => store_unavailable(e),
        }
    }
}

/// An offered federation directory: malformed is INVALID_ARGUMENT naming
/// the field (`directory.…`); refused by the trust rules, or offered to a
/// node that follows none, is FAILED_PRECONDITION with the reason.
impl From<crate::federation::FederationError> for Status {
    fn from(e: crate::federation::FederationError) -> Self {
        use crate::directory::signed::EnvelopeError;
        use crate::federation::FederationError;
        match e {
            FederationError::Envelope(EnvelopeError::Invalid(v)) => {
                let v: Vec<_> = v
                    .into_iter()
                    .map(|f| {
                        crate::violation::FieldViolation::new(
                            format!("directory.payload.{}", f.field),
                            f.description,
                        )
                    })
                    .collect();
                crate::violation::invalid_argument("the directory breaks its rules", &v)
            }
            FederationError::Envelope(env) => crate::violation::invalid_argument(
                "the directory is malformed",
                &[crate::violation::FieldViolation::new(
                    "directory",
                    env.to_string(),
                )],
            ),
            FederationError::Store(e) => store_unavailable(e),
            other => Status::failed_precondition(other.to_string()),
        }
    }
}

/// A caller the access rules turned away: not authenticated, not allowed,
/// or over its rate.
impl From<crate::identity::access::AccessError> for Status {
    fn from(e: crate::identity::access::AccessError) -> Self {
        use crate::identity::access::AccessError;
        match e {
            AccessError::Unauthenticated => Status::unauthenticated(e.to_string()),
            AccessError::Denied(m) => Status::permission_denied(m),
            AccessError::RateLimited(m) => Status::resource_exhausted(m),
        }
    }
}

/// A peer whose `Hello` names another agency or federation than its
/// certificate (`certified`) does.
pub fn hello_mismatch(federation: &str, agency: &str, certified: &str) -> Status {
    Status::invalid_argument(format!(
        "agency_id/federation `{federation}/{agency}` do not match your certificate ({certified})"
    ))
}

/// A delivery stream ended by this node's shutdown: what was not acked
/// stays with the sender.
pub fn shutting_down() -> Status {
    Status::unavailable("node is shutting down")
}

/// A delivery stream cut at an envelope this node does not understand,
/// from a sender that does not take "not understood" acks (the previous
/// release): nothing after it is acked, and the sender keeps it all.
pub fn not_understood(why: &str) -> Status {
    Status::unavailable(format!(
        "this node does not understand an envelope ({why}); it stays with you until this node \
         is upgraded"
    ))
}

/// A delivery stream whose sender stopped reading its acks.
pub fn sender_gone() -> Status {
    Status::cancelled("the sender went away")
}

/// A delivery stream cut because `peer` sent more `what` than this node
/// takes per minute: the rest is not acked, and the sender retries later.
pub fn throttled(peer: &crate::ids::AgencyId, what: &str) -> Status {
    Status::resource_exhausted(format!(
        "{peer} sends more {what} than this node takes per minute; the rest is \
         not acknowledged: retry later"
    ))
}

/// A caller's `Hello` as announced: the protocol version both speak (or
/// FAILED_PRECONDITION naming both ranges), its release and capabilities
/// (bounded; INVALID_ARGUMENT naming the field that breaks a bound).
pub fn announced(
    r: &crate::proto::v1::HelloRequest,
) -> Result<(u32, String, crate::release::Capabilities), Status> {
    use crate::release::{Capabilities, PROTOCOL, ProtocolRange, negotiate};
    let theirs = ProtocolRange::announced(r.protocol_version, r.oldest_protocol_version);
    let version = negotiate(PROTOCOL, theirs).ok_or_else(|| {
        Status::failed_precondition(format!(
            "protocol_version: you speak {theirs}, this node speaks {PROTOCOL} (release {})",
            crate::release::RELEASE
        ))
    })?;
    let bad = |e: crate::release::AnnouncementError| {
        crate::violation::invalid_field(&e.field(), e.description())
    };
    let release = crate::release::announced_release(&r.release)
        .map_err(bad)?
        .to_owned();
    let capabilities = Capabilities::announced(&r.capabilities).map_err(bad)?;
    Ok((version, release, capabilities))
}

pub fn store_unavailable(e: StoreError) -> Status {
    tracing::error!(error = %e, "storage failure");
    if e.is_unreadable() {
        return Status::data_loss(e.to_string());
    }
    Status::unavailable("the node's store is unavailable; retry later")
}
