//! `casebridge certs …`: the development PKI of a federation.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Subcommand;

use super::exit::{Exit, Failure, failure};
use crate::certs;
use crate::ids::{AgencyId, ClientName, FederationName};

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create a development federation: CA, node and client certificates, configs.
    Init {
        /// The federation's name, a DNS-style name such as demo.casebridge
        /// (the trust domain of every SPIFFE id).
        #[arg(long)]
        federation: String,
        /// Comma-separated agency ids, e.g. police,labour,ngo.
        #[arg(long, value_delimiter = ',', required = true)]
        agencies: Vec<String>,
        /// The directory to write into (created; files in it are never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a private key (mode 0600) and a certificate signing request for
    /// a node or one of its client systems, to be signed by the federation
    /// CA (nodes) or the agency's client CA (clients). The key stays here.
    Request {
        /// The federation's name (the SPIFFE trust domain).
        #[arg(long)]
        federation: String,
        /// The agency: the node's, or the one the client system belongs to.
        #[arg(long)]
        agency: String,
        /// Request a client certificate for this system (e.g. cms) instead
        /// of the node's.
        #[arg(long)]
        client: Option<String>,
        /// A DNS name peers dial the node at (repeatable; nodes only).
        #[arg(long)]
        dns: Vec<String>,
        /// An IP address peers dial the node at (repeatable; nodes only).
        #[arg(long)]
        ip: Vec<std::net::IpAddr>,
        /// Where to write `node.key`/`node.csr` (or `NAME.key`/`NAME.csr`).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a certificate signing request with a CA: the federation CA for
    /// `--role node`, an agency's client CA for `--role client`. Only the
    /// request's names and public key are used; the SPIFFE id must be of
    /// the role and the federation given.
    Sign {
        /// The CA certificate (PEM).
        #[arg(long)]
        ca: PathBuf,
        /// The CA's private key (PEM).
        #[arg(long)]
        ca_key: PathBuf,
        /// The request to sign (`certs request` wrote it).
        #[arg(long)]
        csr: PathBuf,
        /// What the certificate is for.
        #[arg(long, value_enum)]
        role: certs::CertRole,
        /// The federation the SPIFFE id must belong to.
        #[arg(long)]
        federation: String,
        /// Days of validity (default: 397 for a node, 365 for a client).
        #[arg(long)]
        days: Option<u32>,
        /// Where to write the certificate (PEM); never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make one client's browser file (`clients/NAME.p12`) of a development
    /// federation again, under a new password (printed once), when the
    /// password was lost. The certificate stays the same; the old file is
    /// replaced.
    Bundle {
        /// The federation directory written by `certs init`.
        #[arg(long)]
        dir: PathBuf,
        /// The agency the client belongs to.
        #[arg(long)]
        agency: String,
        /// The client, e.g. legal.
        #[arg(long)]
        client: String,
    },
    /// Revoke a development certificate: add it to its CA's revocation list.
    /// Nodes pick the new list up within `tls.crl_reload_secs`, and open
    /// connections end within `tls.max_connection_age_secs`.
    Revoke {
        /// The federation directory written by `certs init`.
        #[arg(long)]
        dir: PathBuf,
        /// The agency whose node certificate (or client, with --client) to revoke.
        #[arg(long)]
        agency: String,
        /// Revoke this client certificate of the agency instead of its node's.
        #[arg(long)]
        client: Option<String>,
    },
}

pub fn run(command: CertsCommand) -> Result<(), Failure> {
    match command {
        CertsCommand::Init {
            federation,
            agencies,
            out,
        } => init(&federation, &agencies, &out),
        CertsCommand::Revoke {
            dir,
            agency,
            client,
        } => revoke(&dir, &agency, client.as_deref()),
        CertsCommand::Bundle {
            dir,
            agency,
            client,
        } => rebundle(&dir, &agency, &client),
        CertsCommand::Request {
            federation,
            agency,
            client,
            dns,
            ip,
            out,
        } => {
            let usage = |e: crate::ids::IdError| failure(Exit::Usage, anyhow!(e));
            let federation = FederationName::new(federation).map_err(usage)?;
            let agency = AgencyId::new(agency).map_err(usage)?;
            let client = client.map(ClientName::new).transpose().map_err(usage)?;
            if client.is_some() && !(dns.is_empty() && ip.is_empty()) {
                return Err(failure(
                    Exit::Usage,
                    anyhow!("--dns and --ip are for a node's request, not a client's"),
                ));
            }
            let spiffe = certs::request(&federation, &agency, client.as_ref(), &dns, &ip, &out)?;
            let stem = client.map_or("node".to_string(), |c| c.to_string());
            println!(
                "{}: private key (mode 0600; it never leaves this machine)\n{}: request for {spiffe}\n\
                 Send the .csr to whoever runs the {}; install the certificate they return as {stem}.pem.",
                out.join(format!("{stem}.key")).display(),
                out.join(format!("{stem}.csr")).display(),
                if stem == "node" {
                    "federation CA"
                } else {
                    "agency's client CA"
                },
            );
            Ok(())
        }
        CertsCommand::Sign {
            ca,
            ca_key,
            csr,
            role,
            federation,
            days,
            out,
        } => {
            let read = |p: &Path| {
                std::fs::read_to_string(p)
                    .map_err(|e| failure(Exit::Usage, anyhow!("{}: {e}", p.display())))
            };
            let federation =
                FederationName::new(federation).map_err(|e| failure(Exit::Usage, anyhow!(e)))?;
            let days = days.unwrap_or_else(|| certs::default_days(role));
            let (pem, spiffe) = certs::sign(
                &read(&csr)?,
                &read(&ca)?,
                &read(&ca_key)?,
                role,
                &federation,
                days,
            )
            .map_err(|e| match e {
                certs::CertsError::Refused(_) => {
                    failure(Exit::DataErr, anyhow!("{}: {e}", csr.display()))
                }
                other => failure(Exit::Failure, anyhow!(other)),
            })?;
            crate::secrets::create_new(&out, pem.as_bytes(), false).map_err(|e| {
                failure(
                    Exit::Usage,
                    anyhow!("{}: {e} (never overwritten)", out.display()),
                )
            })?;
            println!("{}: {spiffe}, valid {days} days", out.display());
            Ok(())
        }
    }
}

fn revoke(dir: &Path, agency: &str, client: Option<&str>) -> Result<(), Failure> {
    let usage = |e: crate::ids::IdError| failure(Exit::Usage, anyhow!(e));
    let agency = AgencyId::new(agency).map_err(usage)?;
    let target = match client {
        Some(name) => certs::RevokeTarget::Client(agency, ClientName::new(name).map_err(usage)?),
        None => certs::RevokeTarget::Node(agency),
    };
    let (crl, serial) =
        certs::revoke(dir, &target).map_err(|e| failure(Exit::DataErr, anyhow!(e)))?;
    println!("revoked serial {serial}; {} updated", crl.display());
    Ok(())
}

fn rebundle(dir: &Path, agency: &str, client: &str) -> Result<(), Failure> {
    let usage = |e: crate::ids::IdError| failure(Exit::Usage, anyhow!(e));
    let agency = AgencyId::new(agency).map_err(usage)?;
    let client = ClientName::new(client).map_err(usage)?;
    let b =
        certs::rebundle(dir, &agency, &client).map_err(|e| failure(Exit::DataErr, anyhow!(e)))?;
    println!(
        "{}  password {}\n(shown now only; the file it replaces no longer matters)",
        b.path.display(),
        b.password
    );
    Ok(())
}

fn init(federation: &str, agencies: &[String], out: &Path) -> Result<(), Failure> {
    let usage = |e: crate::ids::IdError| failure(Exit::Usage, anyhow!(e));
    let federation = FederationName::new(federation).map_err(usage)?;
    let mut ids = Vec::new();
    for a in agencies {
        let id = AgencyId::new(a.trim()).map_err(usage)?;
        if ids.contains(&id) {
            return Err(failure(
                Exit::Usage,
                anyhow!("agency `{id}` is listed twice"),
            ));
        }
        ids.push(id);
    }
    let addrs = certs::free_loopback_addrs(&ids)?;
    let layout = certs::init_federation(&federation, &addrs, out)?;
    let ks = certs::add_key_service(&federation, &layout)?;
    let bundles = certs::write_browser_bundles(&layout)?;
    println!(
        "development federation `{federation}` written to {}",
        out.display()
    );
    for (agency, a) in &layout.agencies {
        println!(
            "  {agency}: peer {} client {}  node config {}",
            a.addrs.peer,
            a.addrs.client,
            a.node_config.display()
        );
    }
    println!(
        "  OPRF key service: {}  config {} (start it first: casebridge keyservice run --config {})",
        ks.addr,
        ks.config.display(),
        ks.config.display()
    );
    println!(
        "start a node:    casebridge node run --config {}",
        layout
            .agencies
            .values()
            .next()
            .map_or(String::new(), |a| a.node_config.display().to_string())
    );
    println!(
        "use its client:  export CASEBRIDGE_CLIENT_CONFIG={}",
        layout.agencies.values().next().map_or(String::new(), |a| a
            .client_config("cms")
            .display()
            .to_string())
    );
    println!(
        "client certificates for a browser (PKCS#12, mode 0600; import them as docs/console.md says).\n\
         Each password is shown now only: note it, or make that file again under a new one with\n\
         `casebridge certs bundle --dir {} --agency AGENCY --client NAME`.",
        layout.dir.display()
    );
    for b in &bundles {
        println!(
            "  {:<8} {:<8} {}  password {}",
            b.agency.as_str(),
            b.client.as_str(),
            b.path.display(),
            b.password
        );
    }
    Ok(())
}
