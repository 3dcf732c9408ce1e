//! Certificates for a real federation: a node (or a client system) makes its
//! own key and a certificate signing request; whoever runs the CA it belongs
//! under signs it. The private key never leaves the machine that made it.
//!
//! - `certs request`: key (0600) + CSR carrying the SPIFFE id as its only
//!   URI SAN (plus the DNS names and addresses a node is dialled at);
//! - `certs sign`: the CA's side. It trusts nothing in the CSR but its
//!   public key and its names: the SPIFFE id must be of the role asked for
//!   and of the federation the signer names; key usages, extended key
//!   usages, validity and serial are the signer's own.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::{CertsError, uri, validity, write_new};
use crate::identity::Identity;
use crate::ids::{AgencyId, ClientName, FederationName};

/// What a certificate is for: it decides the SPIFFE id's shape and the key usages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertRole {
    /// A node: serves its peers and clients, dials its peers (server and
    /// client authentication), `spiffe://F/agency/A`.
    Node,
    /// One of an agency's systems (a case system, an admin's CLI): client
    /// authentication only, `spiffe://F/agency/A/client/NAME`.
    Client,
}

/// Days a signed certificate is valid unless the signer says otherwise: a
/// node certificate a little over a year (the CA/Browser Forum's 398 days
/// keep renewals yearly), a client certificate one year.
pub fn default_days(role: CertRole) -> u32 {
    match role {
        CertRole::Node => 397,
        CertRole::Client => 365,
    }
}

/// Writes `<out>/<stem>.key` (0600) and `<out>/<stem>.csr` for the node of
/// `agency`, or for its client system `client`. Returns the SPIFFE id.
pub fn request(
    federation: &FederationName,
    agency: &AgencyId,
    client: Option<&ClientName>,
    dns: &[String],
    ips: &[IpAddr],
    out: &Path,
) -> Result<String, CertsError> {
    let spiffe = match client {
        Some(name) => format!("spiffe://{federation}/agency/{agency}/client/{name}"),
        None => format!("spiffe://{federation}/agency/{agency}"),
    };
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        client.map_or(agency.to_string(), |c| format!("{agency} {c}")),
    );
    params.distinguished_name = dn;
    params.subject_alt_names = vec![uri(spiffe.clone())?];
    if client.is_none() {
        for d in dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(d.clone().try_into()?));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
    }
    let key = KeyPair::generate()?;
    let csr = params.serialize_request(&key)?;
    let stem = client.map_or("node".to_string(), |c| c.to_string());
    std::fs::create_dir_all(out).map_err(|source| CertsError::Io {
        path: out.to_owned(),
        error: source,
    })?;
    write_new(&out.join(format!("{stem}.key")), &key.serialize_pem(), true)?;
    write_new(&out.join(format!("{stem}.csr")), &csr.pem()?, false)?;
    Ok(spiffe)
}

/// Signs the CSR in `csr_pem` with the CA (`ca_pem`, `ca_key_pem`) as a
/// certificate for `role` in `federation`, valid `days`. Returns the PEM
/// and the SPIFFE id it certifies.
pub fn sign(
    csr_pem: &str,
    ca_pem: &str,
    ca_key_pem: &str,
    role: CertRole,
    federation: &FederationName,
    days: u32,
) -> Result<(String, String), CertsError> {
    let refuse = |why: String| CertsError::Refused(why);
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| refuse(format!("not a valid certificate signing request: {e}")))?;
    let uris: Vec<String> = csr
        .params
        .subject_alt_names
        .iter()
        .filter_map(|s| match s {
            SanType::URI(u) => Some(u.as_str().to_owned()),
            _ => None,
        })
        .collect();
    let [spiffe] = uris.as_slice() else {
        return Err(refuse(format!(
            "the request must carry exactly one URI name, its SPIFFE id; it has {}",
            uris.len()
        )));
    };
    let identity =
        Identity::from_spiffe_uri(spiffe).map_err(|e| refuse(format!("{spiffe}: {e}")))?;
    let its_federation = match (&identity, role) {
        (Identity::Node(n), CertRole::Node) => &n.federation,
        (Identity::Client(c), CertRole::Client) => &c.federation,
        (_, CertRole::Node) => {
            return Err(refuse(format!("{spiffe} is a client's id, not a node's")));
        }
        (_, CertRole::Client) => {
            return Err(refuse(format!("{spiffe} is a node's id, not a client's")));
        }
    };
    if its_federation != federation {
        return Err(refuse(format!(
            "{spiffe} is in federation {its_federation}, not {federation}"
        )));
    }
    if role == CertRole::Client
        && csr
            .params
            .subject_alt_names
            .iter()
            .any(|s| !matches!(s, SanType::URI(_)))
    {
        return Err(refuse(
            "a client certificate names only its SPIFFE id (no DNS names or addresses)".into(),
        ));
    }
    let key = KeyPair::from_pem(ca_key_pem)
        .map_err(|e| refuse(format!("the CA key cannot be read: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, key)
        .map_err(|e| refuse(format!("the CA certificate cannot be read: {e}")))?;
    // Only the names and the public key come from the request.
    let mut signed = CertificateSigningRequestParams {
        params: CertificateParams::default(),
        public_key: csr.public_key,
    };
    let p = &mut signed.params;
    p.distinguished_name = csr.params.distinguished_name;
    p.subject_alt_names = csr.params.subject_alt_names;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = match role {
        CertRole::Node => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        CertRole::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    p.use_authority_key_identifier_extension = true;
    validity(p, i64::from(days));
    let cert = signed.signed_by(&issuer)?;
    Ok((cert.pem(), spiffe.clone()))
}
