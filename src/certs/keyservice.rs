//! The development federation's OPRF key service: its certificate (a node
//! certificate of the federation CA naming `agency/keyservice`), its secret
//! OPRF keys, the public key file every node pins, and `keyservice.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{CertRole, CertsError, default_days, request, sign, write_new};
use crate::ids::{AgencyId, FederationName};
use crate::keyservice::DEFAULT_IDENTITY;
use crate::pseudo::oprf_keys::{self, SecretKeys};

/// Where the development key service's files are.
#[derive(Debug, Clone)]
pub struct KeyServiceLayout {
    pub dir: PathBuf,
    pub config: PathBuf,
    /// The secret seeds (0600): only the key service reads them.
    pub secret_keys: PathBuf,
    /// The public keys every node pins.
    pub public_keys: PathBuf,
    pub addr: SocketAddr,
}

/// Writes `<federation dir>/keyservice/` for a key service listening on
/// `addr`, its certificate signed by the federation CA in `federation_dir`
/// (`federation-ca.pem`, `federation-ca.key`).
pub fn init_key_service(
    federation: &FederationName,
    federation_dir: &Path,
    addr: SocketAddr,
) -> Result<KeyServiceLayout, CertsError> {
    let dir = federation_dir.join("keyservice");
    let agency = AgencyId::new(DEFAULT_IDENTITY).expect("a valid agency id");
    request(
        federation,
        &agency,
        None,
        &["localhost".to_string()],
        &[addr.ip()],
        &dir,
    )?;
    let read =
        |p: PathBuf| std::fs::read_to_string(&p).map_err(|error| CertsError::Io { path: p, error });
    let (cert, _) = sign(
        &read(dir.join("node.csr"))?,
        &read(federation_dir.join("federation-ca.pem"))?,
        &read(federation_dir.join("federation-ca.key"))?,
        CertRole::Node,
        federation,
        default_days(CertRole::Node),
    )?;
    write_new(&dir.join("node.pem"), &cert, false)?;
    let secret_keys = dir.join("oprf-secret-keys.toml");
    let invalid = |path: &Path, e: crate::pseudo::KeyFileError| CertsError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    // The seeds sealed under a KEK of the key service's own (0600), as a
    // node's store is under its KEK (docs/encryption.md).
    let kek = dir.join("kek.toml");
    crate::vault::FileKek::create(&kek).map_err(|e| CertsError::Invalid {
        path: kek.clone(),
        reason: e.to_string(),
    })?;
    oprf_keys::generate(&secret_keys, federation, Some(Path::new("kek.toml")))
        .map_err(|e| invalid(&secret_keys, e))?;
    let public_keys = federation_dir.join("oprf-keys.toml");
    let public = SecretKeys::load(&secret_keys)
        .map_err(|e| invalid(&secret_keys, e))?
        .public_file();
    write_new(&public_keys, &public, false)?;
    let config = dir.join("keyservice.toml");
    write_new(
        &config,
        &format!(
            "# The development federation's OPRF key service: `casebridge keyservice run --config {}`.\n\
             federation = \"{federation}\"\n\
             listen = \"{addr}\"\n\
             keys = \"oprf-secret-keys.toml\"\n\
             data_dir = \"data\"\n\n\
             [tls]\n\
             federation_ca = \"../federation-ca.pem\"\n\
             cert = \"node.pem\"\n\
             key = \"node.key\"\n\n\
             # Elements (identifiers x key versions) each node may have evaluated.\n\
             [budget]\n\
             per_minute = 1200\n\
             per_day = 100000\n",
            config_name()
        ),
        false,
    )?;
    Ok(KeyServiceLayout {
        dir,
        config,
        secret_keys,
        public_keys,
        addr,
    })
}

fn config_name() -> &'static str {
    "keyservice/keyservice.toml"
}

/// Sets up the development federation's key service on a free loopback
/// port and points every node of `layout` at it (a `[key_service]` section
/// in each `node.toml`, pinning `../oprf-keys.toml`): exact tokens then come
/// from the key service, the key ring keys person encodings only.
pub fn add_key_service(
    federation: &FederationName,
    layout: &super::FederationLayout,
) -> Result<KeyServiceLayout, CertsError> {
    let free = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .map_err(CertsError::Ports)?;
    let addr = free.local_addr().map_err(CertsError::Ports)?;
    drop(free);
    let ks = init_key_service(federation, &layout.dir, addr)?;
    for agency in layout.agencies.values() {
        let path = &agency.node_config;
        let mut text = std::fs::read_to_string(path).map_err(|error| CertsError::Io {
            path: path.clone(),
            error,
        })?;
        text.push_str(&node_section(&ks, "../oprf-keys.toml"));
        std::fs::write(path, text).map_err(|error| CertsError::Io {
            path: path.clone(),
            error,
        })?;
    }
    Ok(ks)
}

/// The `[key_service]` section a development node's config gets.
pub fn node_section(layout: &KeyServiceLayout, public_keys_relative: &str) -> String {
    format!(
        "\n# Exact tokens from the federation's OPRF key service (docs/threat-model.md).\n\
         [key_service]\n\
         addresses = [\"{}\"]\n\
         public_keys = \"{public_keys_relative}\"\n",
        layout.addr
    )
}
