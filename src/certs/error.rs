//! [`CertsError`]: what every part of the development PKI can fail with.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CertsError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: already exists; refusing to overwrite (choose another --out)")]
    Exists { path: PathBuf },
    // The I/O error is in the message only: as a source too, an error
    // chain would print it twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    KeyRing(#[from] crate::pseudo::KeyFileError),
    #[error("no free loopback port: {0}")]
    Ports(std::io::Error),
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// A signing request this CA will not sign, and why.
    #[error("not signed: {0}")]
    Refused(String),
}
