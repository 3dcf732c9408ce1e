//! Who is on the other end of a connection.
//!
//! Identity is read from the peer certificate's URI SAN exactly once, when the
//! TLS handshake completes, and travels as a typed [`Identity`] afterwards
//! (as the connection's `ConnectInfo` on the server side). Nothing else —
//! no message field, no hostname — identifies a peer or a client.
//!
//! - `tls`: the rustls server and client configs (TLS 1.3 only, aws-lc-rs,
//!   CRLs), the accept loop of every listener ([`serve_tls`], each
//!   connection ending at its age limit), and outgoing channels that check
//!   the server's identity ([`connect_channel`]);
//! - `pem`: PEM loading with errors that name the file, and [`TlsError`];
//! - `reload`: CRLs re-read while the node runs ([`TlsReloader`]);
//! - [`handshakes`]: the pending TLS handshakes of a listener, bounded per
//!   source (16 per IPv4 address or IPv6 /64) and in total (256) by making
//!   the oldest give way to a new connection, with a shorter timeout under
//!   pressure and a rate-limited log;
//! - [`access`]: who may call (client roles, configured peers, rate
//!   limits), decided from an [`Identity`].

pub mod access;
pub mod handshakes;
mod pem;
mod reload;
mod tls;

pub use pem::{TlsError, load_certs, load_crls, load_private_key};
pub use reload::{TlsConfigs, TlsFiles, TlsReloader};
pub use tls::{
    AuthenticatedConn, CertificateRefusal, ConnInfo, OnRefused, TlsIdentity, certificate_refusal,
    client_tls_config, connect_channel, error_chain, install_crypto_provider, key_sha256,
    public_server_tls_config, serve_tls, server_tls_config,
};

use std::fmt;

use thiserror::Error;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::ids::{AgencyId, ClientName, FederationName};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("certificate cannot be parsed")]
    BadCertificate,
    #[error("certificate has no spiffe:// URI SAN")]
    NoSpiffeId,
    #[error("certificate has more than one spiffe:// URI SAN")]
    SeveralSpiffeIds,
    #[error("`{0}` is not a CaseBridge SPIFFE id")]
    Malformed(String),
}

/// A node of the federation: `spiffe://<federation>/agency/<agency>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeIdentity {
    pub federation: FederationName,
    pub agency: AgencyId,
}

/// One of an agency's own systems: `spiffe://<federation>/agency/<agency>/client/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIdentity {
    pub federation: FederationName,
    pub agency: AgencyId,
    pub name: ClientName,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Node(NodeIdentity),
    Client(ClientIdentity),
}

impl NodeIdentity {
    pub fn spiffe_uri(&self) -> String {
        format!("spiffe://{}/agency/{}", self.federation, self.agency)
    }
}

impl ClientIdentity {
    pub fn spiffe_uri(&self) -> String {
        format!(
            "spiffe://{}/agency/{}/client/{}",
            self.federation, self.agency, self.name
        )
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Node(n) => f.write_str(&n.spiffe_uri()),
            Identity::Client(c) => f.write_str(&c.spiffe_uri()),
        }
    }
}

/// When a certificate (DER) stops being valid.
pub fn not_after(der: &[u8]) -> Option<std::time::SystemTime> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

impl Identity {
    /// Parses a SPIFFE id of the two shapes CaseBridge issues.
    pub fn from_spiffe_uri(uri: &str) -> Result<Self, IdentityError> {
        let malformed = || IdentityError::Malformed(uri.to_owned());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(malformed)?;
        let mut parts = rest.split('/');
        let federation =
            FederationName::new(parts.next().ok_or_else(malformed)?).map_err(|_| malformed())?;
        if parts.next() != Some("agency") {
            return Err(malformed());
        }
        let agency = AgencyId::new(parts.next().ok_or_else(malformed)?).map_err(|_| malformed())?;
        match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => Ok(Identity::Node(NodeIdentity { federation, agency })),
            (Some("client"), Some(name), None) => Ok(Identity::Client(ClientIdentity {
                federation,
                agency,
                name: ClientName::new(name).map_err(|_| malformed())?,
            })),
            _ => Err(malformed()),
        }
    }

    /// Reads the identity from a DER end-entity certificate. The chain has
    /// already been verified by rustls; this only interprets the URI SAN.
    pub fn from_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|_| IdentityError::BadCertificate)?;
        let san = cert
            .subject_alternative_name()
            .map_err(|_| IdentityError::BadCertificate)?
            .ok_or(IdentityError::NoSpiffeId)?;
        let mut uris = san.value.general_names.iter().filter_map(|n| match n {
            GeneralName::URI(u) if u.starts_with("spiffe://") => Some(*u),
            _ => None,
        });
        let uri = uris.next().ok_or(IdentityError::NoSpiffeId)?;
        if uris.next().is_some() {
            return Err(IdentityError::SeveralSpiffeIds);
        }
        Self::from_spiffe_uri(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_and_client_ids() {
        let n = Identity::from_spiffe_uri("spiffe://demo.cb/agency/police").unwrap();
        assert!(matches!(&n, Identity::Node(n) if n.agency.as_str() == "police"));
        let c = Identity::from_spiffe_uri("spiffe://demo.cb/agency/police/client/cms").unwrap();
        assert!(matches!(&c, Identity::Client(c) if c.name.as_str() == "cms"));
        assert_eq!(c.to_string(), "spiffe://demo.cb/agency/police/client/cms");
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "https://demo.cb/agency/police",
            "spiffe://demo.cb/agency",
            "spiffe://demo.cb/org/police",
            "spiffe://demo.cb/agency/police/client",
            "spiffe://demo.cb/agency/police/client/cms/x",
            "spiffe://demo.cb/agency/POLICE",
            "spiffe://demo.cb/agency/police/admin/x",
        ] {
            assert!(Identity::from_spiffe_uri(bad).is_err(), "{bad} accepted");
        }
    }
}
