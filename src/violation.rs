//! One offending field of a request, and the gRPC shape every layer answers
//! invalid input with. It lives at the bottom so that pure code (identifier
//! normalization, validation) can report field paths without depending on
//! the modules that use it.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// One offending field (mirrors `google.rpc.BadRequest.FieldViolation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Every violation in one line (`field: problem; …`), for an error's
/// message.
pub fn summary(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The longest status message sent: the message and the detail travel in
/// HTTP/2 trailers, which clients bound (16 KiB is common); the detail
/// lists every violation, the message only begins it.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// INVALID_ARGUMENT with `message` (cut at [`MAX_MESSAGE_BYTES`]) and a
/// `google.rpc.BadRequest` detail listing every violation, so a client can
/// point at each offending field.
pub fn invalid_argument<'a>(
    message: impl Into<String>,
    violations: impl IntoIterator<Item = &'a FieldViolation>,
) -> Status {
    let mut message: String = message.into();
    if message.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(" … (every violation is in the BadRequest detail)");
    }
    let mut details = ErrorDetails::new();
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// INVALID_ARGUMENT naming one field, in the same shape as every other
/// validation error.
pub fn invalid_field(field: &str, description: String) -> Status {
    let v = FieldViolation::new(field, description);
    invalid_argument(
        format!("invalid request: {}: {}", v.field, v.description),
        [&v],
    )
}

/// The field names of an INVALID_ARGUMENT status (its BadRequest detail),
/// for logs that must not repeat the values a description may quote.
pub fn fields_of(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}
