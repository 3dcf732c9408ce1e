//! The node's TLS configs, rebuilt when its certificate revocation lists
//! change. A revocation published in a CRL file applies to every handshake
//! after the next check, without a restart; open connections end at their
//! age limit (see `serve_tls`) and meet the new CRL when they reconnect.
//! A CRL file that cannot be read or parsed leaves the configs in force.
//!
//! A node following a federation directory also trusts the revocation
//! list the directory carries (`federation_crl_pem`): it joins the
//! federation CRL file's on the peer side, and is applied as soon as a
//! version carrying it is adopted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateRevocationListDer;
use rustls::{ClientConfig, ServerConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::pem::{TlsError, load_crls, parse_crls};
use super::tls::{TlsIdentity, client_tls_config, server_tls_config};

/// Where the trust material lives.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub federation_ca: PathBuf,
    pub client_ca: PathBuf,
    pub federation_crl: Option<PathBuf>,
    pub client_crl: Option<PathBuf>,
}

/// The configs in force, for the listeners and for dialling peers.
#[derive(Clone)]
pub struct TlsConfigs {
    pub peer: watch::Receiver<Arc<ServerConfig>>,
    pub client: watch::Receiver<Arc<ServerConfig>>,
    /// The web console: the client listener's trust (the agency's client CA
    /// and CRL), offering HTTP/1.1 beside HTTP/2 for browsers.
    pub console: watch::Receiver<Arc<ServerConfig>>,
    pub outgoing: watch::Receiver<Arc<ClientConfig>>,
}

pub struct TlsReloader {
    files: TlsFiles,
    own: TlsIdentity,
    peer: watch::Sender<Arc<ServerConfig>>,
    client: watch::Sender<Arc<ServerConfig>>,
    console: watch::Sender<Arc<ServerConfig>>,
    outgoing: watch::Sender<Arc<ClientConfig>>,
    /// The CRL file contents the configs were built from.
    seen: (Vec<u8>, Vec<u8>),
    /// The directory's federation CRL in force (PEM), parsed.
    directory: (String, Crls),
}

type Crls = Vec<CertificateRevocationListDer<'static>>;

/// One generation of configs, built from the same files.
struct Built {
    peer: Arc<ServerConfig>,
    client: Arc<ServerConfig>,
    console: Arc<ServerConfig>,
    outgoing: Arc<ClientConfig>,
}

fn read_crls(path: &Option<PathBuf>) -> Result<(Vec<u8>, Crls), TlsError> {
    let Some(path) = path else {
        return Ok((Vec::new(), Vec::new()));
    };
    let bytes = std::fs::read(path).map_err(|e| TlsError::File {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok((bytes, load_crls(path)?))
}

/// One list per issuing CA, the newest (highest CRL number, then latest
/// thisUpdate): a verifier consults the first list of a certificate's
/// issuer and ignores the rest, so an older list from the file must not
/// hide a newer one from the directory, nor the other way round. A list
/// that does not parse stays, for the config build to refuse.
fn newest_per_issuer(crls: Crls) -> Crls {
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    // (issuer, (length of the CRL number, its big-endian bytes, thisUpdate), list):
    // numbers without leading zeros compare by length, then bytes.
    type Rank = (usize, Vec<u8>, i64);
    let mut newest: Vec<(Vec<u8>, Rank, CertificateRevocationListDer<'static>)> = Vec::new();
    let mut unparsed = Vec::new();
    for der in crls {
        let Ok((_, list)) = CertificateRevocationList::from_der(der.as_ref()) else {
            unparsed.push(der);
            continue;
        };
        let issuer = list.tbs_cert_list.issuer.as_raw().to_vec();
        let number = list
            .crl_number()
            .map(|n| n.to_bytes_be())
            .unwrap_or_default();
        let rank = (number.len(), number, list.last_update().timestamp());
        drop(list);
        match newest.iter_mut().find(|(i, _, _)| *i == issuer) {
            Some(kept) if kept.1 >= rank => {}
            Some(kept) => *kept = (issuer, rank, der),
            None => newest.push((issuer, rank, der)),
        }
    }
    newest
        .into_iter()
        .map(|(_, _, der)| der)
        .chain(unparsed)
        .collect()
}

impl TlsReloader {
    /// Builds the configs from the files; any problem stops the start.
    pub fn new(files: TlsFiles, own: TlsIdentity) -> Result<(Self, TlsConfigs), TlsError> {
        let (fed_bytes, fed) = read_crls(&files.federation_crl)?;
        let (client_bytes, client) = read_crls(&files.client_crl)?;
        let Built {
            peer: p,
            client: c,
            console: w,
            outgoing: o,
        } = Self::build(&files, &own, &fed, &client)?;
        let directory = (String::new(), Vec::new());
        let (peer, peer_rx) = watch::channel(p);
        let (client_tx, client_rx) = watch::channel(c);
        let (console, console_rx) = watch::channel(w);
        let (outgoing, outgoing_rx) = watch::channel(o);
        Ok((
            Self {
                files,
                own,
                peer,
                client: client_tx,
                console,
                outgoing,
                seen: (fed_bytes, client_bytes),
                directory,
            },
            TlsConfigs {
                peer: peer_rx,
                client: client_rx,
                console: console_rx,
                outgoing: outgoing_rx,
            },
        ))
    }

    fn build(
        files: &TlsFiles,
        own: &TlsIdentity,
        fed: &Crls,
        client: &Crls,
    ) -> Result<Built, TlsError> {
        let client_side = server_tls_config(own, &files.client_ca, client)?;
        let mut console = client_side.clone();
        console.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Built {
            peer: Arc::new(server_tls_config(own, &files.federation_ca, fed)?),
            client: Arc::new(client_side),
            console: Arc::new(console),
            outgoing: Arc::new(client_tls_config(own, &files.federation_ca, fed)?),
        })
    }

    /// Re-reads the CRL files and swaps the configs if either changed.
    pub fn reload_if_changed(&mut self) -> Result<bool, TlsError> {
        let (fed_bytes, fed) = read_crls(&self.files.federation_crl)?;
        let (client_bytes, client) = read_crls(&self.files.client_crl)?;
        if (&fed_bytes, &client_bytes) == (&self.seen.0, &self.seen.1) {
            return Ok(false);
        }
        self.swap(fed, &client)?;
        self.seen = (fed_bytes, client_bytes);
        Ok(true)
    }

    /// Puts the federation directory's revocation list (PEM; empty: none)
    /// in force beside the files'. Returns whether it changed; a list
    /// that does not parse leaves the configs in force.
    pub fn set_directory_crl(&mut self, pem: &str) -> Result<bool, TlsError> {
        if pem == self.directory.0 {
            return Ok(false);
        }
        let parsed = parse_crls(pem.as_bytes(), "the federation directory's CRL")?;
        let (_, fed) = read_crls(&self.files.federation_crl)?;
        let (_, client) = read_crls(&self.files.client_crl)?;
        let before = std::mem::replace(&mut self.directory, (pem.to_owned(), parsed));
        if let Err(e) = self.swap(fed, &client) {
            self.directory = before;
            return Err(e);
        }
        Ok(true)
    }

    /// Builds every config from the files' lists and the directory's,
    /// and puts them in force.
    fn swap(&mut self, mut fed: Crls, client: &Crls) -> Result<(), TlsError> {
        fed.extend(self.directory.1.iter().cloned());
        let fed = newest_per_issuer(fed);
        let built = Self::build(&self.files, &self.own, &fed, client)?;
        self.peer.send_replace(built.peer);
        self.client.send_replace(built.client);
        self.console.send_replace(built.console);
        self.outgoing.send_replace(built.outgoing);
        Ok(())
    }

    /// Checks the CRL files every `interval`, and follows the directory's
    /// list as `directory` changes (PEM), until shutdown.
    pub async fn run(
        mut self,
        interval: Duration,
        mut directory: watch::Receiver<String>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
                Ok(()) = directory.changed() => {
                    let pem = directory.borrow_and_update().clone();
                    match self.set_directory_crl(&pem) {
                        Ok(true) => tracing::info!("the federation directory's revocation list is in force"),
                        Ok(false) => {}
                        Err(e) => tracing::error!(error = %e, "the directory's CRL is not in force; the lists before stay"),
                    }
                    continue;
                }
            }
            match self.reload_if_changed() {
                Ok(true) => tracing::info!("certificate revocation lists reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "CRL not reloaded; the lists in force stay"),
            }
        }
    }
}
