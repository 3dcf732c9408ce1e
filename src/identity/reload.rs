//! The node's TLS configs, rebuilt when its certificate revocation lists
//! change. A revocation published in a CRL file applies to every handshake
//! after the next check, without a restart; open connections end at their
//! age limit (see `serve_tls`) and meet the new CRL when they reconnect.
//! A CRL file that cannot be read or parsed leaves the configs in force.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateRevocationListDer;
use rustls::{ClientConfig, ServerConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::pem::load_crls;
use super::tls::{TlsError, TlsIdentity, client_tls_config, server_tls_config};

/// Where the trust material lives.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub federation_ca: PathBuf,
    pub client_ca: PathBuf,
    pub federation_crl: Option<PathBuf>,
    pub client_crl: Option<PathBuf>,
}

/// The configs in force, for the two listeners and for dialling peers.
#[derive(Clone)]
pub struct TlsConfigs {
    pub peer: watch::Receiver<Arc<ServerConfig>>,
    pub client: watch::Receiver<Arc<ServerConfig>>,
    pub outgoing: watch::Receiver<Arc<ClientConfig>>,
}

pub struct TlsReloader {
    files: TlsFiles,
    own: TlsIdentity,
    peer: watch::Sender<Arc<ServerConfig>>,
    client: watch::Sender<Arc<ServerConfig>>,
    outgoing: watch::Sender<Arc<ClientConfig>>,
    /// The CRL file contents the configs were built from.
    seen: (Vec<u8>, Vec<u8>),
}

type Crls = Vec<CertificateRevocationListDer<'static>>;

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

impl TlsReloader {
    /// Builds the configs from the files; any problem stops the start.
    pub fn new(files: TlsFiles, own: TlsIdentity) -> Result<(Self, TlsConfigs), TlsError> {
        let (fed_bytes, fed) = read_crls(&files.federation_crl)?;
        let (client_bytes, client) = read_crls(&files.client_crl)?;
        let (p, c, o) = Self::build(&files, &own, &fed, &client)?;
        let (peer, peer_rx) = watch::channel(p);
        let (client_tx, client_rx) = watch::channel(c);
        let (outgoing, outgoing_rx) = watch::channel(o);
        Ok((
            Self {
                files,
                own,
                peer,
                client: client_tx,
                outgoing,
                seen: (fed_bytes, client_bytes),
            },
            TlsConfigs {
                peer: peer_rx,
                client: client_rx,
                outgoing: outgoing_rx,
            },
        ))
    }

    #[allow(clippy::type_complexity)]
    fn build(
        files: &TlsFiles,
        own: &TlsIdentity,
        fed: &Crls,
        client: &Crls,
    ) -> Result<(Arc<ServerConfig>, Arc<ServerConfig>, Arc<ClientConfig>), TlsError> {
        Ok((
            Arc::new(server_tls_config(own, &files.federation_ca, fed)?),
            Arc::new(server_tls_config(own, &files.client_ca, client)?),
            Arc::new(client_tls_config(own, &files.federation_ca, fed)?),
        ))
    }

    /// Re-reads the CRL files and swaps the configs if either changed.
    pub fn reload_if_changed(&mut self) -> Result<bool, TlsError> {
        let (fed_bytes, fed) = read_crls(&self.files.federation_crl)?;
        let (client_bytes, client) = read_crls(&self.files.client_crl)?;
        if (&fed_bytes, &client_bytes) == (&self.seen.0, &self.seen.1) {
            return Ok(false);
        }
        let (p, c, o) = Self::build(&self.files, &self.own, &fed, &client)?;
        self.peer.send_replace(p);
        self.client.send_replace(c);
        self.outgoing.send_replace(o);
        self.seen = (fed_bytes, client_bytes);
        Ok(true)
    }

    /// Checks the CRL files every `interval` until shutdown.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            match self.reload_if_changed() {
                Ok(true) => tracing::info!("certificate revocation lists reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "CRL not reloaded; the lists in force stay"),
            }
        }
    }
}
