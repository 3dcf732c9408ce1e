//! PEM loading with errors that name the file, and [`TlsError`], the error
//! of everything in `identity` that loads or uses TLS material.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File {
        path: std::path::PathBuf,
        reason: String,
    },
    // Not a `#[source]`: the message carries it, and an error chain would
    // print it twice.
    #[error("TLS configuration: {0}")]
    Rustls(rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        Self::Rustls(e)
    }
}

/// Every PEM object of one kind in `path`; a file holding none is an error
/// naming `what` it should hold.
fn load_all<T: PemObject>(path: &Path, what: &str) -> Result<Vec<T>, TlsError> {
    let bad = |reason: String| TlsError::File {
        path: path.to_owned(),
        reason,
    };
    let items = T::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if items.is_empty() {
        return Err(bad(format!("no PEM {what} in file")));
    }
    Ok(items)
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    load_all(path, "certificate")
}

/// Certificate revocation lists from a PEM file (one or more `X509 CRL` blocks).
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    load_all(path, "certificate revocation list")
}

/// Certificate revocation lists from PEM text that came from elsewhere than
/// a file (the federation directory): `origin` names it in errors.
pub fn parse_crls(
    pem: &[u8],
    origin: &str,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File {
            path: origin.into(),
            reason: e.to_string(),
        })
}

/// Loads a private key, refusing one that group or others can read: a node key
/// readable by other local users lets them impersonate the agency.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bad = |reason: String| TlsError::File {
        path: path.to_owned(),
        reason,
    };
    crate::secrets::check_owner_only(path, "private key").map_err(bad)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| bad(e.to_string()))
}
