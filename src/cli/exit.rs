//! How the command fails: one typed set of exit codes (sysexits.h where one
//! fits), the error that carries its code, and how errors are shown.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;
use tonic::Code;

use crate::client::ClientError;
use crate::config::ConfigError;
use crate::identity::TlsError;
use crate::node::NodeError;

/// The command's exit codes, so a script can tell a mistake in its input
/// from a node it cannot reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Anything else: a check that failed, a call the node refused.
    Failure = 1,
    /// The command line, a config file or a file it names is wrong
    /// (`EX_USAGE`; a supervisor should not restart in a loop).
    Usage = 64,
    /// An input file or a request's data is invalid (`EX_DATAERR`).
    DataErr = 65,
    /// What was asked for does not exist: an alert id, a file (`EX_NOINPUT`).
    NotFound = 66,
    /// The node cannot be reached, is rate-limiting, or a store is in use
    /// (`EX_UNAVAILABLE`): try again later.
    Unavailable = 69,
    /// The request conflicts with the current state: the alert changed
    /// since it was read (expected version), is retracted, or is another
    /// agency's (`EX_TEMPFAIL`: read again, then decide).
    Conflict = 75,
    /// The node refused who you are: your client lacks the role, or your
    /// certificate is not accepted (`EX_NOPERM`).
    Denied = 77,
}

impl Exit {
    /// The exit code for a gRPC status.
    pub fn of_status(code: Code) -> Self {
        match code {
            Code::InvalidArgument | Code::OutOfRange => Exit::DataErr,
            Code::NotFound => Exit::NotFound,
            Code::Aborted | Code::FailedPrecondition | Code::AlreadyExists => Exit::Conflict,
            Code::PermissionDenied | Code::Unauthenticated => Exit::Denied,
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
                Exit::Unavailable
            }
            _ => Exit::Failure,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// An error with the exit code it should produce.
pub struct Failure {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        let exit = if let Some(status) = error.downcast_ref::<tonic::Status>() {
            Exit::of_status(status.code())
        } else if is_config_error(&error) {
            Exit::Usage
        } else if matches!(
            error.downcast_ref::<ClientError>(),
            Some(ClientError::CertificateRefused { .. })
        ) {
            Exit::Denied
        } else if matches!(
            error.downcast_ref::<ClientError>(),
            Some(ClientError::Tls(_))
        ) || matches!(
            error.downcast_ref::<NodeError>(),
            Some(NodeError::Bind { .. })
        ) {
            Exit::Unavailable
        } else {
            Exit::Failure
        };
        Failure { exit, error }
    }
}

/// Errors an operator fixes by editing the config or the files it names
/// (exit 64, so a supervisor does not restart in a loop).
fn is_config_error(error: &anyhow::Error) -> bool {
    let tls_file = |e: &TlsError| !matches!(e, TlsError::Connect { .. });
    error.downcast_ref::<ConfigError>().is_some()
        || match error.downcast_ref::<ClientError>() {
            Some(ClientError::Config(_) | ClientError::Purpose(_)) => true,
            Some(ClientError::Tls(e)) => tls_file(e),
            Some(ClientError::CertificateRefused { .. }) | None => false,
        }
        || error
            .downcast_ref::<crate::pseudo::KeyFileError>()
            .is_some()
        || match error.downcast_ref::<NodeError>() {
            Some(NodeError::Tls(e)) => tls_file(e),
            Some(
                NodeError::WrongCertificate { .. }
                | NodeError::Sharing(_)
                | NodeError::KeyFile(_)
                | NodeError::KeyRingFederation { .. },
            ) => true,
            _ => false,
        }
}

/// Whether `failure` may be a node refusing our certificate mid-handshake,
/// which tonic reports without a reason (worth dialling again to ask).
pub fn may_be_certificate_refusal(failure: &Failure) -> bool {
    if let Some(status) = failure.error.downcast_ref::<tonic::Status>() {
        return matches!(
            status.code(),
            Code::Unknown | Code::Cancelled | Code::Unavailable | Code::Internal
        );
    }
    matches!(
        failure.error.downcast_ref::<ClientError>(),
        Some(ClientError::Tls(TlsError::Connect { .. }))
    )
}

pub fn failure(exit: Exit, error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        exit,
        error: error.into(),
    }
}

/// A refused SetPolicy, with each problem as `FILE:line:column: message`,
/// the way `policy validate` prints them.
pub fn status_failure(status: tonic::Status, file: &Path) -> Failure {
    use tonic_types::StatusExt;
    let violations = status
        .get_details_bad_request()
        .map(|b| b.field_violations)
        .unwrap_or_default();
    if status.code() != Code::InvalidArgument || violations.is_empty() {
        return status.into();
    }
    let lines: Vec<String> = violations
        .iter()
        .map(|v| format!("{}:{}", file.display(), v.description))
        .collect();
    failure(
        Exit::DataErr,
        anyhow!("{}\n{}", status.message(), lines.join("\n")),
    )
}

/// Shows a gRPC status with its field violations, or an error with its causes.
pub fn render_error(e: &anyhow::Error) -> String {
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        use tonic_types::StatusExt;
        // The field violations one per line, once: the message repeats
        // them on one line for callers that read only the message.
        if let Some(bad) = status.get_details_bad_request()
            && !bad.field_violations.is_empty()
        {
            let mut s = format!(
                "{:?}: {} problem(s) in the request",
                status.code(),
                bad.field_violations.len()
            );
            for v in bad.field_violations {
                s.push_str(&format!("\n  {}: {}", v.field, v.description));
            }
            return s;
        }
        return format!("{:?}: {}", status.code(), status.message());
    }
    // anyhow's chain, each cause said once (wrapped io errors repeat
    // their text: "Connection refused (os error 111): Connection refused …").
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
