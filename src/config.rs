//! Node and client configuration files (TOML).
//!
//! Config is plain data, loaded and validated before any port is bound, so a
//! mistake stops the node with the file, the line and what is wrong instead of
//! surfacing later as a confusing TLS or network failure. Relative paths are
//! resolved against the directory of the config file, so a generated federation
//! directory can be moved as a whole.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::Spanned;

use crate::ids::{AgencyId, ClientName, FederationName};

mod keyservice;
mod stats_plan;
pub use keyservice::{BudgetConfig, KeyServiceConfig, KeyServiceTls, NodeBudget};
pub use stats_plan::load_stats_plan;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// A role a client certificate can be given in the node config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submit, update and retract the agency's own alerts.
    Submit,
    /// Read alerts (own and received).
    Read,
    /// Review hits: confirmed, false positive, needs information.
    Review,
    /// Send disclosure requests to other agencies and answer their
    /// questions; read the requests sent and the releases received.
    Request,
    /// Decide on disclosure requests received from other agencies.
    Disclose,
    /// Node administration: status, peers, the sharing policy (set,
    /// explain, diff), Reshare / RetractFromPeer, audit queries, backups.
    Admin,
    /// Triage the public intake's reports (ReportService): read them,
    /// reply to their reporters, link them to alerts, close them.
    Intake,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Submit => "submit",
            Role::Read => "read",
            Role::Review => "review",
            Role::Request => "request",
            Role::Disclose => "disclose",
            Role::Admin => "admin",
            Role::Intake => "intake",
        })
    }
}

/// An integer setting with its allowed range in the type, so an out-of-range
/// value is rejected while parsing and the error carries its line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bounded<const MIN: usize, const MAX: usize>(usize);

impl<const MIN: usize, const MAX: usize> Bounded<MIN, MAX> {
    /// For defaults written in code; panics on a value outside the range.
    pub const fn new(v: usize) -> Self {
        assert!(v >= MIN && v <= MAX);
        Self(v)
    }
    pub const fn get(self) -> usize {
        self.0
    }
    /// The setting read as a number of seconds.
    pub const fn secs(self) -> Duration {
        Duration::from_secs(self.0 as u64)
    }
    /// The setting read as a number of days.
    pub const fn days(self) -> Duration {
        Duration::from_secs(self.0 as u64 * 86_400)
    }
}

impl<'de, const MIN: usize, const MAX: usize> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = usize::deserialize(d)?;
        if !(MIN..=MAX).contains(&v) {
            return Err(serde::de::Error::custom(format!(
                "{v} is out of range: must be between {MIN} and {MAX}"
            )));
        }
        Ok(Self(v))
    }
}

/// The roles of one client; an empty list is rejected (it would be a client
/// that can do nothing, almost certainly a mistake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles(BTreeSet<Role>);

impl Roles {
    pub fn contains(&self, role: &Role) -> bool {
        self.0.contains(role)
    }
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let roles = BTreeSet::<Role>::deserialize(d)?;
        if roles.is_empty() {
            return Err(serde::de::Error::custom(
                "a client needs at least one role: submit, read or admin",
            ));
        }
        Ok(Self(roles))
    }
}

/// The node config file. Every field is documented because an NGO operator
/// with little IT staff reads this struct's docs, through `docs/`, to write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's agency id. Must match the URI SAN of the node certificate.
    pub agency_id: Spanned<AgencyId>,
    /// Federation name: the authority of every SPIFFE id (`spiffe://<federation>/…`).
    pub federation: FederationName,
    pub listen: ListenConfig,
    pub tls: TlsConfig,
    pub store: StoreConfig,
    /// Peers this node delivers to and accepts deliveries from. A node not
    /// listed here is refused even with a valid federation certificate.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Local client names (the `<name>` in `spiffe://<fed>/agency/<id>/client/<name>`)
    /// and the roles each one has. A client not listed has no role at all.
    #[serde(default)]
    pub clients: BTreeMap<ClientName, Roles>,
    #[serde(default)]
    pub matching: MatchingConfig,
    #[serde(default)]
    pub sharing: SharingConfig,
    #[serde(default)]
    pub alerts: AlertRules,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub disclosure: DisclosureConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    /// The federation's OPRF key service; without it exact tokens come from
    /// the key ring (HMAC), as before issue 18.
    #[serde(default)]
    pub key_service: Option<KeyServiceClientConfig>,
    #[serde(default)]
    pub compat: CompatConfig,
    /// The signed federation directory this node follows (docs/directory.md):
    /// its peers, their endpoints and kinds come from it instead of
    /// `[[peers]]`, which must then be empty.
    #[serde(default)]
    pub directory: Option<DirectoryConfig>,
    /// Encryption at rest (docs/encryption.md): the store's case data
    /// sealed under epoch keys wrapped by a KEK.
    #[serde(default)]
    pub encryption: Option<EncryptionConfig>,
    /// The public report intake (docs/intake.md); none = no intake.
    #[serde(default)]
    pub intake: Option<IntakeConfig>,
}

/// `[intake]`: the public report intake (docs/intake.md). Off unless set;
/// when set, its own HTTPS listener with a certificate the operator gives
/// (a public CA's, since reporters' browsers must trust it) and no client
/// certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeConfig {
    /// Address of the public intake: HTTPS (TLS 1.2 and 1.3, so old phones
    /// reach it), serving the report form and nothing else.
    pub listen: Spanned<SocketAddr>,
    /// PEM certificate chain the intake presents, leaf first (from a public
    /// CA, or the reverse proxy's certificate in front of it).
    pub cert: Spanned<PathBuf>,
    /// PEM private key of `cert`. Must not be readable by others.
    pub key: Spanned<PathBuf>,
    /// Days a report is kept after it came in; then it is purged (its data
    /// key destroyed).
    #[serde(default = "default_retention_days")]
    pub retention_days: Bounded<1, 3650>,
    /// Reports not yet closed the node keeps at most: a flood past it is
    /// told to try later, never fills the disk.
    #[serde(default = "default_max_open")]
    pub max_open_reports: Bounded<1, 1_000_000>,
    /// New reports a minute the whole intake takes (everyone together).
    #[serde(default = "default_per_minute")]
    pub reports_per_minute: Bounded<1, 100_000>,
    /// Wrong receipts a minute the whole intake tolerates (a token bucket:
    /// this many at once, refilled at this rate); once it is empty every
    /// receipt waits until it refills.
    #[serde(default = "default_per_minute")]
    pub wrong_receipts_per_minute: Bounded<1, 100_000>,
    /// Connections the intake serves at once; more wait in the kernel's
    /// queue, so idle ones cannot lock everyone out of the node's other
    /// listeners.
    #[serde(default = "default_max_connections")]
    pub max_connections: Bounded<1, 100_000>,
    /// The emergency number the form shows first (112 in the EU).
    #[serde(default = "default_emergency_number")]
    pub emergency_number: Spanned<String>,
}

fn default_retention_days() -> Bounded<1, 3650> {
    Bounded::new(365)
}

fn default_max_open() -> Bounded<1, 1_000_000> {
    Bounded::new(10_000)
}

fn default_per_minute() -> Bounded<1, 100_000> {
    Bounded::new(60)
}

fn default_max_connections() -> Bounded<1, 100_000> {
    Bounded::new(256)
}

fn default_emergency_number() -> Spanned<String> {
    Spanned::new(0..0, "112".to_owned())
}

impl IntakeConfig {
    /// Why the emergency number is not one, if it is not: 2 to 15 digits
    /// (E.164's longest), as a phone dials it.
    pub fn emergency_number_problem(&self) -> Option<String> {
        let n = self.emergency_number.get_ref();
        (!(2..=15).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_digit())).then(|| {
            format!("intake.emergency_number: `{n}` is not a number to dial (2 to 15 digits)")
        })
    }
}

/// `[encryption]`: where the KEK is and how long epochs last.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// The key-encryption key file (0600; `certs init` writes one).
    pub kek_file: Spanned<PathBuf>,
    /// How long one epoch key seals new data. After an epoch ends every
    /// live value is sealed again under the next, so what was purged or
    /// overwritten during it is unreadable from the data directory once
    /// its key is destroyed (docs/encryption.md, the guarantees).
    #[serde(default = "default_epoch_secs")]
    pub epoch_secs: Bounded<5, 2_592_000>,
    /// How long an ended epoch's key is kept so backups taken during it
    /// can be restored; 0 destroys it as soon as nothing live needs it.
    #[serde(default = "default_backup_retention_days")]
    pub backup_retention_days: Bounded<0, 3650>,
}

fn default_epoch_secs() -> Bounded<5, 2_592_000> {
    Bounded::new(86_400)
}

fn default_backup_retention_days() -> Bounded<0, 3650> {
    Bounded::new(30)
}

/// `[directory]`: where the node's trust in the federation directory starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// A signed directory of this federation, handed over out of band (as
    /// TUF clients ship their first root), carrying the threshold of its
    /// own signer set: the node trusts those signers from the start and
    /// follows every newer version they (and their successors) sign.
    pub anchor: Spanned<PathBuf>,
    /// A file the node re-reads every probe interval: a newer version
    /// dropped there is offered as a published one is (optional).
    #[serde(default)]
    pub file: Option<Spanned<PathBuf>>,
    /// How long after the directory in force expires the node keeps
    /// delivering while it warns, before it holds everything outgoing
    /// until a fresh version arrives (docs/directory.md, "Expiry").
    #[serde(default = "default_directory_grace")]
    pub grace_secs: Bounded<0, 2_592_000>,
}

/// Three days: an outage over a weekend does not stop the exchange.
fn default_directory_grace() -> Bounded<0, 2_592_000> {
    Bounded::new(259_200)
}

/// `[compat]`: what this node tells its peers it understands.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompatConfig {
    /// Capabilities this node does not announce, and answers "not
    /// understood" to (peers hold what needs them): keeps a feature off
    /// until every agency runs a release that has it, or plays an older
    /// node in a test. Names as `casebridge --version` lists them.
    pub withhold_capabilities: Vec<Spanned<String>>,
}

impl NodeConfig {
    /// The capabilities this node announces: all this release has, less
    /// those `[compat]` withholds (checked at load).
    pub fn capabilities(&self) -> crate::release::Capabilities {
        let withheld: Vec<crate::release::Capability> = self
            .compat
            .withhold_capabilities
            .iter()
            .filter_map(|n| crate::release::Capability::from_name(n.get_ref()))
            .collect();
        crate::release::Capabilities::ours().without(&withheld)
    }
}

/// The tamper-evident audit log (`docs/operator-guide.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Entries older than this are pruned (the prune is itself an entry).
    /// At least a year: the laws this log serves ask for that much.
    pub retention_days: Bounded<365, 36_500>,
    /// How often the node signs a checkpoint of the chain when it has grown
    /// (also at every shutdown). Entries after the last checkpoint can be
    /// cut off undetected, so this bounds what an attacker could remove.
    pub checkpoint_interval_secs: Bounded<1, 86_400>,
    /// Ed25519 PKCS#8 PEM key that signs checkpoints; created (mode 0600,
    /// with `<key>.pub` beside it) at first start if missing. Default:
    /// `audit-signing.key` next to the store directory, so a restore that
    /// replaces the store keeps the key.
    pub signing_key: Option<Spanned<PathBuf>>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention_days: Bounded::new(400),
            checkpoint_interval_secs: Bounded::new(60),
            signing_key: None,
        }
    }
}

impl NodeConfig {
    /// Where the audit signing key is (configured, or next to the store).
    pub fn audit_signing_key(&self) -> PathBuf {
        match &self.audit.signing_key {
            Some(p) => p.get_ref().clone(),
            None => beside_store(&self.store.dir, "audit-signing.key"),
        }
    }

    /// Where backups go (configured, or `backups` next to the store).
    pub fn backup_dir(&self) -> PathBuf {
        self.store
            .backup_dir
            .clone()
            .unwrap_or_else(|| beside_store(&self.store.dir, "backups"))
    }

    /// Where the epoch keys live (`keys` next to the store, owner only):
    /// apart from the store, so that one is destroyed when told.
    pub fn epoch_keys_dir(&self) -> PathBuf {
        beside_store(&self.store.dir, "keys")
    }

    /// Where the console keeps uploaded registers while they are checked
    /// and imported: `uploads` next to the store, owner only, emptied at
    /// start (an upload is worth nothing after a restart: its job is gone).
    pub fn uploads_dir(&self) -> PathBuf {
        beside_store(&self.store.dir, "uploads")
    }
}

/// A sibling of the store directory: kept when the store is replaced.
fn beside_store(store: &Path, name: &str) -> PathBuf {
    store
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(name)
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the plain-HTTP `GET /metrics` endpoint; none = no endpoint.
    /// It has no authentication: keep it on loopback (or behind a firewall).
    pub listen: Option<Spanned<SocketAddr>>,
}

/// The web console (`docs/console.md`): HTTPS on its own listener, the
/// agency's client certificates (and their roles) as the only way in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Address of the console; none = no console (the default). TLS 1.3
    /// with the node certificate, a client certificate from `client_ca`
    /// required, exactly as on the client API.
    pub listen: Option<Spanned<SocketAddr>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Address of the peer API (other nodes, federation CA).
    pub peer: Spanned<SocketAddr>,
    /// Address of the client and admin API (this agency's systems, local client CA).
    pub client: Spanned<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate of the federation CA: trust anchor for peers and for
    /// clients verifying this node.
    pub federation_ca: Spanned<PathBuf>,
    /// PEM certificate chain of this node (leaf first), issued by the federation CA.
    pub node_cert: Spanned<PathBuf>,
    /// PEM private key of the node certificate. Must not be readable by others.
    pub node_key: Spanned<PathBuf>,
    /// PEM certificate of this agency's local client CA.
    pub client_ca: Spanned<PathBuf>,
    /// PEM certificate revocation list(s) of the federation CA: revoked node
    /// certificates are refused on the peer listener and when dialling peers.
    #[serde(default)]
    pub federation_crl: Option<Spanned<PathBuf>>,
    /// PEM certificate revocation list(s) of the local client CA.
    #[serde(default)]
    pub client_crl: Option<Spanned<PathBuf>>,
    /// How often the CRL files are re-read; a changed CRL applies to new
    /// handshakes without a restart.
    #[serde(default = "default_crl_reload")]
    pub crl_reload_secs: Bounded<1, 86400>,
    /// Longest life of any TLS connection, accepted or dialled; then it is
    /// closed and the other side re-handshakes. This bounds how long a
    /// revoked certificate keeps an open connection.
    #[serde(default = "default_max_connection_age")]
    pub max_connection_age_secs: Bounded<1, 604800>,
}

fn default_crl_reload() -> Bounded<1, 86400> {
    Bounded::new(60)
}

fn default_max_connection_age() -> Bounded<1, 604800> {
    Bounded::new(3600)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the node's database. Created if missing.
    pub dir: PathBuf,
    /// Block cache of the store, in MiB: the bound on what the store keeps
    /// of its files in memory (its write buffers come on top; see the
    /// operator guide). Small machines run nodes, so the default is modest.
    #[serde(default = "default_cache_mb")]
    pub cache_capacity_mb: Bounded<8, 65_536>,
    /// Where `casebridge store backup` writes copies; default: `backups`
    /// next to the store directory.
    #[serde(default)]
    pub backup_dir: Option<PathBuf>,
}

fn default_cache_mb() -> Bounded<8, 65_536> {
    Bounded::new(128)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub agency_id: Spanned<AgencyId>,
    /// `host:port` of the peer's peer API. The host must appear in the peer's
    /// certificate (DNS or IP SAN).
    pub address: Spanned<String>,
    /// What kind of agency the peer is: the handling codes promise kinds
    /// of recipient (H1: law enforcement only). Unset: not taken for a
    /// law-enforcement agency (older node.toml files keep loading; they
    /// withhold H1 alerts until it is set).
    #[serde(default)]
    pub kind: Option<Spanned<crate::handling::PeerKind>>,
}

/// What this node shares with whom.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharingConfig {
    /// The sharing policy file (docs/policy.md). Without one the node shares
    /// nothing: default deny. `certs init` writes a permissive development
    /// policy; replace it before real use.
    pub policy: Option<Spanned<PathBuf>>,
    /// The policy's own test cases (docs/policy.md, "Testing a policy"):
    /// run by `TestPolicy` and the web console's policy editor against
    /// every draft before it is installed.
    pub tests: Option<Spanned<PathBuf>>,
}

/// How identifiers are pseudonymized for matching across agencies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchingConfig {
    /// The federation's matching key ring (`casebridge keys generate`), the
    /// same file on every node, mode 0600. Without it identifiers are still
    /// validated and normalized, but no tokens are shared and nothing matches.
    pub key_ring: Option<Spanned<PathBuf>>,
    /// Region (ISO 3166-1 alpha-2) for phone numbers written without country
    /// code, e.g. "NL". A phone identifier's own `region` overrides it.
    pub default_phone_region: Option<Spanned<String>>,
    /// The review band of fuzzy person matches (scores 0.5 to 1.0): from
    /// `likely_threshold` up a hit is likely and the other agency is told;
    /// from `possible_threshold` up it is possible and waits for an
    /// analyst's review here first; below, no hit. `fuzzy_threshold`, the
    /// single threshold of earlier versions, is read as the possible one.
    pub likely_threshold: f64,
    #[serde(alias = "fuzzy_threshold")]
    pub possible_threshold: f64,
}

impl MatchingConfig {
    /// The review band these thresholds make.
    pub fn band(&self) -> crate::matching::Band {
        crate::matching::Band {
            likely: self.likely_threshold,
            possible: self.possible_threshold,
        }
    }
}

impl Default for MatchingConfig {
    fn default() -> Self {
        Self {
            key_ring: None,
            default_phone_region: None,
            likely_threshold: crate::matching::DEFAULT_LIKELY_THRESHOLD,
            possible_threshold: crate::matching::DEFAULT_POSSIBLE_THRESHOLD,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRules {
    /// Retention applied when a submitted alert names none.
    pub default_retention_days: Bounded<1, 36500>,
    /// Longest retention a client may ask for.
    pub max_retention_days: Bounded<1, 36500>,
    /// How often the node purges content past its retention deadline; the
    /// longest an expired alert's content outlives its deadline here.
    pub purge_interval_secs: Bounded<1, 86400>,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            default_retention_days: Bounded::new(365),
            max_retention_days: Bounded::new(3650),
            purge_interval_secs: Bounded::new(60),
        }
    }
}

/// Explicit bounds on everything a remote party controls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest gRPC message decoded or encoded, both listeners (64 KiB to 64 MiB).
    pub max_message_bytes: Bounded<65_536, 67_108_864>,
    pub max_narrative_bytes: Bounded<0, 1_048_576>,
    pub max_subjects: Bounded<0, 10_000>,
    pub max_identifiers_per_subject: Bounded<1, 10_000>,
    pub max_indicators: Bounded<0, 1_000>,
    /// Longest single text field other than the narrative (identifier values, city…).
    pub max_field_bytes: Bounded<16, 65_536>,
    /// Time allowed for a TLS handshake before the connection is dropped.
    pub handshake_timeout_secs: Bounded<1, 600>,
    /// Deadline for one unary RPC on the server.
    pub request_timeout_secs: Bounded<1, 3600>,
    /// Lookups one local client may make per minute (bursts up to the same number).
    pub lookups_per_minute_per_client: Bounded<1, 100_000>,
    /// Lookups one peer may make here per minute (bursts up to the same number).
    pub lookups_per_minute_per_peer: Bounded<1, 1_000_000>,
    /// Calls one local client may make per second on the client listener,
    /// any RPC (bursts up to twice this); more get RESOURCE_EXHAUSTED.
    pub requests_per_second_per_client: Bounded<1, 1_000_000>,
    /// Calls one peer may make per second on the peer listener (Hello,
    /// opening a delivery stream, lookups; bursts up to twice this).
    pub requests_per_second_per_peer: Bounded<1, 1_000_000>,
    /// On shutdown, how long health reports NOT_SERVING before the listeners
    /// stop accepting: time for load balancers and clients to move away.
    pub drain_grace_secs: Bounded<0, 300>,
    /// Time a lookup waits for each peer's answer.
    pub lookup_timeout_secs: Bounded<1, 120>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: Bounded::new(4 * 1024 * 1024),
            max_narrative_bytes: Bounded::new(16 * 1024),
            max_subjects: Bounded::new(64),
            max_identifiers_per_subject: Bounded::new(32),
            max_indicators: Bounded::new(32),
            max_field_bytes: Bounded::new(256),
            handshake_timeout_secs: Bounded::new(10),
            request_timeout_secs: Bounded::new(30),
            lookups_per_minute_per_client: Bounded::new(30),
            lookups_per_minute_per_peer: Bounded::new(600),
            requests_per_second_per_client: Bounded::new(2000),
            requests_per_second_per_peer: Bounded::new(50),
            drain_grace_secs: Bounded::new(2),
            lookup_timeout_secs: Bounded::new(5),
        }
    }
}

impl Limits {
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout_secs.secs()
    }
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout_secs.secs()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Envelopes sent to a peer and not yet acknowledged, at most.
    pub window: Bounded<1, 4096>,
    /// First reconnect delay after a failure.
    pub initial_backoff_ms: Bounded<1, 60_000>,
    /// Cap of the exponential reconnect delay (never below the first delay).
    pub max_backoff_ms: Bounded<1, 3_600_000>,
    /// Time allowed to connect to a peer (TCP + TLS + Hello).
    pub connect_timeout_secs: Bounded<1, 600>,
    /// While nothing waits for a peer, say Hello this often (and once at
    /// start), so its state is known, not guessed from the last delivery.
    pub probe_interval_secs: Bounded<1, 3600>,
}

fn default_probe_interval() -> Bounded<1, 3600> {
    Bounded::new(60)
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            window: Bounded::new(128),
            initial_backoff_ms: Bounded::new(200),
            max_backoff_ms: Bounded::new(30_000),
            connect_timeout_secs: Bounded::new(10),
            probe_interval_secs: default_probe_interval(),
        }
    }
}

/// Disclosure requests (after a hit): deadlines this node accepts, and
/// how long a decided request is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisclosureConfig {
    /// The shortest deadline a custom-urgency request may set, sent or
    /// received (a received request with a shorter one is given this much).
    /// One hour by default; at most 30 days.
    pub min_deadline_secs: Bounded<1, 2_592_000>,
    /// How long after its decision a request keeps what it asked for and
    /// why (identifiers, purposes, citations, officers, notes); then it is
    /// purged and its data key destroyed. Two years by default.
    pub request_retention_days: Bounded<1, 3650>,
}

impl Default for DisclosureConfig {
    fn default() -> Self {
        Self {
            min_deadline_secs: Bounded::new(3600),
            request_retention_days: Bounded::new(730),
        }
    }
}

/// A node's `[key_service]` section: exact tokens come from the key
/// service's OPRF instead of the shared key ring (`docs/threat-model.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyServiceClientConfig {
    /// `host:port` of each replica of the key service, tried in this order
    /// (the next one when a replica is down). All serve the same keys.
    /// A node with `[directory]` may leave this and `public_keys` out: the
    /// directory in force names both, and replaces them when it does.
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
    /// The agency id in the key service's certificate
    /// (`spiffe://<federation>/agency/<identity>`); checked at every connection.
    #[serde(default = "default_identity")]
    pub identity: AgencyId,
    /// The key service's public keys, pinned (`oprf-keys.toml`, distributed
    /// with the federation CA). Every answer is verified against them.
    pub public_keys: Option<Spanned<PathBuf>>,
    /// Longest a submit, update or import waits for its tokens. Past it the
    /// alert is stored and acknowledged with its tokens pending, derived
    /// when the key service answers again; lookups and disclosure requests
    /// fail with UNAVAILABLE instead.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: Bounded<50, 120_000>,
    /// Migration from the key ring: derive the key ring's HMAC tokens as
    /// well, so alerts keep matching nodes that have not moved yet. Needs
    /// `matching.key_ring`.
    #[serde(default)]
    pub also_key_ring_tokens: bool,
}

fn default_identity() -> AgencyId {
    AgencyId::new("keyservice").expect("a valid agency id")
}

fn default_timeout_ms() -> Bounded<50, 120_000> {
    Bounded::new(2_000)
}

impl KeyServiceClientConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.get() as u64)
    }

    fn resolve(&mut self, base: &Path) {
        if let Some(p) = self.public_keys.as_mut() {
            resolve(base, p.get_mut());
        }
    }

    /// `has_directory`: the addresses and keys may come from the directory.
    fn validate(
        &self,
        file: &Path,
        src: &str,
        (has_ring, has_directory): (bool, bool),
    ) -> Result<(), ConfigError> {
        let section = src.find("[key_service]").unwrap_or(0);
        if self.addresses.is_empty() != self.public_keys.is_none() {
            return Err(at(
                file,
                src,
                section,
                "key_service: give both addresses and public_keys, or neither (then the federation directory names them)",
            ));
        }
        if self.addresses.is_empty() && !has_directory {
            return Err(at(
                file,
                src,
                section,
                "key_service.addresses: list at least one key service address (or follow a [directory] that names the key service)",
            ));
        }
        for a in &self.addresses {
            if let Err(msg) = check_host_port(a.get_ref()) {
                return Err(at(
                    file,
                    src,
                    a.span().start,
                    format!("key_service.addresses: {msg}"),
                ));
            }
        }
        if let Some(keys) = &self.public_keys
            && !keys.get_ref().is_file()
        {
            return Err(at(
                file,
                src,
                keys.span().start,
                format!(
                    "key_service.public_keys: file {} does not exist",
                    keys.get_ref().display()
                ),
            ));
        }
        if self.also_key_ring_tokens && !has_ring {
            return Err(at(
                file,
                src,
                key_offset(src, "also_key_ring_tokens"),
                "key_service.also_key_ring_tokens needs matching.key_ring",
            ));
        }
        Ok(())
    }
}

/// The config of a command-line or programmatic client of one node.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `host:port` of the node's client API.
    pub node_address: String,
    /// Agency whose node we expect to reach (checked against its certificate).
    pub node_agency: AgencyId,
    pub federation: FederationName,
    /// Federation CA certificate (the node presents its node certificate).
    pub federation_ca: PathBuf,
    /// This client's certificate and key, issued by the agency's client CA.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Byte offset → 1-based (line, column).
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn at(file: &Path, src: &str, offset: usize, message: impl Into<String>) -> ConfigError {
    let (line, column) = line_col(src, offset);
    ConfigError::At {
        file: file.to_owned(),
        line,
        column,
        message: message.into(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(file: &Path, src: &str) -> Result<T, ConfigError> {
    toml::from_str(src).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        at(file, src, offset, e.message().trim().to_owned())
    })
}

/// A config file's text, or which file could not be read.
fn read_source(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

fn base_dir(file: &Path) -> PathBuf {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

impl NodeConfig {
    /// Whether exact tokens (phones, e-mails, documents…) come from the key
    /// ring: without a key service they do; with one, the ring keys person
    /// encodings only, unless a migration asks for its tokens as well
    /// (`also_key_ring_tokens`).
    pub fn exact_tokens_from_ring(&self) -> bool {
        self.key_service
            .as_ref()
            .is_none_or(|k| k.also_key_ring_tokens)
    }

    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let src = read_source(file)?;
        Self::from_toml(file, &src)
    }

    /// Parses and validates; `file` names the source in errors and anchors relative paths.
    pub fn from_toml(file: &Path, src: &str) -> Result<Self, ConfigError> {
        let mut cfg: NodeConfig = parse(file, src)?;
        let base = base_dir(file);
        for p in [
            &mut cfg.tls.federation_ca,
            &mut cfg.tls.node_cert,
            &mut cfg.tls.node_key,
            &mut cfg.tls.client_ca,
        ] {
            resolve(&base, p.get_mut());
        }
        for crl in [&mut cfg.tls.federation_crl, &mut cfg.tls.client_crl]
            .into_iter()
            .flatten()
        {
            resolve(&base, crl.get_mut());
        }
        resolve(&base, &mut cfg.store.dir);
        if let Some(dir) = cfg.store.backup_dir.as_mut() {
            resolve(&base, dir);
        }
        if let Some(key) = cfg.audit.signing_key.as_mut() {
            resolve(&base, key.get_mut());
        }
        if let Some(ring) = cfg.matching.key_ring.as_mut() {
            resolve(&base, ring.get_mut());
        }
        if let Some(policy) = cfg.sharing.policy.as_mut() {
            resolve(&base, policy.get_mut());
        }
        if let Some(tests) = cfg.sharing.tests.as_mut() {
            resolve(&base, tests.get_mut());
        }
        if let Some(ks) = cfg.key_service.as_mut() {
            ks.resolve(&base);
        }
        if let Some(e) = cfg.encryption.as_mut() {
            resolve(&base, e.kek_file.get_mut());
        }
        if let Some(i) = cfg.intake.as_mut() {
            resolve(&base, i.cert.get_mut());
            resolve(&base, i.key.get_mut());
        }
        if let Some(d) = cfg.directory.as_mut() {
            resolve(&base, d.anchor.get_mut());
            if let Some(f) = d.file.as_mut() {
                resolve(&base, f.get_mut());
            }
        }
        cfg.validate(file, src)?;
        Ok(cfg)
    }

    fn validate(&self, file: &Path, src: &str) -> Result<(), ConfigError> {
        let err = |span: std::ops::Range<usize>, msg: String| Err(at(file, src, span.start, msg));
        if self.listen.peer.get_ref() == self.listen.client.get_ref() {
            return err(
                self.listen.client.span(),
                "listen.client must differ from listen.peer: the two APIs trust different CAs"
                    .into(),
            );
        }
        if self.directory.is_some()
            && let Some(first) = self.peers.first()
        {
            return err(
                first.agency_id.span(),
                "[[peers]] must be empty when [directory] is set: the directory names the peers"
                    .into(),
            );
        }
        let mut seen = BTreeSet::new();
        for peer in &self.peers {
            let id = peer.agency_id.get_ref();
            if id == self.agency_id.get_ref() {
                return err(
                    peer.agency_id.span(),
                    format!("peer `{id}` is this node's own agency id"),
                );
            }
            if !seen.insert(id.clone()) {
                return err(
                    peer.agency_id.span(),
                    format!("peer `{id}` is listed twice"),
                );
            }
            if let Err(msg) = check_host_port(peer.address.get_ref()) {
                return err(peer.address.span(), format!("peer address: {msg}"));
            }
        }
        for name in &self.compat.withhold_capabilities {
            if crate::release::Capability::from_name(name.get_ref()).is_none() {
                return err(
                    name.span(),
                    format!(
                        "compat.withhold_capabilities: `{}` is not a capability of this release \
                         (it has: {})",
                        name.get_ref(),
                        crate::release::Capabilities::ours().names().join(", ")
                    ),
                );
            }
        }
        if let Some(problem) = self
            .intake
            .as_ref()
            .and_then(|i| i.emergency_number_problem())
        {
            let at_number = self
                .intake
                .as_ref()
                .map_or(0, |i| i.emergency_number.span().start);
            return err(at_number..at_number, problem);
        }
        self.validate_files(file, src)?;
        self.validate_matching_and_retention(file, src)
    }

    /// Every file `node.toml` names exists.
    fn validate_files(&self, file: &Path, src: &str) -> Result<(), ConfigError> {
        let err = |span: std::ops::Range<usize>, msg: String| Err(at(file, src, span.start, msg));
        for (key, path) in [
            ("tls.federation_ca", Some(&self.tls.federation_ca)),
            ("tls.node_cert", Some(&self.tls.node_cert)),
            ("tls.node_key", Some(&self.tls.node_key)),
            ("tls.client_ca", Some(&self.tls.client_ca)),
            ("tls.federation_crl", self.tls.federation_crl.as_ref()),
            ("tls.client_crl", self.tls.client_crl.as_ref()),
            ("intake.cert", self.intake.as_ref().map(|i| &i.cert)),
            ("intake.key", self.intake.as_ref().map(|i| &i.key)),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.map(|p| (k, p)))
        {
            if !path.get_ref().is_file() {
                return err(
                    path.span(),
                    format!("{key}: file {} does not exist", path.get_ref().display()),
                );
            }
        }
        if let Some(ring) = &self.matching.key_ring
            && !ring.get_ref().is_file()
        {
            return err(
                ring.span(),
                format!(
                    "matching.key_ring: file {} does not exist",
                    ring.get_ref().display()
                ),
            );
        }
        if let Some(policy) = &self.sharing.policy
            && !policy.get_ref().is_file()
        {
            return err(
                policy.span(),
                format!(
                    "sharing.policy: file {} does not exist",
                    policy.get_ref().display()
                ),
            );
        }
        Ok(())
    }

    /// `[matching]`'s region and thresholds, `[key_service]`, and the
    /// retention bounds.
    fn validate_matching_and_retention(&self, file: &Path, src: &str) -> Result<(), ConfigError> {
        let err = |span: std::ops::Range<usize>, msg: String| Err(at(file, src, span.start, msg));
        if let Some(region) = &self.matching.default_phone_region
            && !crate::ids::CountryCode::is_valid(region.get_ref())
        {
            return err(
                region.span(),
                format!(
                    "matching.default_phone_region: `{}` is not an ISO 3166-1 alpha-2 code (e.g. \"NL\")",
                    region.get_ref()
                ),
            );
        }
        for (key, value) in [
            ("likely_threshold", self.matching.likely_threshold),
            ("possible_threshold", self.matching.possible_threshold),
        ] {
            if !(0.5..=1.0).contains(&value) {
                let key = if key == "possible_threshold" && !src.contains(key) {
                    "fuzzy_threshold"
                } else {
                    key
                };
                return Err(at(
                    file,
                    src,
                    key_offset(src, key),
                    format!("matching.{key} must be between 0.5 and 1.0"),
                ));
            }
        }
        if self.matching.possible_threshold > self.matching.likely_threshold {
            return Err(at(
                file,
                src,
                key_offset(src, "possible_threshold"),
                "matching.possible_threshold must not be above matching.likely_threshold",
            ));
        }
        if let Some(ks) = &self.key_service {
            let has = (self.matching.key_ring.is_some(), self.directory.is_some());
            ks.validate(file, src, has)?;
        }
        if self.alerts.default_retention_days > self.alerts.max_retention_days {
            return Err(at(
                file,
                src,
                key_offset(src, "default_retention_days"),
                "alerts.default_retention_days must not exceed alerts.max_retention_days",
            ));
        }
        Ok(())
    }

    pub fn agency(&self) -> &AgencyId {
        self.agency_id.get_ref()
    }

    pub fn peer(&self, id: &AgencyId) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.agency_id.get_ref() == id)
    }

    /// The kind of every peer whose kind is set.
    pub fn peer_kinds(&self) -> crate::handling::PeerKinds {
        self.peers
            .iter()
            .filter_map(|p| Some((p.agency_id.get_ref().clone(), *p.kind.as_ref()?.get_ref())))
            .collect()
    }
}

impl ClientConfig {
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let src = read_source(file)?;
        let mut cfg: ClientConfig = parse(file, &src)?;
        let base = base_dir(file);
        for p in [&mut cfg.federation_ca, &mut cfg.cert, &mut cfg.key] {
            resolve(&base, p);
        }
        if let Err(msg) = check_host_port(&cfg.node_address) {
            return Err(at(
                file,
                &src,
                src.find("node_address").unwrap_or(0),
                format!("node_address: {msg}"),
            ));
        }
        Ok(cfg)
    }
}

/// Offset of the line that sets `key` (first match outside comments), for
/// errors about values only checkable after parsing.
fn key_offset(src: &str, key: &str) -> usize {
    let mut offset = 0;
    for line in src.split_inclusive('\n') {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return offset + (line.len() - t.len());
        }
        offset += line.len();
    }
    0
}

/// `host:port` where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
pub fn check_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}` is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("`{port}` is not a port number"))?;
    if port == 0 {
        return Err("port 0 is not a reachable port".into());
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pki(dir: &Path) {
        for f in ["ca.pem", "node.pem", "node.key", "client-ca.pem"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
    }

    const GOOD: &str = r#"
agency_id = "police"
federation = "demo.casebridge"

[listen]
peer = "127.0.0.1:7001"
client = "127.0.0.1:7002"

[tls]
federation_ca = "ca.pem"
node_cert = "node.pem"
node_key = "node.key"
client_ca = "client-ca.pem"

[store]
dir = "data"

[[peers]]
agency_id = "ngo"
address = "127.0.0.1:7011"

[clients]
cms = ["submit", "read"]
"#;

    /// The config reference (`docs/configuration.md`) names every key the
    /// node accepts. The keys come from the structs themselves: serde's
    /// "unknown field, expected one of …" lists each section's fields.
    #[test]
    fn the_config_reference_documents_every_key() {
        let docs = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
        )
        .unwrap();
        let file = Path::new("node.toml");
        let sections = [
            "",
            "listen",
            "tls",
            "store",
            "matching",
            "sharing",
            "alerts",
            "limits",
            "delivery",
            "metrics",
            "audit",
            "peers",
            "key_service",
            "compat",
            "directory",
            "encryption",
        ];
        let mut checked = 0;
        for section in sections {
            let text = match section {
                "" => format!("zzz_unknown = 1\n{GOOD}"),
                "peers" => GOOD.replace(
                    "address = \"127.0.0.1:7011\"",
                    "address = \"127.0.0.1:7011\"\nzzz_unknown = 1",
                ),
                s if GOOD.contains(&format!("[{s}]")) => {
                    GOOD.replace(&format!("[{s}]"), &format!("[{s}]\nzzz_unknown = 1"))
                }
                s => format!("{GOOD}\n[{s}]\nzzz_unknown = 1\n"),
            };
            let err = NodeConfig::from_toml(file, &text).unwrap_err().to_string();
            // "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, …"
            let fields = err
                .split_once("expected ")
                .map(|(_, list)| list)
                .unwrap_or_else(|| panic!("[{section}]: no field list in `{err}`"));
            for field in fields.split('`').skip(1).step_by(2) {
                assert!(
                    docs.contains(&format!("`{field}`"))
                        || docs.contains(&format!("[{field}]"))
                        || docs.contains(&format!("`{section}.{field}`")),
                    "docs/configuration.md does not document `{field}` ([{section}])"
                );
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} keys found");
    }

    #[test]
    fn good_config_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path());
        let file = dir.path().join("node.toml");
        let cfg = NodeConfig::from_toml(&file, GOOD).unwrap();
        assert_eq!(cfg.agency().as_str(), "police");
        assert_eq!(cfg.store.dir, dir.path().join("data"));
        assert_eq!(cfg.peers.len(), 1);
    }

    fn error_line(src: &str) -> (usize, String) {
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path());
        let file = dir.path().join("node.toml");
        match NodeConfig::from_toml(&file, src).unwrap_err() {
            ConfigError::At {
                line,
                message,
                file: f,
                ..
            } => {
                assert_eq!(f, file);
                (line, message)
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn unknown_key_names_its_line() {
        let src = GOOD.replace("[store]\n", "[store]\nfsync = true\n");
        let (line, msg) = error_line(&src);
        assert_eq!(line, 16);
        assert!(msg.contains("fsync"), "{msg}");
    }

    #[test]
    fn bad_agency_id_names_its_line() {
        let (line, msg) = error_line(&GOOD.replace("\"ngo\"", "\"NGO!\""));
        assert_eq!(line, 19);
        assert!(msg.contains("agency id"), "{msg}");
    }

    #[test]
    fn semantic_errors_name_their_line() {
        let (line, msg) = error_line(&GOOD.replace("\"ngo\"", "\"police\""));
        assert_eq!(line, 19);
        assert!(msg.contains("own agency"), "{msg}");
        let (line, msg) = error_line(&GOOD.replace("7002", "7001"));
        assert_eq!(line, 7);
        assert!(msg.contains("listen.client"), "{msg}");
        let (line, msg) = error_line(&GOOD.replace("\"node.key\"", "\"missing.key\""));
        assert_eq!(line, 12);
        assert!(msg.contains("does not exist"), "{msg}");
        let (line, _) = error_line(&GOOD.replace("127.0.0.1:7011", "nohost"));
        assert_eq!(line, 20);
    }

    /// `[key_service]` names its replicas and keys, or leaves both to the
    /// federation directory when the node follows one; half of them is
    /// a mistake either way.
    #[test]
    fn key_service_addresses_and_keys_come_together_or_from_the_directory() {
        let (line, msg) = error_line(&format!("{GOOD}\n[key_service]\n"));
        assert_eq!(line, 25);
        assert!(msg.starts_with("key_service.addresses:"), "{msg}");
        assert!(msg.contains("[directory]"), "{msg}");
        let half = format!("{GOOD}\n[key_service]\naddresses = [\"127.0.0.1:9\"]\n");
        let (line, msg) = error_line(&half);
        assert_eq!(line, 25);
        assert!(
            msg.contains("both addresses and public_keys, or neither"),
            "{msg}"
        );

        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path());
        let file = dir.path().join("node.toml");
        let following = GOOD.split("[[peers]]").next().unwrap().to_owned()
            + "[directory]\nanchor = \"anchor.json\"\n\n[key_service]\ntimeout_ms = 500\n";
        let cfg = NodeConfig::from_toml(&file, &following).unwrap();
        let ks = cfg.key_service.unwrap();
        assert!(ks.addresses.is_empty() && ks.public_keys.is_none());
        let half = following.replace("timeout_ms = 500", "public_keys = \"keys.toml\"");
        let err = NodeConfig::from_toml(&file, &half).unwrap_err().to_string();
        assert!(err.contains("or neither"), "{err}");
    }

    /// `[compat]` withholds only capabilities this release has: a typo
    /// would otherwise announce everything while the operator thinks a
    /// feature is off.
    #[test]
    fn an_unknown_capability_names_its_line() {
        let src =
            format!("{GOOD}\n[compat]\nwithhold_capabilities = [\"hit-review\", \"hit-reveiw\"]\n");
        let (_, msg) = error_line(&src);
        assert!(msg.contains("`hit-reveiw` is not a capability"), "{msg}");
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path());
        let good = format!("{GOOD}\n[compat]\nwithhold_capabilities = [\"hit-review\"]\n");
        let config = NodeConfig::from_toml(&dir.path().join("node.toml"), &good).unwrap();
        let announced = config.capabilities();
        assert!(!announced.has(crate::release::Capability::HitReview));
        assert!(announced.has(crate::release::Capability::HitNotice));
    }

    #[test]
    fn out_of_range_and_empty_values_name_their_line() {
        let src = format!("{GOOD}\n[limits]\nmax_message_bytes = 10\n");
        let (line, msg) = error_line(&src);
        assert_eq!(line, 26);
        assert!(msg.contains("between 65536"), "{msg}");
        let (line, msg) = error_line(&GOOD.replace("[\"submit\", \"read\"]", "[]"));
        assert_eq!(line, 23);
        assert!(msg.contains("at least one role"), "{msg}");
        let src = format!(
            "{GOOD}\n[alerts]\n# default_retention_days = 1\nmax_retention_days = 10\ndefault_retention_days = 20\n"
        );
        let (line, msg) = error_line(&src);
        assert_eq!(line, 28);
        assert!(msg.contains("max_retention_days"), "{msg}");
    }

    #[test]
    fn unknown_role_is_rejected() {
        let (line, msg) = error_line(&GOOD.replace("\"read\"]", "\"root\"]"));
        assert_eq!(line, 23);
        assert!(msg.contains("root"), "{msg}");
    }
}
