//! The OPRF key service's config file (`keyservice.toml`): its listener and
//! TLS files, its secret keys and store, and what it lets each node
//! evaluate (budgets). A node's `[key_service]` section, where the key
//! service is, is [`super::KeyServiceClientConfig`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{
    AuditConfig, Bounded, ConfigError, MetricsConfig, at, base_dir, beside_store, parse,
    read_source, resolve,
};
use crate::ids::{AgencyId, FederationName};

/// `keyservice.toml`: the key service's own config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyServiceConfig {
    /// Federation whose nodes may call (the authority of their SPIFFE ids).
    pub federation: FederationName,
    /// Address of the mutual-TLS listener nodes call.
    pub listen: Spanned<SocketAddr>,
    pub tls: KeyServiceTls,
    /// The secret key file (`casebridge keyservice keys generate`), mode 0600.
    pub keys: Spanned<PathBuf>,
    /// Directory of the key service's own store: its audit log (counts per
    /// node, never values). Created if missing.
    pub data_dir: PathBuf,
    #[serde(default)]
    pub budget: BudgetConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub audit: AuditConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyServiceTls {
    /// The federation CA: nodes present certificates it issued.
    pub federation_ca: Spanned<PathBuf>,
    /// The key service's certificate (issued by the federation CA, naming
    /// `spiffe://<federation>/agency/keyservice`) and key.
    pub cert: Spanned<PathBuf>,
    pub key: Spanned<PathBuf>,
    /// The federation CA's CRL: revoked node certificates are refused.
    #[serde(default)]
    pub federation_crl: Option<Spanned<PathBuf>>,
    #[serde(default = "super::default_crl_reload")]
    pub crl_reload_secs: Bounded<1, 86400>,
    #[serde(default = "super::default_max_connection_age")]
    pub max_connection_age_secs: Bounded<1, 604800>,
}

/// How many elements (one per identifier and key version) each node may
/// have evaluated: the bound on how fast a compromised member can
/// enumerate identifiers through the service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Sustained elements per minute per node (bursts up to one minute's worth).
    pub per_minute: Bounded<1, 100_000_000>,
    /// Elements per node per UTC day.
    pub per_day: Bounded<1, 1_000_000_000>,
    /// Budgets of named nodes that differ from the default (an agency
    /// importing years of records for a while, say).
    pub nodes: BTreeMap<AgencyId, NodeBudget>,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            per_minute: Bounded::new(1_200),
            per_day: Bounded::new(100_000),
            nodes: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBudget {
    pub per_minute: Option<Bounded<1, 100_000_000>>,
    pub per_day: Option<Bounded<1, 1_000_000_000>>,
}

impl BudgetConfig {
    /// (per minute, per day) for `agency`.
    pub fn of(&self, agency: &AgencyId) -> (u64, u64) {
        let o = self.nodes.get(agency);
        (
            o.and_then(|o| o.per_minute)
                .unwrap_or(self.per_minute)
                .get() as u64,
            o.and_then(|o| o.per_day).unwrap_or(self.per_day).get() as u64,
        )
    }
}

impl KeyServiceConfig {
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let src = read_source(file)?;
        Self::from_toml(file, &src)
    }

    pub fn from_toml(file: &Path, src: &str) -> Result<Self, ConfigError> {
        let mut cfg: KeyServiceConfig = parse(file, src)?;
        let base = base_dir(file);
        for p in [
            &mut cfg.tls.federation_ca,
            &mut cfg.tls.cert,
            &mut cfg.tls.key,
            &mut cfg.keys,
        ] {
            resolve(&base, p.get_mut());
        }
        if let Some(crl) = cfg.tls.federation_crl.as_mut() {
            resolve(&base, crl.get_mut());
        }
        resolve(&base, &mut cfg.data_dir);
        if let Some(key) = cfg.audit.signing_key.as_mut() {
            resolve(&base, key.get_mut());
        }
        for (key, path) in [
            ("tls.federation_ca", Some(&cfg.tls.federation_ca)),
            ("tls.cert", Some(&cfg.tls.cert)),
            ("tls.key", Some(&cfg.tls.key)),
            ("tls.federation_crl", cfg.tls.federation_crl.as_ref()),
            ("keys", Some(&cfg.keys)),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.map(|p| (k, p)))
        {
            if !path.get_ref().is_file() {
                return Err(at(
                    file,
                    src,
                    path.span().start,
                    format!("{key}: file {} does not exist", path.get_ref().display()),
                ));
            }
        }
        Ok(cfg)
    }

    /// Where the audit signing key is (configured, or next to the data dir).
    pub fn audit_signing_key(&self) -> PathBuf {
        match &self.audit.signing_key {
            Some(p) => p.get_ref().clone(),
            None => beside_store(&self.data_dir, "keyservice-audit.key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
federation = "demo.casebridge"
listen = "127.0.0.1:7400"
keys = "oprf-secret-keys.toml"
data_dir = "data"

[tls]
federation_ca = "ca.pem"
cert = "node.pem"
key = "node.key"

[budget]
per_minute = 2000
per_day = 50000

[budget.nodes.border]
per_day = 400000
"#;

    fn dir_with_files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "node.pem", "node.key", "oprf-secret-keys.toml"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        dir
    }

    #[test]
    fn a_key_service_config_resolves_paths_and_budgets_per_node() {
        let dir = dir_with_files();
        let file = dir.path().join("keyservice.toml");
        let cfg = KeyServiceConfig::from_toml(&file, GOOD).unwrap();
        assert_eq!(cfg.data_dir, dir.path().join("data"));
        assert_eq!(
            cfg.keys.get_ref(),
            &dir.path().join("oprf-secret-keys.toml")
        );
        let border = AgencyId::new("border").unwrap();
        let police = AgencyId::new("police").unwrap();
        assert_eq!(cfg.budget.of(&border), (2000, 400_000));
        assert_eq!(cfg.budget.of(&police), (2000, 50_000));
        assert_eq!(
            cfg.audit_signing_key(),
            dir.path().join("keyservice-audit.key")
        );
    }

    #[test]
    fn key_service_config_mistakes_name_their_line_and_column() {
        let dir = dir_with_files();
        let file = dir.path().join("keyservice.toml");
        for (text, line, says) in [
            (GOOD.replace("per_day = 50000", "per_day = 0"), 14, ""),
            (
                GOOD.replace("per_minute = 2000", "per_minute = 2000\nper_hour = 1"),
                14,
                "per_hour",
            ),
            (
                GOOD.replace("cert = \"node.pem\"", "cert = \"missing.pem\""),
                9,
                "tls.cert",
            ),
            (
                GOOD.replace("[budget.nodes.border]", "[budget.nodes.\"Not An Id\"]"),
                16,
                "",
            ),
        ] {
            let err = KeyServiceConfig::from_toml(&file, &text)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("keyservice.toml:{line}:")) && err.contains(says),
                "{err}"
            );
        }
    }
}
