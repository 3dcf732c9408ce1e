//! `casebridge node check`: everything `node run` reads and checks before it
//! serves, without binding a port, with **every** problem reported rather
//! than the first: the node's certificate and key (their permissions, that
//! they belong together, its SPIFFE id, its chain to the federation CA, its
//! validity), both CAs and their revocation lists, the audit signing key,
//! the matching key ring, the sharing policy and the store directory.
//! `node run` runs the same checks first, so a broken file is reported as a
//! configuration error (exit 64) even when the port is also taken.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;

use crate::config::NodeConfig;
use crate::identity::{Identity, NodeIdentity, TlsIdentity, load_certs, load_crls};

/// Certificates closer than this to their end are reported as warnings.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    /// What stops the node from starting (or makes it unsafe to run).
    pub problems: Vec<String>,
    /// What works but needs attention soon (a certificate near its end).
    pub warnings: Vec<String>,
    /// What was checked and found good, for the operator's confidence.
    pub fine: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// When a certificate stops being valid, from its DER.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<SystemTime> {
    crate::identity::not_after(cert.as_ref())
}

fn validity(report: &mut Report, what: &str, path: &Path, cert: &CertificateDer<'_>) {
    let Some(end) = not_after(cert) else {
        report.problems.push(format!(
            "{}: {what} has no readable validity",
            path.display()
        ));
        return;
    };
    let left = crate::time::days_until(end, SystemTime::now());
    let until = crate::time::format_ms(
        end.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    );
    if left < 0 {
        report
            .problems
            .push(format!("{}: {what} expired on {until}", path.display()));
    } else if Duration::from_secs(left as u64 * 86_400) < EXPIRY_WARNING {
        report.warnings.push(format!(
            "{}: {what} expires in {left} days ({until}): renew it now",
            path.display()
        ));
    } else {
        report
            .fine
            .push(format!("{what} valid until {until} ({left} days)"));
    }
}

/// Runs every check of `config`'s files.
pub fn check(config: &NodeConfig) -> Report {
    let mut report = Report::default();
    let (federation_ca, federation_crls) = check_cas(config, &mut report);
    check_node_certificate(
        config,
        federation_ca.as_deref(),
        &federation_crls,
        &mut report,
    );
    check_audit_key(config, &mut report);
    check_key_ring(config, &mut report);
    check_peer_kinds(config, &mut report);
    check_policy(config, &mut report);
    check_store_dir(config, &mut report);
    report
}

type Certs = Vec<CertificateDer<'static>>;
type Crls = Vec<rustls::pki_types::CertificateRevocationListDer<'static>>;

/// The CAs and their revocation lists; the federation CA and its CRLs,
/// for the node certificate's check.
fn check_cas(config: &NodeConfig, report: &mut Report) -> (Option<Certs>, Crls) {
    let tls = &config.tls;
    let federation_ca = match load_certs(tls.federation_ca.get_ref()) {
        Ok(ca) => {
            validity(report, "federation CA", tls.federation_ca.get_ref(), &ca[0]);
            Some(ca)
        }
        Err(e) => {
            report.problems.push(e.to_string());
            None
        }
    };
    match load_certs(tls.client_ca.get_ref()) {
        Ok(ca) => validity(report, "client CA", tls.client_ca.get_ref(), &ca[0]),
        Err(e) => report.problems.push(e.to_string()),
    }
    let mut federation_crls = Vec::new();
    for (crl, into_fed) in [(&tls.federation_crl, true), (&tls.client_crl, false)] {
        if let Some(path) = crl {
            match load_crls(path.get_ref()) {
                Ok(crls) if into_fed => federation_crls = crls,
                Ok(_) => {}
                Err(e) => report.problems.push(e.to_string()),
            }
        }
    }
    (federation_ca, federation_crls)
}

/// The node's own certificate and key: its identity, validity, and that
/// the federation accepts it.
fn check_node_certificate(
    config: &NodeConfig,
    federation_ca: Option<&[CertificateDer<'static>]>,
    federation_crls: &[rustls::pki_types::CertificateRevocationListDer<'static>],
    report: &mut Report,
) {
    let tls = &config.tls;
    let (cert, key) = (tls.node_cert.get_ref(), tls.node_key.get_ref());
    let own = match TlsIdentity::load(cert, key) {
        Err(e) => return report.problems.push(e.to_string()),
        Ok(own) => own,
    };
    let expected = NodeIdentity {
        federation: config.federation.clone(),
        agency: config.agency().clone(),
    };
    if own.identity == Identity::Node(expected.clone()) {
        report
            .fine
            .push(format!("node certificate is {}", expected.spiffe_uri()));
    } else {
        report.problems.push(format!(
            "{}: names {}, but node.toml is for {}",
            cert.display(),
            own.identity,
            expected.spiffe_uri()
        ));
    }
    validity(report, "node certificate", cert, &own.chain[0]);
    if let Some(ca) = federation_ca
        && let Err(e) = chains_to(&own.chain, ca, federation_crls)
    {
        report.problems.push(format!(
            "{}: not accepted under the federation CA {}: {e}",
            cert.display(),
            tls.federation_ca.get_ref().display()
        ));
    }
}

/// The audit signing key (created at first start when missing).
fn check_audit_key(config: &NodeConfig, report: &mut Report) {
    let signing = config.audit_signing_key();
    if signing.exists() {
        if let Err(e) = crate::audit::signing::SigningKey::load(&signing) {
            report.problems.push(format!("{}: {e}", signing.display()));
        }
    } else {
        report.fine.push(format!(
            "audit signing key {} will be created at first start",
            signing.display()
        ));
    }
}

/// The matching key ring: this federation's, with a key valid now.
fn check_key_ring(config: &NodeConfig, report: &mut Report) {
    let Some(path) = &config.matching.key_ring else {
        return;
    };
    match crate::pseudo::KeyRing::load(path.get_ref()) {
        Err(e) => report.problems.push(e.to_string()),
        Ok(ring) if ring.federation != config.federation => report.problems.push(format!(
            "{}: key ring of federation {}, this node is in {}",
            path.get_ref().display(),
            ring.federation,
            config.federation
        )),
        Ok(ring) => {
            if ring
                .active(time::OffsetDateTime::now_utc())
                .next()
                .is_none()
            {
                report.warnings.push(format!(
                    "{}: no matching key is valid now; subjects are not shared",
                    path.get_ref().display()
                ));
            }
        }
    }
}

/// Peers of no kind: H1 alerts are withheld from them.
fn check_peer_kinds(config: &NodeConfig, report: &mut Report) {
    for p in config.peers.iter().filter(|p| p.kind.is_none()) {
        report.warnings.push(format!(
            "peer `{}` has no `kind` in [[peers]]: it is not taken for a law-enforcement \
             agency, so H1 alerts are withheld from it",
            p.agency_id.get_ref()
        ));
    }
}

/// The sharing policy, against the configured peers.
fn check_policy(config: &NodeConfig, report: &mut Report) {
    let Some(path) = &config.sharing.policy else {
        return;
    };
    let path = path.get_ref();
    let text = match std::fs::read_to_string(path) {
        Err(e) => return report.problems.push(format!("{}: {e}", path.display())),
        Ok(text) => text,
    };
    let members = match crate::federation::starting_members(config) {
        Ok(m) => m,
        Err(e) => return report.problems.push(e.to_string()),
    };
    match crate::sharing::parse_for(&members, &text, path, true) {
        Err(errors) => report
            .problems
            .extend(errors.into_iter().map(|e| e.to_string())),
        Ok(p) => {
            for (line, w) in p.handling_warnings() {
                report
                    .warnings
                    .push(format!("{}:{line}: {w}", path.display()));
            }
        }
    }
}

/// The store directory: a store of this version, or a new directory.
fn check_store_dir(config: &NodeConfig, report: &mut Report) {
    let store = &config.store.dir;
    if crate::store::is_sled_store(store) {
        report.problems.push(
            crate::store::StoreError::Legacy {
                dir: store.display().to_string(),
            }
            .to_string(),
        );
    } else if store.exists() && !crate::store::is_store(store) {
        let empty = std::fs::read_dir(store).is_ok_and(|mut d| d.next().is_none());
        if !empty {
            report.problems.push(format!(
                "{}: not a CaseBridge store and not empty; [store] dir must be a store or a new directory",
                store.display()
            ));
        }
    }
}

/// Whether `chain` is a client certificate the federation accepts: the
/// peers verify our node certificate exactly like this when we dial them.
fn chains_to(
    chain: &[CertificateDer<'static>],
    ca: &[CertificateDer<'static>],
    crls: &[rustls::pki_types::CertificateRevocationListDer<'static>],
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c.clone()).map_err(|e| e.to_string())?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(
        roots.into(),
        rustls::crypto::aws_lc_rs::default_provider().into(),
    )
    .with_crls(crls.iter().cloned())
    .build()
    .map_err(|e| e.to_string())?;
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}
