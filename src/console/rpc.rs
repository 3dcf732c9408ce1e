//! Calls made on the viewer's behalf: a tonic request for the node's own
//! gRPC service, in-process, carrying the certificate's connection (so the
//! service authorizes and audits it exactly as an RPC) and the console as
//! its channel.

use tonic::metadata::MetadataValue;
use tonic_types::StatusExt;

use super::view::Viewer;
use crate::api::call::Channel;
use crate::audit::PURPOSE_BIN_HEADER;
use crate::violation::FieldViolation;

/// The channel console calls name in their audit entries.
pub const CONSOLE: Channel = Channel("console");

/// A request for one of the node's services, as `viewer` (with the case
/// reference they typed as the call's purpose, if any).
pub fn request<T>(viewer: &Viewer, message: T, purpose: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.extensions_mut().insert(viewer.conn.clone());
    req.extensions_mut().insert(CONSOLE);
    if !purpose.is_empty() {
        req.metadata_mut().insert_bin(
            PURPOSE_BIN_HEADER,
            MetadataValue::from_bytes(purpose.as_bytes()),
        );
    }
    req
}

/// The field violations of an INVALID_ARGUMENT answer (none for any other).
pub fn violations(status: &tonic::Status) -> Vec<FieldViolation> {
    if status.code() != tonic::Code::InvalidArgument {
        return Vec::new();
    }
    match status.get_details_bad_request() {
        Some(b) => b
            .field_violations
            .into_iter()
            .map(|v| FieldViolation::new(v.field, v.description))
            .collect(),
        None => vec![FieldViolation::new("", status.message())],
    }
}
