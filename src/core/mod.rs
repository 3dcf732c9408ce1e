//! The state one node's services and workers share, and how it is built
//! from the config: the store, key ring, policy in force, the ledger,
//! lookups, inbound and outbound delivery, access rules and metrics. The
//! channels (`api`) take a `NodeCore` and call its domain operations;
//! `node` builds one and serves it.
//!
//! `admin` holds what an administrator does, whatever the channel: status,
//! reloading `[clients]`, peer state, the policy (set, explain, diff, test,
//! its version history), audit query and verify, activity per day, and
//! backups; its operations fail with [`AdminError`].

mod admin;

pub use admin::AdminError;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::alert::Ledger;
use crate::audit::signing::SigningKey;
use crate::config::NodeConfig;
use crate::exchange::{Inbound, Outbound};
use crate::federation::Federation;
use crate::identity::access::{ClientPolicy, PeerPolicy};
use crate::identity::{NodeIdentity, TlsError};
use crate::ids::{AgencyId, FederationName};
use crate::lookup::{LookupSettings, Lookups};
use crate::matching::MatchScope;
use crate::metrics::Metrics;
use crate::pseudo::oprf_keys::PinnedKeys;
use crate::pseudo::{KeyRing, Pseudonymizer};
use crate::ratelimit::RateLimiter;
use crate::sharing::Sharing;
use crate::store::{Store, StoreError};

/// The dialling TLS config in force (CRLs reload without a restart).
pub type OutgoingTls = tokio::sync::watch::Receiver<Arc<rustls::ClientConfig>>;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    // The I/O error is in the message, not a `source`: a chain would print
    // it twice ("Address already in use: Address already in use").
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error(transparent)]
    KeyFile(#[from] crate::pseudo::KeyFileError),
    #[error("audit signing key {0}")]
    AuditKey(#[from] crate::audit::signing::SigningError),
    #[error(transparent)]
    Sharing(#[from] crate::sharing::SharingError),
    #[error("key ring {path} is for federation {found}, this node is in {expected}")]
    KeyRingFederation {
        path: std::path::PathBuf,
        found: String,
        expected: String,
    },
    #[error("pinned OPRF keys {path} are for federation {found}, this node is in {expected}")]
    OprfFederation {
        path: std::path::PathBuf,
        found: String,
        expected: String,
    },
    #[error("the federation directory's OPRF keys: {0}")]
    DirectoryKeys(String),
    #[error(
        "[key_service] names no addresses and public_keys, and the federation directory in force names no key service"
    )]
    NoKeyService,
    #[error("node certificate names {found}, but the config is for {expected}")]
    WrongCertificate { found: String, expected: String },
    #[error(transparent)]
    Serve(#[from] crate::server::ServeError),
    #[error(transparent)]
    Federation(#[from] crate::federation::FederationError),
    #[error("the public intake: {0}")]
    Intake(String),
}

/// What one node is and where its files go: values read from the config
/// and the certificates once at start, apart from the services that act
/// on them (they change only with a restart).
pub struct NodeSettings {
    pub agency: AgencyId,
    pub federation: FederationName,
    /// This node as its peers authenticate it.
    pub own: NodeIdentity,
    pub started_at: SystemTime,
    /// Where `BackupStore` writes copies.
    pub backup_dir: std::path::PathBuf,
    /// The console's uploads (see `NodeConfig::uploads_dir`).
    pub uploads_dir: std::path::PathBuf,
    /// The sharing policy's test cases file (`[sharing] tests`), if any.
    pub policy_tests: Option<std::path::PathBuf>,
    /// How long health reports NOT_SERVING before the listeners close.
    pub drain_grace: Duration,
    /// This node's certificate and the CAs it trusts: name, file, end.
    pub certificates: Vec<(&'static str, std::path::PathBuf, Option<SystemTime>)>,
    /// What it announces to peers in Hello (less what `[compat]` withholds).
    pub capabilities: crate::release::Capabilities,
    /// `[encryption]`'s epoch length and backup retention, when sealed.
    pub epochs: Option<(Duration, Duration)>,
}

/// The services every gRPC handler, console page and worker of one node
/// shares, with the node's [`NodeSettings`].
pub struct NodeCore {
    pub settings: NodeSettings,
    pub clients: ClientPolicy,
    pub peers: PeerPolicy,
    pub ledger: Ledger,
    /// The hit log as clients read, follow and review it.
    pub hits: crate::review::Hits,
    /// The alerts linked to one through hits, as a graph.
    pub network: crate::network::Network,
    pub sharing: Arc<Sharing>,
    pub lookups: Lookups,
    pub disclosures: Arc<crate::disclosure::Disclosures>,
    /// The public intake's reports: the reporters' side (`intake_web`)
    /// and the caseworkers' triage (`api::ReportApi`, the console).
    pub reports: Arc<crate::reports::Reports>,
    /// The federated statistics: contributions, runs, releases.
    pub analytics: Arc<crate::analytics::Analytics>,
    /// The federation directory in force and the roster read from it.
    pub federation: Arc<Federation>,
    /// Where exact tokens come from; follows the directory's key service.
    pub tokens: Arc<crate::tokens::Tokenizer>,
    pub inbound: Inbound,
    pub outbound: Arc<Outbound>,
    pub store: Arc<Store>,
    pub shutdown: CancellationToken,
    /// gRPC health of both listeners: SERVING while up, NOT_SERVING from the
    /// moment shutdown starts.
    pub health: tonic_health::server::HealthReporter,
    /// Set when shutdown starts: readiness (gRPC health, `/readyz`) is off.
    pub draining: std::sync::atomic::AtomicBool,
    pub metrics: Metrics,
    /// Signs audit checkpoints (periodically and the last one at shutdown).
    pub signer: Arc<SigningKey>,
}

impl NodeCore {
    /// Opens the store and builds every domain part from `config`. `own`
    /// is the identity the node certificate proved; `outgoing` the dialling
    /// TLS config lookups use; `health` reports the listeners' gRPC health.
    pub async fn open(
        config: &NodeConfig,
        own: NodeIdentity,
        outgoing: OutgoingTls,
        max_connection_age: Duration,
        health: tonic_health::server::HealthReporter,
    ) -> Result<Arc<Self>, NodeError> {
        let limits = &config.limits;
        let roster = crate::directory::roster::Roster::default();
        let pseudo = Arc::new(load_pseudonymizer(config)?);
        let signer = Arc::new(SigningKey::load_or_create(&config.audit_signing_key())?);
        let store = open_store(config, roster.clone())?;
        let federation = Arc::new(open_federation(config, &store, roster.clone()).await?);
        let members = roster.now();
        let probe_every = config.delivery.probe_interval_secs.secs();
        let outbound = Arc::new(Outbound::new(addresses(&members), probe_every));
        outbound.follow(&members);
        let sharing = Arc::new(
            Sharing::open(
                store.clone(),
                config.agency().clone(),
                roster.clone(),
                config.sharing.policy.as_ref().map(|p| p.get_ref().clone()),
            )
            .await?,
        );
        let metrics = connect_store(&store, &outbound, &sharing, &members.peer_ids())?;
        let listed = federation.services().borrow().key_service.clone();
        let tokenizer = Arc::new(load_tokenizer(
            config,
            listed.as_ref(),
            pseudo.clone(),
            outgoing.clone(),
            metrics.clone(),
        )?);
        let disclosures = Arc::new(crate::disclosure::Disclosures::new(
            store.clone(),
            sharing.clone(),
            config.agency().clone(),
            roster.clone(),
            pseudo.clone(),
            tokenizer.clone(),
            config.disclosure.min_deadline_secs.secs(),
            metrics.clone(),
        ));
        let analytics = analytics_of(&store, &own, &roster, &outgoing, config, max_connection_age);
        let reports = open_reports(config, &store).await?;
        let settings = settings(config, own.clone());
        let understood = settings.capabilities.clone();
        let core = Arc::new(NodeCore {
            settings,
            clients: client_policy(config),
            peers: peer_policy(config, roster.clone()),
            ledger: Ledger::new(
                store.clone(),
                config.agency().clone(),
                roster.clone(),
                limits.clone(),
                config.alerts.clone(),
                pseudo.clone(),
                tokenizer.clone(),
                sharing.clone(),
                metrics.clone(),
            ),
            hits: crate::review::Hits::new(store.clone()),
            network: crate::network::Network::new(store.clone(), config.agency().clone()),
            sharing: sharing.clone(),
            lookups: Lookups::new(
                store.clone(),
                pseudo,
                tokenizer.clone(),
                own.clone(),
                roster,
                outgoing,
                sharing.clone(),
                lookup_settings(config, max_connection_age),
            ),
            inbound: Inbound::new(
                store.clone(),
                (limits.clone(), config.alerts.clone()),
                sharing,
                (disclosures.clone(), analytics.clone()),
                metrics.clone(),
            )
            .understanding(understood),
            analytics,
            reports,
            disclosures,
            federation,
            tokens: tokenizer,
            metrics,
            outbound,
            store,
            shutdown: CancellationToken::new(),
            health,
            draining: std::sync::atomic::AtomicBool::new(false),
            signer,
        });
        Ok(core)
    }
}

/// The public reports the store holds, with `[intake]`'s limits.
async fn open_reports(
    config: &NodeConfig,
    store: &Arc<Store>,
) -> Result<Arc<crate::reports::Reports>, NodeError> {
    let limits = crate::reports::Limits::of(config.intake.as_ref());
    crate::reports::Reports::open(store.clone(), limits)
        .await
        .map(Arc::new)
        .map_err(|e| NodeError::Intake(e.to_string()))
}

/// The node's settings from `config`, with the identity its certificate proved.
fn settings(config: &NodeConfig, own: NodeIdentity) -> NodeSettings {
    NodeSettings {
        agency: config.agency().clone(),
        federation: config.federation.clone(),
        own,
        started_at: SystemTime::now(),
        backup_dir: config.backup_dir(),
        uploads_dir: config.uploads_dir(),
        policy_tests: config.sharing.tests.as_ref().map(|p| p.get_ref().clone()),
        drain_grace: config.limits.drain_grace_secs.secs(),
        certificates: certificate_ends(config),
        capabilities: config.capabilities(),
        epochs: config.encryption.as_ref().map(|e| {
            (
                Duration::from_secs(e.epoch_secs.get() as u64),
                Duration::from_secs(e.backup_retention_days.get() as u64 * 86_400),
            )
        }),
    }
}

/// Connects the store to what it tells: the delivery workers (an outbox
/// write wakes its peer's), the sharing policy (which hit notices may go),
/// and the metrics, primed with every series the node can report.
fn connect_store(
    store: &Arc<Store>,
    outbound: &Arc<Outbound>,
    sharing: &Arc<Sharing>,
    peer_ids: &[AgencyId],
) -> Result<Metrics, NodeError> {
    let listener: std::sync::Weak<dyn crate::store::OutboxListener> = Arc::downgrade(outbound) as _;
    store.set_outbox_listener(listener);
    let gate: std::sync::Weak<dyn crate::matching::NoticeGate> = Arc::downgrade(sharing) as _;
    store.start_matching(gate)?;
    let metrics = Metrics::new();
    metrics.prime(
        peer_ids,
        crate::audit::Action::ALL.iter().map(|a| a.as_str()),
    );
    store.set_metrics(metrics.clone());
    Ok(metrics)
}

/// The store, opened with this node's matching scope; received alerts an
/// older version stored without a retention deadline get this node's
/// default.
fn open_store(
    config: &NodeConfig,
    roster: crate::directory::roster::Roster,
) -> Result<Arc<Store>, NodeError> {
    let scope = MatchScope {
        own: config.agency().clone(),
        peers: roster,
        band: config.matching.band(),
    };
    let cache = config.store.cache_capacity_mb.get() as u64 * 1024 * 1024;
    let store = Arc::new(match &config.encryption {
        Some(e) => {
            let vault = crate::store::Vault::open(e.kek_file.get_ref(), &config.epoch_keys_dir())?;
            Store::open_sealed(&config.store.dir, cache, Some(scope), vault)?
        }
        None => Store::open(&config.store.dir, cache, scope)?,
    });
    let default_until = SystemTime::now()
        + Duration::from_secs(86_400) * config.alerts.default_retention_days.get() as u32;
    let bounded = store.bound_received_retention(default_until)?;
    if bounded > 0 {
        tracing::info!(
            alerts = bounded,
            "received alerts stored without a retention deadline were given this node's default"
        );
    }
    Ok(store)
}

/// The federation directory the node follows (`[directory]`), or its
/// `[[peers]]`: either way it fills `roster`.
async fn open_federation(
    config: &NodeConfig,
    store: &Arc<Store>,
    roster: crate::directory::roster::Roster,
) -> Result<Federation, NodeError> {
    let (own, name) = (config.agency().clone(), config.federation.clone());
    Ok(match &config.directory {
        Some(d) => {
            let anchor = d.anchor.get_ref().clone();
            let grace = Duration::from_secs(d.grace_secs.get() as u64);
            Federation::open(store.clone(), roster, (own, name), anchor, grace).await?
        }
        None => {
            let peers = crate::federation::configured_peers(config);
            Federation::without_directory(store.clone(), roster, own, name, peers)
        }
    })
}

/// Which peers may call, and how often.
fn peer_policy(config: &NodeConfig, roster: crate::directory::roster::Roster) -> PeerPolicy {
    PeerPolicy::new(
        config.federation.clone(),
        roster,
        RateLimiter::per_second(config.limits.requests_per_second_per_peer.get() as u32),
    )
}

/// Who of this agency's clients may call what, and how often.
fn client_policy(config: &NodeConfig) -> ClientPolicy {
    ClientPolicy {
        federation: config.federation.clone(),
        agency: config.agency().clone(),
        roles: std::sync::RwLock::new(config.clients.clone()),
        rate: RateLimiter::per_second(config.limits.requests_per_second_per_client.get() as u32),
    }
}

/// The bounds of federation lookups, from `[limits]` and `[matching]`.
/// Each member's agency and where to dial it.
fn addresses(
    members: &crate::directory::roster::Members,
) -> impl Iterator<Item = (AgencyId, String)> + '_ {
    members
        .all()
        .filter_map(|m| Some((m.agency.clone(), m.address()?.to_owned())))
}

/// The node's federated statistics, calling the other aggregator with
/// the lookup timeout and the connection age limit.
fn analytics_of(
    store: &Arc<Store>,
    own: &NodeIdentity,
    roster: &crate::directory::roster::Roster,
    outgoing: &OutgoingTls,
    config: &NodeConfig,
    max_connection_age: Duration,
) -> Arc<crate::analytics::Analytics> {
    Arc::new(crate::analytics::Analytics::new(
        store.clone(),
        own.clone(),
        roster.clone(),
        outgoing.clone(),
        (config.limits.lookup_timeout_secs.secs(), max_connection_age),
    ))
}

fn lookup_settings(config: &NodeConfig, max_connection_age: Duration) -> LookupSettings {
    let limits = &config.limits;
    LookupSettings {
        timeout: limits.lookup_timeout_secs.secs(),
        max_connection_age,
        max_identifiers: limits.max_identifiers_per_subject.get(),
        possible_threshold: config.matching.possible_threshold,
        per_client_per_minute: limits.lookups_per_minute_per_client.get() as u32,
        per_peer_per_minute: limits.lookups_per_minute_per_peer.get() as u32,
    }
}

/// When the node certificate and the two CAs end (the first certificate of
/// each file), read once at start: they change only with a restart.
fn certificate_ends(
    config: &NodeConfig,
) -> Vec<(&'static str, std::path::PathBuf, Option<SystemTime>)> {
    let tls = &config.tls;
    [
        ("node", tls.node_cert.get_ref()),
        ("federation CA", tls.federation_ca.get_ref()),
        ("client CA", tls.client_ca.get_ref()),
    ]
    .into_iter()
    .map(|(name, path)| {
        let end = crate::identity::load_certs(path)
            .ok()
            .and_then(|c| c.first().and_then(|c| crate::identity::not_after(c)));
        (name, path.clone(), end)
    })
    .collect()
}

fn load_pseudonymizer(config: &NodeConfig) -> Result<Pseudonymizer, NodeError> {
    let ring = match &config.matching.key_ring {
        Some(path) => {
            let ring = KeyRing::load(path.get_ref())?;
            if ring.federation != config.federation {
                return Err(NodeError::KeyRingFederation {
                    path: path.get_ref().clone(),
                    found: ring.federation.to_string(),
                    expected: config.federation.to_string(),
                });
            }
            if ring
                .active(time::OffsetDateTime::now_utc())
                .next()
                .is_none()
            {
                tracing::warn!(path = %path.get_ref().display(), "no matching key is valid now: subjects are not shared");
            }
            Some(ring)
        }
        None => {
            tracing::warn!(
                "no matching.key_ring configured: subjects stay on this node and nothing matches"
            );
            None
        }
    };
    // With a key service, the ring (if any) keys person encodings only,
    // unless a migration asks for its exact tokens as well.
    let ring_tokens = config.exact_tokens_from_ring();
    Ok(Pseudonymizer::new(
        ring,
        config
            .matching
            .default_phone_region
            .as_ref()
            .map(|r| r.get_ref().clone()),
    )
    .with_ring_tokens(ring_tokens))
}

/// Exact tokens from the OPRF key service, when `[key_service]` is set:
/// its replicas and pinned public keys from the directory in force when
/// that names them (followed as newer versions arrive: `node`), else from
/// `[key_service]` (checked: this federation's, versions apart from the
/// ring's), and the identity its certificate must name.
fn load_tokenizer(
    config: &NodeConfig,
    listed: Option<&crate::proto::v1::DirectoryKeyService>,
    pseudo: Arc<Pseudonymizer>,
    outgoing: OutgoingTls,
    metrics: Metrics,
) -> Result<crate::tokens::Tokenizer, NodeError> {
    let Some(ks) = &config.key_service else {
        if listed.is_some() {
            tracing::info!(
                "the federation directory names a key service; this node keeps key-ring tokens until its node.toml has a [key_service] section (docs/directory.md)"
            );
        }
        return Ok(crate::tokens::Tokenizer::new(pseudo, None, metrics));
    };
    let (pinned, addresses, where_from) = match (listed, &ks.public_keys) {
        (Some(l), _) => (
            PinnedKeys::from_directory(config.federation.clone(), &l.keys)
                .map_err(NodeError::DirectoryKeys)?,
            l.endpoints.clone(),
            "the federation directory".to_owned(),
        ),
        (None, Some(path)) => (
            pinned_file(path.get_ref(), &config.federation)?,
            ks.addresses.iter().map(|a| a.get_ref().clone()).collect(),
            path.get_ref().display().to_string(),
        ),
        (None, None) => return Err(NodeError::NoKeyService),
    };
    if pinned
        .active(time::OffsetDateTime::now_utc())
        .next()
        .is_none()
    {
        tracing::warn!(keys = %where_from, "no pinned OPRF key is valid now: alerts are stored with their tokens pending");
    }
    Ok(crate::tokens::Tokenizer::new(
        pseudo,
        Some(crate::tokens::ServiceSettings {
            pinned,
            addresses,
            listed: listed.cloned(),
            identity: crate::tokens::service_identity(&config.federation, &ks.identity),
            tls: outgoing,
            timeout: ks.timeout(),
        }),
        metrics,
    ))
}

/// `key_service.public_keys`, checked to be this federation's.
fn pinned_file(
    path: &std::path::Path,
    federation: &crate::ids::FederationName,
) -> Result<PinnedKeys, NodeError> {
    let pinned = PinnedKeys::load(path)?;
    if pinned.federation != *federation {
        return Err(NodeError::OprfFederation {
            path: path.to_path_buf(),
            found: pinned.federation.to_string(),
            expected: federation.to_string(),
        });
    }
    Ok(pinned)
}
