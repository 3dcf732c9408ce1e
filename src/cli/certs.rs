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
    Ok(())
}
