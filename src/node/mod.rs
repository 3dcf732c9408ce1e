//! A running node: two TLS listeners (peer API, client API), the store, and a
//! delivery worker per peer. [`start`] takes already-bound listeners so tests
//! can bind port 0 and a supervisor can hand sockets over. It is wiring only:
//! the state is built by [`NodeCore::open`], served here (`routers`,
//! `spawn_server`) and kept by the background workers `spawn_workers` starts.

pub mod check;
mod statistics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::pb::health_server::HealthServer;
use tower::layer::util::Stack;

use crate::api::undecoded::UndecodedLayer;
use crate::api::{AdminApi, AlertApi, DisclosureApi, PeerApi, ReportApi};
use crate::audit::{Action, Event, NODE};
use crate::config::NodeConfig;
pub use crate::core::{NodeCore, NodeError};
use crate::exchange::Received;
use crate::exchange::outbound::{DeliveryContext, DirectoryFeed};
use crate::identity::{
    Identity, NodeIdentity, TlsConfigs, TlsFiles, TlsIdentity, TlsReloader, install_crypto_provider,
};
use crate::metrics::Metrics;
use crate::proto::v1::admin_service_server::AdminServiceServer;
use crate::proto::v1::alert_service_server::AlertServiceServer;
use crate::proto::v1::disclosure_service_server::DisclosureServiceServer;
use crate::proto::v1::peer_exchange_server::PeerExchangeServer;
use crate::proto::v1::report_service_server::ReportServiceServer;
use crate::server;
use crate::store::Store;

/// A listener's gRPC services under the audit layer for undecoded calls.
type ApiRouter = Router<Stack<UndecodedLayer, tower::layer::util::Identity>>;

/// The node's two bound sockets.
pub struct Listeners {
    pub peer: TcpListener,
    pub client: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &NodeConfig) -> Result<Self, NodeError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Bind {
                    addr,
                    error: source,
                })
        };
        Ok(Self {
            peer: bind(*config.listen.peer.get_ref()).await?,
            client: bind(*config.listen.client.get_ref()).await?,
        })
    }
}

pub struct RunningNode {
    core: Arc<NodeCore>,
    peer_addr: SocketAddr,
    client_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    console_addr: Option<SocketAddr>,
    intake_addr: Option<SocketAddr>,
    servers: server::Listeners,
    workers: Vec<JoinHandle<()>>,
}

/// How long shutdown waits for in-flight RPCs before dropping connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads certificates, opens the store and starts serving. Everything that
/// can be wrong with the files is reported here, before any request is served.
pub async fn start(config: NodeConfig, listeners: Listeners) -> Result<RunningNode, NodeError> {
    install_crypto_provider();
    if let Err(e) = crate::secrets::no_core_dumps() {
        tracing::warn!(error = %e, "core dumps could not be turned off");
    }
    let (own, mut tls_reloader, tls) = load_tls(&config)?;
    let max_age = config.tls.max_connection_age_secs.secs();
    let (health, health_service) = tonic_health::server::health_reporter();
    let core = NodeCore::open(&config, own, tls.outgoing.clone(), max_age, health).await?;
    // The directory's revocations hold from the first handshake on.
    let crl = core
        .federation
        .services()
        .borrow()
        .federation_crl_pem
        .clone();
    if let Err(e) = tls_reloader.set_directory_crl(&crl) {
        tracing::error!(error = %e, "the directory's CRL is not in force");
    }
    let local = |listener: &TcpListener, configured: SocketAddr| {
        listener.local_addr().map_err(|error| NodeError::Bind {
            addr: configured,
            error,
        })
    };
    let peer_addr = local(&listeners.peer, *config.listen.peer.get_ref())?;
    let client_addr = local(&listeners.client, *config.listen.client.get_ref())?;
    let (peer_router, client_router) = routers(&core, &config, health_service)?;
    core.health
        .set_serving::<PeerExchangeServer<PeerApi>>()
        .await;
    core.health
        .set_serving::<AlertServiceServer<AlertApi>>()
        .await;
    core.health
        .set_serving::<AdminServiceServer<AdminApi>>()
        .await;
    core.health
        .set_serving::<DisclosureServiceServer<DisclosureApi>>()
        .await;
    core.health
        .set_serving::<ReportServiceServer<ReportApi>>()
        .await;
    // Bound before anything is spawned, so a taken port fails the start cleanly.
    let metrics_listener = bind_optional(&config.metrics.listen, crate::metrics::bind).await?;
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let web = WebListeners::bind(&config).await?;
    let (console_addr, intake_addr) = web.addrs();
    let handshake_timeout = config.limits.handshake_timeout();
    let serve = |name,
                 listener,
                 tls: &tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>,
                 router: ApiRouter| {
        let accept = server::Accept {
            tls: tls.clone(),
            handshake_timeout,
            max_age,
        };
        server::spawn(
            name,
            listener,
            &accept,
            (&core.store, count_refused(&core.metrics, name)),
            &core.shutdown,
            |incoming, stop| router.serve_with_incoming_shutdown(incoming, stop),
        )
    };
    let servers = server::Listeners::new([
        serve("peer", listeners.peer, &tls.peer, peer_router),
        serve("client", listeners.client, &tls.client, client_router),
    ]);
    let mut start_entry = Event::new(NODE, Action::NodeStart, "OK")
        .detail("version", crate::release::RELEASE)
        .detail("peer_listener", peer_addr)
        .detail("client_listener", client_addr);
    if let Some(addr) = console_addr {
        start_entry = start_entry.detail("console_listener", addr);
    }
    if let Some(addr) = intake_addr {
        start_entry = start_entry.detail("intake_listener", addr);
    }
    core.store.audit([start_entry]).await?;
    let mut workers = spawn_workers(&core, &config, tls_reloader, &tls, metrics_listener);
    workers.extend(
        web.serve(&core, &config, &tls, (handshake_timeout, max_age))
            .await?,
    );
    let console = console_addr.map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(agency = %core.settings.agency, %peer_addr, %client_addr, %console, "node started");
    Ok(RunningNode {
        core,
        peer_addr,
        client_addr,
        metrics_addr,
        console_addr,
        intake_addr,
        servers,
        workers,
    })
}

/// The listeners for people's browsers the config may leave out: the
/// console (agency staff, client certificates) and the public intake.
struct WebListeners {
    console: Option<TcpListener>,
    intake: Option<TcpListener>,
}

impl WebListeners {
    /// Binds both, before anything is spawned.
    async fn bind(config: &NodeConfig) -> Result<Self, NodeError> {
        let intake = config.intake.as_ref().map(|i| i.listen.clone());
        Ok(Self {
            console: bind_optional(&config.console.listen, TcpListener::bind).await?,
            intake: bind_optional(&intake, TcpListener::bind).await?,
        })
    }

    fn addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let addr = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        (addr(&self.console), addr(&self.intake))
    }

    /// Serves what was bound; the workers that do.
    async fn serve(
        self,
        core: &Arc<NodeCore>,
        config: &NodeConfig,
        tls: &crate::identity::TlsConfigs,
        (handshake_timeout, max_age): (Duration, Duration),
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, NodeError> {
        let mut workers = Vec::new();
        if let Some(listener) = self.console {
            workers.push(crate::console::serve(
                core.clone(),
                listener,
                tls.console.clone(),
                handshake_timeout,
                max_age,
                core.store
                    .refused_handshakes("console", count_refused(&core.metrics, "console")),
            ));
        }
        if let (Some(listener), Some(intake)) = (self.intake, config.intake.as_ref()) {
            workers.push(start_intake(core, listener, intake).await?);
        }
        Ok(workers)
    }
}

/// The public intake (docs/intake.md) on `listener`: its TLS, its
/// languages, the store's reports with their receipt secret.
async fn start_intake(
    core: &Arc<NodeCore>,
    listener: TcpListener,
    config: &crate::config::IntakeConfig,
) -> Result<tokio::task::JoinHandle<()>, NodeError> {
    let tls =
        crate::identity::public_server_tls_config(config.cert.get_ref(), config.key.get_ref())?;
    let catalog =
        crate::intake::i18n::Catalog::load().map_err(|e| NodeError::Intake(e.to_string()))?;
    let site = Arc::new(crate::intake_web::Site {
        reports: core.reports.clone(),
        catalog,
        sessions: crate::intake_web::Sessions::default(),
        emergency_number: config.emergency_number.get_ref().clone(),
    });
    Ok(crate::intake_web::serve(
        site,
        listener,
        Arc::new(tls),
        config.max_connections.get(),
        core.shutdown.clone(),
    ))
}

/// Binds a listener the config may leave out (metrics, console) with `bind`.
async fn bind_optional<F, Fut>(
    addr: &Option<toml::Spanned<SocketAddr>>,
    bind: F,
) -> Result<Option<TcpListener>, NodeError>
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = std::io::Result<TcpListener>>,
{
    server::bind_optional(addr.as_ref().map(|a| *a.get_ref()), bind)
        .await
        .map_err(|(addr, error)| NodeError::Bind { addr, error })
}

/// The node certificate (which must name this node), and the TLS configs of
/// both listeners and for dialling, with the reloader that keeps their CRLs
/// current.
fn load_tls(config: &NodeConfig) -> Result<(NodeIdentity, TlsReloader, TlsConfigs), NodeError> {
    let tls = &config.tls;
    let own = TlsIdentity::load(tls.node_cert.get_ref(), tls.node_key.get_ref())?;
    let expected = NodeIdentity {
        federation: config.federation.clone(),
        agency: config.agency().clone(),
    };
    if own.identity != Identity::Node(expected.clone()) {
        return Err(NodeError::WrongCertificate {
            found: own.identity.to_string(),
            expected: expected.spiffe_uri(),
        });
    }
    let (reloader, configs) = TlsReloader::new(
        TlsFiles {
            federation_ca: tls.federation_ca.get_ref().clone(),
            client_ca: tls.client_ca.get_ref().clone(),
            federation_crl: tls.federation_crl.as_ref().map(|p| p.get_ref().clone()),
            client_crl: tls.client_crl.as_ref().map(|p| p.get_ref().clone()),
        },
        own,
    )?;
    Ok((expected, reloader, configs))
}

/// The two gRPC routers: the peer API, and the client and admin APIs, each
/// with gRPC health and server reflection, every call under the audit
/// layer for requests that never reach a handler.
const HEALTH: &str = "grpc.health.v1.Health";
const REFLECTION: &str = "grpc.reflection.v1.ServerReflection";

/// Reflection for one listener: it lists only what that listener serves.
fn reflection(
    services: &[&str],
) -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    NodeError,
> {
    services
        .iter()
        .fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |b, s| b.with_service_name(*s),
        )
        .with_service_name(REFLECTION)
        .build_v1()
        .map_err(|e| {
            NodeError::Serve(server::ServeError {
                listener: "reflection",
                reason: e.to_string(),
            })
        })
}

fn routers<H>(
    core: &Arc<NodeCore>,
    config: &NodeConfig,
    health_service: HealthServer<H>,
) -> Result<(ApiRouter, ApiRouter), NodeError>
where
    H: tonic_health::pb::health_server::Health,
{
    let limits = &config.limits;
    let max = limits.max_message_bytes.get();
    let undecoded = UndecodedLayer {
        store: core.store.clone(),
        agency: core.settings.agency.clone(),
        federation: core.settings.federation.clone(),
    };
    let server = || {
        Server::builder()
            .layer(undecoded.clone())
            .timeout(limits.request_timeout())
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(256))
    };
    // Health and reflection answer only callers that may use the listener:
    // a configured peer on the peer listener, a listed client on the client
    // listener (tonic serves them without our handlers' checks otherwise).
    let peer_gate = {
        let core = core.clone();
        move |req: tonic::Request<()>| crate::api::auth::peer(&core.peers, &req).map(|_| req)
    };
    let client_gate = {
        let core = core.clone();
        move |req: tonic::Request<()>| {
            crate::api::auth::listed_client(&core.clients, &req).map(|_| req)
        }
    };
    use tonic::server::NamedService;
    let peer = server()
        .add_service(InterceptedService::new(
            health_service.clone(),
            peer_gate.clone(),
        ))
        .add_service(InterceptedService::new(
            reflection(&[HEALTH, PeerExchangeServer::<PeerApi>::NAME])?,
            peer_gate,
        ))
        .add_service(
            PeerExchangeServer::new(PeerApi(core.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
    let client = server()
        .add_service(InterceptedService::new(health_service, client_gate.clone()))
        .add_service(InterceptedService::new(
            reflection(&[
                HEALTH,
                AlertServiceServer::<AlertApi>::NAME,
                AdminServiceServer::<AdminApi>::NAME,
                DisclosureServiceServer::<DisclosureApi>::NAME,
                ReportServiceServer::<ReportApi>::NAME,
            ])?,
            client_gate,
        ))
        .add_service(
            AlertServiceServer::new(AlertApi(core.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            AdminServiceServer::new(AdminApi(core.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            DisclosureServiceServer::new(DisclosureApi(core.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            ReportServiceServer::new(ReportApi(core.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
    Ok((peer, client))
}

/// Gives alerts stored during a key service outage their tokens, every
/// few seconds while any wait; after a failure it waits longer each time
/// (up to a minute), or until the next allowance a budget refusal names.
async fn complete_pending_tokens(core: Arc<NodeCore>) {
    const IDLE: Duration = Duration::from_secs(2);
    const MAX_BACKOFF: Duration = Duration::from_secs(60);
    let mut wait = IDLE;
    loop {
        tokio::select! {
            _ = core.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if !matches!(core.ledger.tokens_pending(), Ok(n) if n > 0) {
            wait = IDLE;
            continue;
        }
        match core.ledger.complete_pending().await {
            Ok(r) => {
                if r.completed > 0 {
                    tracing::info!(
                        completed = r.completed,
                        left = r.left,
                        "exact tokens derived for alerts stored during a key service outage"
                    );
                }
                wait = if r.left > 0 { Duration::ZERO } else { IDLE };
            }
            Err(crate::alert::AlertError::Tokens(crate::tokens::TokenError::OverBudget {
                retry_after: Some(after),
                ..
            })) => wait = after.clamp(IDLE, Duration::from_secs(3600)),
            Err(e) => {
                tracing::warn!(error = %e, "exact tokens still pending; retrying");
                wait = (wait * 2).clamp(IDLE, MAX_BACKOFF);
            }
        }
    }
}

/// Brings the store's own alerts under the matching settings in force
/// (see `alert::rematch`), while the node serves.
async fn rematch(core: Arc<NodeCore>) {
    // It may wait for the key service (an outage, a budget spent by a
    // migration's re-derivation): shutdown does not wait for it.
    let result = tokio::select! {
        _ = core.shutdown.cancelled() => return,
        r = core.ledger.rematch() => r,
    };
    match result {
        Ok(r) if r.up_to_date => {}
        Ok(r) => tracing::info!(
            re_encoded = r.re_encoded,
            re_matched = r.re_matched,
            hits = r.hits,
            settings = %core.ledger.matching_settings(),
            "own alerts brought under the matching settings in force"
        ),
        Err(e) => tracing::error!(
            error = %e,
            "re-encoding and re-matching own alerts failed; the next start tries again"
        ),
    }
}

/// Starts the background work of a node: audit checkpoints and pruning,
/// the retention purge, CRL reloads, one delivery worker per peer, and the
/// metrics endpoint (with the refresh of its per-peer gauges) when bound.
fn spawn_workers(
    core: &Arc<NodeCore>,
    config: &NodeConfig,
    tls_reloader: TlsReloader,
    tls: &TlsConfigs,
    metrics_listener: Option<TcpListener>,
) -> Vec<JoinHandle<()>> {
    let shutdown = &core.shutdown;
    let (crl_feed, following) = follow_services(core);
    let mut workers = vec![
        following,
        tokio::spawn(server::audit_upkeep(
            core.store.clone(),
            core.signer.clone(),
            config.audit.checkpoint_interval_secs.secs(),
            Some(config.audit.retention_days.days()),
            shutdown.clone(),
        )),
        tokio::spawn(purge_expired(
            core.store.clone(),
            core.disclosures.clone(),
            core.metrics.clone(),
            (
                config.alerts.purge_interval_secs.secs(),
                config.disclosure.request_retention_days.days(),
            ),
            shutdown.clone(),
        )),
        tokio::spawn(tls_reloader.run(
            config.tls.crl_reload_secs.secs(),
            crl_feed,
            shutdown.clone(),
        )),
        tokio::spawn(warn_of_expiry(core.clone(), shutdown.clone())),
        tokio::spawn(turn_epochs(core.clone(), config.encryption.clone())),
        tokio::spawn(rematch(core.clone())),
        tokio::spawn(complete_pending_tokens(core.clone())),
        tokio::spawn(statistics::run_statistics(core.clone())),
    ];
    let (offers, offered) = tokio::sync::mpsc::channel(16);
    workers.extend(follow_directory(core, config, offered));
    workers.extend(core.outbound.spawn_workers(
        DeliveryContext {
            store: core.store.clone(),
            own: core.settings.own.clone(),
            federation: core.settings.federation.clone(),
            tls: tls.outgoing.clone(),
            max_connection_age: config.tls.max_connection_age_secs.secs(),
            config: config.delivery.clone(),
            max_message_bytes: config.limits.max_message_bytes.get(),
            metrics: core.metrics.clone(),
            disclosures: core.disclosures.clone(),
            capabilities: core.settings.capabilities.clone(),
            directory: config.directory.is_some().then(|| DirectoryFeed {
                version: core.federation.version_feed(),
                offers,
            }),
        },
        shutdown.clone(),
    ));
    let (scraped, probed) = (core.clone(), core.clone());
    workers.extend(server::spawn_metrics(
        metrics_listener,
        move || {
            refresh_peer_gauges(&scraped, &scraped.metrics);
            scraped.metrics.render()
        },
        move || !probed.draining.load(std::sync::atomic::Ordering::Relaxed),
        shutdown,
    ));
    workers
}

/// The tasks that keep the node on the directory in force: taking what
/// the delivery workers fetch from peers, re-reading `[directory] file`,
/// and putting each new membership in force for delivery and sharing.
fn follow_directory(
    core: &Arc<NodeCore>,
    config: &NodeConfig,
    offered: tokio::sync::mpsc::Receiver<crate::exchange::outbound::DirectoryOffer>,
) -> Vec<JoinHandle<()>> {
    let shutdown = &core.shutdown;
    let federation = core.federation.clone();
    let mut tasks = vec![tokio::spawn(
        federation.clone().take_offers(offered, shutdown.clone()),
    )];
    let every = config.delivery.probe_interval_secs.secs();
    if config.directory.is_some() {
        tasks.push(tokio::spawn(
            federation.clone().watch_expiry(every, shutdown.clone()),
        ));
    }
    if let Some(file) = config.directory.as_ref().and_then(|d| d.file.as_ref()) {
        tasks.push(tokio::spawn(federation.clone().watch_file(
            file.get_ref().clone(),
            config.delivery.probe_interval_secs.secs(),
            shutdown.clone(),
        )));
    }
    let (core, stop) = (core.clone(), shutdown.clone());
    let mut changes = federation.roster().subscribe();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            let members = changes.borrow_and_update().clone();
            core.outbound.follow(&members);
            core.sharing.follow();
            core.metrics.prime_peers(&members.peer_ids());
        }
    }));
    tasks
}

/// Follows what the directory in force names besides members: its key
/// service's replicas and keys go to the token deriver here, its CRL to
/// the TLS reloader through the returned feed.
fn follow_services(core: &Arc<NodeCore>) -> (tokio::sync::watch::Receiver<String>, JoinHandle<()>) {
    let mut services = core.federation.services();
    let (crl, feed) =
        tokio::sync::watch::channel(services.borrow_and_update().federation_crl_pem.clone());
    let (core, stop) = (core.clone(), core.shutdown.clone());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = services.changed() => if changed.is_err() { return },
            }
            let now = services.borrow_and_update().clone();
            crl.send_if_modified(|pem| {
                let changed = *pem != now.federation_crl_pem;
                pem.clone_from(&now.federation_crl_pem);
                changed
            });
            let Some(listed) = &now.key_service else {
                continue;
            };
            match core.tokens.follow(&core.settings.federation, listed) {
                Ok(true) => tracing::info!(
                    replicas = listed.endpoints.len(),
                    keys = listed.keys.len(),
                    "the key service named by the federation directory is in use"
                ),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "the directory's key service is not in use; the one before stays")
                }
            }
        }
    });
    (feed, task)
}

/// Ends each encryption epoch on time (`[encryption] epoch_secs`): the
/// live data keys and data sealed again under the next, the ended epoch
/// destroyed, and the backup keys past the backup retention. Checked at start (finishing a turn a crash
/// interrupted) and then a few times per epoch.
async fn turn_epochs(core: Arc<NodeCore>, encryption: Option<crate::config::EncryptionConfig>) {
    let Some(e) = encryption else {
        return;
    };
    let epoch = Duration::from_secs(e.epoch_secs.get() as u64);
    let retention = Duration::from_secs(e.backup_retention_days.get() as u64 * 86_400);
    let every = (epoch / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        match core.store.turn_epoch(epoch, retention).await {
            Ok(turn) if turn != crate::store::EpochTurn::default() => tracing::info!(
                started = ?turn.started,
                resealed = turn.resealed,
                destroyed = ?turn.destroyed,
                backup_keys_destroyed = ?turn.backups_destroyed,
                "encryption epoch turned"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "the encryption epoch did not turn; retrying"),
        }
        tokio::select! {
            _ = core.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Logs every certificate this node depends on that ends within
/// [`check::EXPIRY_WARNING`] (30 days): its own, its CAs', and each peer's
/// as last presented. At start (peers are learnt within a probe interval,
/// so their first check is a minute later) and then twice a day.
async fn warn_of_expiry(core: Arc<NodeCore>, shutdown: CancellationToken) {
    let mut wait = Duration::from_secs(60);
    loop {
        let now = SystemTime::now();
        let soon = |end: SystemTime| end < now + check::EXPIRY_WARNING;
        for (name, file, end) in &core.settings.certificates {
            if let Some(end) = end.filter(|e| soon(*e)) {
                let days = crate::time::days_until(end, now);
                tracing::warn!(certificate = name, file = %file.display(), days_left = days, "certificate ends soon: renew it");
            }
        }
        for (peer, _, state) in core.outbound.states() {
            if let Some(end) = state.certificate_not_after.filter(|e| soon(*e)) {
                let days = crate::time::days_until(end, now);
                tracing::warn!(%peer, days_left = days, "a peer's certificate ends soon: tell its operator");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = Duration::from_secs(12 * 3600);
    }
}

/// The gauges read at scrape time: each peer's queue depth and oldest
/// undelivered age, the store's size and its filesystem's free space.
/// The statistics series, per table and quarter, from the releases held.
fn refresh_stats_gauges(releases: &[crate::proto::v1::StatsReleaseView], m: &Metrics) {
    let mut released: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for v in releases {
        let Some(r) = &v.release else { continue };
        let labels = vec![("table", r.table.clone()), ("period", r.period.clone())];
        m.stats_epsilon_spent
            .get_or_create(&labels)
            .set(i64::from(v.spent_milli));
        m.stats_epsilon_budget
            .get_or_create(&labels)
            .set(i64::from(v.budget_milli));
        *released
            .entry((r.table.clone(), r.period.clone()))
            .or_default() += i64::from(v.released_at != 0);
    }
    for ((table, period), n) in released {
        m.stats_released
            .get_or_create(&vec![("table", table), ("period", period)])
            .set(n);
    }
}

fn refresh_peer_gauges(core: &NodeCore, m: &Metrics) {
    let unix = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    for (name, _, end) in &core.settings.certificates {
        if let Some(end) = end {
            m.certificate_not_after
                .get_or_create(&crate::metrics::label("certificate", name))
                .set(unix(*end));
        }
    }
    if let Ok(bytes) = core.store.disk_bytes() {
        m.store_bytes.set(bytes as i64);
    }
    if let Some(health) = core.directory_health() {
        m.directory_version.set(health.version as i64);
        m.directory_expires_at
            .set(health.expires_at.map_or(0, |t| t.seconds));
        m.directory_holding
            .set(i64::from(health.state == "holding"));
    }
    if let Ok(n) = core.ledger.tokens_pending() {
        m.tokens_pending.set(n as i64);
    }
    if let Some(e) = core.encryption_health() {
        m.encryption_epoch.set(e.epoch as i64);
        m.encryption_next_epoch
            .set(e.next_epoch_at.map_or(0, |t| t.seconds));
    }
    core.disclosures.refresh_metrics();
    if let Ok(views) = core.analytics.views() {
        refresh_stats_gauges(&views.releases, m);
    }
    if let Ok(free) = core.store.free_bytes() {
        m.store_free_bytes.set(free as i64);
    }
    for (peer, _, state) in core.outbound.states() {
        let labels = crate::metrics::peer(&peer);
        if let Some(end) = state.certificate_not_after {
            m.peer_certificate_not_after
                .get_or_create(&labels)
                .set(unix(end));
        }
        m.queue_depth
            .get_or_create(&labels)
            .set(core.store.outbox_depth(&peer) as i64);
        m.held
            .get_or_create(&labels)
            .set(state.held.values().sum::<u64>() as i64);
        // The first entry only: a scrape must not read a whole backlog.
        let oldest = core
            .store
            .outbox_after(&peer, None, 1)
            .ok()
            .and_then(|first| first.into_iter().next())
            .and_then(|q| q.queued_at)
            .map(|t| crate::time::system_time_lossy(&t));
        m.oldest_undelivered
            .get_or_create(&labels)
            .set(crate::metrics::age_secs(oldest));
    }
}

/// Counts the refused handshakes of `listener` in the node's metrics.
fn count_refused(metrics: &Metrics, listener: &'static str) -> impl Fn() + Send + Sync + 'static {
    let counter = metrics
        .refused_handshakes
        .get_or_create(&crate::metrics::label("listener", listener))
        .clone();
    move || {
        counter.inc();
    }
}

/// Removes content past its retention deadline, at start and then every
/// `interval`, until shutdown.
async fn purge_expired(
    store: Arc<Store>,
    disclosures: Arc<crate::disclosure::Disclosures>,
    metrics: Metrics,
    (interval, request_retention): (Duration, Duration),
    shutdown: CancellationToken,
) {
    loop {
        match store.purge_expired(SystemTime::now()).await {
            Ok(purged) if !purged.is_empty() => {
                metrics.purged.inc_by(purged.len() as u64);
                tracing::info!(count = purged.len(), "retention: content purged");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention purge failed; retrying next round"),
        }
        // Releases received keep their own deadline, apart from alerts.
        match disclosures.purge_due(SystemTime::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "retention: releases purged"),
            Err(e) => tracing::error!(error = %e, "release purge failed; retrying next round"),
        }
        // Public reports keep their own retention (`[intake] retention_days`).
        match store.intake_purge_due(crate::time::now_ms() / 1000).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "retention: public reports purged"),
            Err(e) => tracing::error!(error = %e, "report purge failed; retrying next round"),
        }
        // Decided requests keep what they asked for as long as configured.
        match store
            .purge_requests(SystemTime::now(), request_retention)
            .await
        {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(count = ids.len(), "retention: disclosure requests purged")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "request purge failed; retrying next round"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

impl RunningNode {
    pub fn core(&self) -> &Arc<NodeCore> {
        &self.core
    }
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }
    /// Where `GET /metrics` is served, when `[metrics] listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }
    /// Where the public intake is served, when `[intake]` is set.
    pub fn intake_addr(&self) -> Option<SocketAddr> {
        self.intake_addr
    }

    /// Where the web console is served, when `[console] listen` is set.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console_addr
    }
    pub fn subscribe_received(&self) -> tokio::sync::broadcast::Receiver<Received> {
        self.core.inbound.subscribe()
    }

    /// Reports NOT_SERVING for the drain grace, then stops accepting, lets
    /// in-flight RPCs finish (bounded), stops delivery workers (un-acked
    /// envelopes stay in the outbox) and flushes the store.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        self.core
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let health = &self.core.health;
        health
            .set_not_serving::<PeerExchangeServer<PeerApi>>()
            .await;
        health
            .set_not_serving::<AlertServiceServer<AlertApi>>()
            .await;
        health
            .set_not_serving::<AdminServiceServer<AdminApi>>()
            .await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        if !self.core.settings.drain_grace.is_zero() {
            tracing::info!(grace = ?self.core.settings.drain_grace, "draining: health is NOT_SERVING");
            tokio::time::sleep(self.core.settings.drain_grace).await;
        }
        self.core.shutdown.cancel();
        let served = self.servers.drain(DRAIN_TIMEOUT).await;
        let late = self.core.outbound.take_late_workers();
        for w in self.workers.into_iter().chain(late) {
            let _ = w.await;
        }
        let stop = Event::new(NODE, Action::NodeStop, "OK");
        server::close_log(&self.core.store, &self.core.signer, stop).await?;
        tracing::info!(agency = %self.core.settings.agency, "node stopped");
        Ok(served?)
    }

    /// Serves until `signal` resolves or a listener fails, then shuts down.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), NodeError> {
        match self.servers.first_failure(signal).await {
            Some(failed) => {
                let _ = self.shutdown().await;
                Err(failed.into())
            }
            None => self.shutdown().await,
        }
    }
}

/// Binds the configured addresses, starts, and serves until `signal`.
pub async fn run(config: NodeConfig, signal: impl Future<Output = ()>) -> Result<(), NodeError> {
    let listeners = Listeners::bind(&config).await?;
    start(config, listeners).await?.run_until(signal).await
}
