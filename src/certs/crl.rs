//! Certificate revocation for the development PKI: `certs init` writes an
//! empty CRL for every CA, and `certs revoke` adds a certificate's serial to
//! its CA's CRL. Nodes re-read CRL files on their own (`tls.crl_reload_secs`).
//! A production federation publishes CRLs from its own CA the same way.

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::CertsError;
use crate::ids::{AgencyId, ClientName};

/// How long a development CRL is valid before it must be re-issued. Nodes do
/// not refuse an outdated CRL (they keep using it); this only informs.
const CRL_VALIDITY_DAYS: i64 = 30;

/// Which certificate to revoke.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    Node(AgencyId),
    Client(AgencyId, ClientName),
}

/// The CRL files `certs init` writes, relative to the federation directory.
pub fn federation_crl(dir: &Path) -> PathBuf {
    dir.join("federation-ca.crl.pem")
}

pub fn client_crl(agency_dir: &Path) -> PathBuf {
    agency_dir.join("client-ca.crl.pem")
}

fn read(path: &Path) -> Result<String, CertsError> {
    std::fs::read_to_string(path).map_err(|source| CertsError::Io {
        path: path.to_owned(),
        error: source,
    })
}

fn invalid(path: &Path, reason: impl ToString) -> CertsError {
    CertsError::Invalid {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Signs a CRL listing `revoked` (serial, revocation time) with the CA.
pub(super) fn sign_crl(
    issuer: &Issuer<'_, KeyPair>,
    number: u64,
    revoked: &[(Vec<u8>, OffsetDateTime)],
) -> Result<String, CertsError> {
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(CRL_VALIDITY_DAYS),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|(serial, at)| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: *at,
                reason_code: Some(RevocationReason::Unspecified),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(issuer)?.pem()?)
}

/// Adds the target certificate to its CA's CRL (written atomically, so a
/// node never reads half a file). Returns the CRL path and the serial.
pub fn revoke(dir: &Path, target: &RevokeTarget) -> Result<(PathBuf, String), CertsError> {
    let (cert, ca_cert, ca_key, crl) = match target {
        RevokeTarget::Node(agency) => (
            dir.join(agency.as_str()).join("node.pem"),
            dir.join("federation-ca.pem"),
            dir.join("federation-ca.key"),
            federation_crl(dir),
        ),
        RevokeTarget::Client(agency, name) => {
            let a = dir.join(agency.as_str());
            (
                a.join(format!("clients/{name}.pem")),
                a.join("client-ca.pem"),
                a.join("client-ca.key"),
                client_crl(&a),
            )
        }
    };
    let cert_pem = read(&cert)?;
    let der = pem_der(&cert, &cert_pem)?;
    let (_, parsed) = X509Certificate::from_der(&der).map_err(|e| invalid(&cert, e))?;
    let serial = parsed.tbs_certificate.raw_serial().to_vec();

    let mut revoked: Vec<(Vec<u8>, OffsetDateTime)> = Vec::new();
    if crl.exists() {
        let crl_pem = read(&crl)?;
        let crl_der = pem_der(&crl, &crl_pem)?;
        let (_, list) =
            CertificateRevocationList::from_der(&crl_der).map_err(|e| invalid(&crl, e))?;
        for r in list.iter_revoked_certificates() {
            let at = OffsetDateTime::from_unix_timestamp(r.revocation_date.timestamp())
                .unwrap_or_else(|_| OffsetDateTime::now_utc());
            revoked.push((r.raw_serial().to_vec(), at));
        }
    }
    let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
    if !revoked.iter().any(|(s, _)| *s == serial) {
        revoked.push((serial, OffsetDateTime::now_utc()));
    }
    let key = KeyPair::from_pem(&read(&ca_key)?)?;
    let issuer = Issuer::from_ca_cert_pem(&read(&ca_cert)?, key)?;
    // Entries are only ever added, so their count numbers the CRLs in order
    // (the empty CRL from `certs init` is number 1).
    let pem = sign_crl(&issuer, revoked.len() as u64 + 1, &revoked)?;
    let tmp = crl.with_extension("pem.tmp");
    std::fs::write(&tmp, pem).map_err(|source| CertsError::Io {
        path: tmp.clone(),
        error: source,
    })?;
    std::fs::rename(&tmp, &crl).map_err(|source| CertsError::Io {
        path: crl.clone(),
        error: source,
    })?;
    Ok((crl, hex))
}

/// The DER of the first PEM block in `text`.
fn pem_der(path: &Path, text: &str) -> Result<Vec<u8>, CertsError> {
    let (_, der) = rustls::pki_types::pem::from_buf(&mut text.as_bytes())
        .map_err(|e| invalid(path, e))?
        .ok_or_else(|| invalid(path, "no PEM block"))?;
    Ok(der)
}
