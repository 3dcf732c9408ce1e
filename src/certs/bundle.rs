//! Browser bundles: a client certificate, its key and the agency's client
//! CA in one password-protected PKCS#12 file, the form Chromium and Firefox
//! import a client certificate from (for the web console, which
//! authenticates people by the same client certificates as the gRPC API).
//!
//! The password is random (96 bits, grouped for typing), returned once to
//! be shown to the person who imports the file, and stored nowhere: the file
//! is as secret as the key inside it and is written with mode 0600.

use std::path::{Path, PathBuf};

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{CertsError, FederationLayout, write_bytes_new};
use crate::ids::{AgencyId, ClientName};

/// One PKCS#12 file written, with the password that opens it.
#[derive(Debug, Clone)]
pub struct BrowserBundle {
    pub agency: AgencyId,
    pub client: ClientName,
    pub path: PathBuf,
    pub password: String,
}

/// A fresh password: 12 random bytes as six groups of four hex digits.
fn password() -> String {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source");
    bytes
        .chunks(2)
        .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
        .collect::<Vec<_>>()
        .join("-")
}

fn invalid(path: &Path, reason: impl ToString) -> CertsError {
    CertsError::Invalid {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The PKCS#12 bytes of `cert` (PEM file) with `key` (PEM, PKCS#8) and the
/// issuing `ca` (PEM), under `password`.
pub fn pkcs12(
    cert: &Path,
    key: &Path,
    ca: &Path,
    alias: &str,
    password: &str,
) -> Result<Vec<u8>, CertsError> {
    let leaf = CertificateDer::from_pem_file(cert).map_err(|e| invalid(cert, e))?;
    let issuer = CertificateDer::from_pem_file(ca).map_err(|e| invalid(ca, e))?;
    let key_der = match PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, e))? {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        _ => return Err(invalid(key, "not a PKCS#8 private key")),
    };
    let chain = [
        Certificate::from_der(&leaf).map_err(|e| invalid(cert, e))?,
        Certificate::from_der(&issuer).map_err(|e| invalid(ca, e))?,
    ];
    let private = PrivateKey::from_der(&key_der).map_err(|e| invalid(key, e))?;
    // The local key id ties the key to its certificate inside the file;
    // the certificate's SHA-256 is unique and stable.
    let key_id = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &leaf);
    let mut store = KeyStore::new();
    store.add_entry(
        alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(
            key_id.as_ref().to_vec(),
            private,
            chain,
        )),
    );
    store.writer(password).write().map_err(|e| invalid(cert, e))
}

/// Writes `clients/<name>.p12` next to every client certificate of a
/// development federation, each under its own fresh password.
pub fn write_browser_bundles(layout: &FederationLayout) -> Result<Vec<BrowserBundle>, CertsError> {
    let mut out = Vec::new();
    for (agency, a) in &layout.agencies {
        for client in a.client_configs.keys() {
            let clients = a.dir.join("clients");
            let path = clients.join(format!("{client}.p12"));
            let password = password();
            let bytes = pkcs12(
                &clients.join(format!("{client}.pem")),
                &clients.join(format!("{client}.key")),
                &a.dir.join("client-ca.pem"),
                &format!("{agency} {client}"),
                &password,
            )?;
            write_bytes_new(&path, &bytes, true)?;
            out.push(BrowserBundle {
                agency: agency.clone(),
                client: client.clone(),
                path,
                password,
            });
        }
    }
    Ok(out)
}

/// Makes `clients/<client>.p12` of `agency` in the development federation
/// at `dir` again, under a fresh password: for when a password was lost
/// or a file handed to the wrong person (`certs bundle`). The certificate
/// and key are the same; the old file no longer opens with any password
/// anyone has, and the new one replaces it in one rename (never half
/// written). Returns the file and its password.
pub fn rebundle(
    dir: &Path,
    agency: &AgencyId,
    client: &ClientName,
) -> Result<BrowserBundle, CertsError> {
    let a = dir.join(agency.as_str());
    let clients = a.join("clients");
    let cert = clients.join(format!("{client}.pem"));
    if !cert.exists() {
        return Err(invalid(
            &cert,
            format!("no certificate of client `{client}` of agency `{agency}` here"),
        ));
    }
    let password = password();
    let bytes = pkcs12(
        &cert,
        &clients.join(format!("{client}.key")),
        &a.join("client-ca.pem"),
        &format!("{agency} {client}"),
        &password,
    )?;
    let path = clients.join(format!("{client}.p12"));
    let fresh = clients.join(format!(".{client}.p12.new"));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| CertsError::Io { path, error }
    };
    let _ = std::fs::remove_file(&fresh);
    write_bytes_new(&fresh, &bytes, true)?;
    std::fs::rename(&fresh, &path).map_err(io(&path))?;
    Ok(BrowserBundle {
        agency: agency.clone(),
        client: client.clone(),
        path,
        password,
    })
}
