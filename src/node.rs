//! A running node: two TLS listeners (peer API, client API), the store, and a
//! delivery worker per peer. [`start`] takes already-bound listeners so tests
//! can bind port 0 and a supervisor can hand sockets over.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::alert::Ledger;
use crate::api::auth::{ClientPolicy, PeerPolicy};
use crate::api::{AdminApi, AlertApi, PeerApi};
use crate::audit::signing::SigningKey;
use crate::audit::{Action, Event, NODE};
use crate::config::NodeConfig;
use crate::exchange::outbound::DeliveryContext;
use crate::exchange::{Inbound, Outbound, Received};
use crate::identity::{
    Identity, NodeIdentity, OnRefused, TlsError, TlsFiles, TlsIdentity, TlsReloader,
    install_crypto_provider, serve_tls,
};
use crate::ids::{AgencyId, FederationName};
use crate::lookup::{LookupSettings, Lookups};
use crate::matching::MatchScope;
use crate::metrics::Metrics;
use crate::proto::v1::admin_service_server::AdminServiceServer;
use crate::proto::v1::alert_service_server::AlertServiceServer;
use crate::proto::v1::peer_exchange_server::PeerExchangeServer;
use crate::pseudo::{KeyRing, Pseudonymizer};
use crate::ratelimit::RateLimiter;
use crate::sharing::Sharing;
use crate::store::{Store, StoreError};

#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    KeyRing(#[from] crate::pseudo::KeyRingError),
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
    #[error("node certificate names {found}, but the config is for {expected}")]
    WrongCertificate { found: String, expected: String },
    #[error("{listener} listener failed: {reason}")]
    Serve {
        listener: &'static str,
        reason: String,
    },
}

/// State shared by every service and worker of one node.
pub struct NodeCore {
    pub agency: AgencyId,
    pub federation: FederationName,
    pub clients: ClientPolicy,
    pub peers: PeerPolicy,
    pub ledger: Ledger,
    pub sharing: Arc<Sharing>,
    pub lookups: Lookups,
    pub inbound: Inbound,
    pub outbound: Arc<Outbound>,
    pub store: Arc<Store>,
    pub started_at: SystemTime,
    pub shutdown: CancellationToken,
    /// gRPC health of both listeners: SERVING while up, NOT_SERVING from the
    /// moment shutdown starts.
    pub health: tonic_health::server::HealthReporter,
    /// Set when shutdown starts: readiness (gRPC health, `/readyz`) is off.
    pub draining: std::sync::atomic::AtomicBool,
    pub metrics: Metrics,
    /// Where `BackupStore` writes copies.
    pub backup_dir: std::path::PathBuf,
    drain_grace: Duration,
}

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
                .map_err(|source| NodeError::Bind { addr, source })
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
    servers: Vec<JoinHandle<Result<(), NodeError>>>,
    workers: Vec<JoinHandle<()>>,
    /// Signs the final checkpoint at shutdown.
    signer: Arc<SigningKey>,
}

/// Names of the server tasks, in the order of `RunningNode::servers`.
const LISTENERS: [&str; 2] = ["peer", "client"];

/// How long shutdown waits for in-flight RPCs before dropping connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads certificates, opens the store and starts serving. Everything that
/// can be wrong with the files is reported here, before any request is served.
pub async fn start(config: NodeConfig, listeners: Listeners) -> Result<RunningNode, NodeError> {
    install_crypto_provider();
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
    let (tls_reloader, tls_configs) = TlsReloader::new(
        TlsFiles {
            federation_ca: tls.federation_ca.get_ref().clone(),
            client_ca: tls.client_ca.get_ref().clone(),
            federation_crl: tls.federation_crl.as_ref().map(|p| p.get_ref().clone()),
            client_crl: tls.client_crl.as_ref().map(|p| p.get_ref().clone()),
        },
        own,
    )?;
    let max_age = Duration::from_secs(tls.max_connection_age_secs.get() as u64);

    let pseudo = Arc::new(load_pseudonymizer(&config)?);
    let signer = Arc::new(SigningKey::load_or_create(&config.audit_signing_key())?);
    let store = Arc::new(Store::open(
        &config.store.dir,
        config.store.cache_capacity_mb.get() as u64 * 1024 * 1024,
        MatchScope {
            own: config.agency().clone(),
            peers: config
                .peers
                .iter()
                .map(|p| p.agency_id.get_ref().clone())
                .collect(),
            fuzzy_threshold: config.matching.fuzzy_threshold,
        },
    )?);
    let peer_ids: Vec<AgencyId> = config
        .peers
        .iter()
        .map(|p| p.agency_id.get_ref().clone())
        .collect();
    let outbound =
        Arc::new(Outbound::new(config.peers.iter().map(|p| {
            (p.agency_id.get_ref().clone(), p.address.get_ref().clone())
        })));
    let sharing = Arc::new(
        Sharing::open(
            store.clone(),
            config.agency().clone(),
            peer_ids.clone(),
            config.sharing.policy.as_ref().map(|p| p.get_ref().clone()),
        )
        .await?,
    );
    let gate: std::sync::Weak<dyn crate::matching::NoticeGate> = Arc::downgrade(&sharing) as _;
    store.start_matching(gate)?;
    let metrics = Metrics::new();
    store.set_metrics(metrics.clone());
    let shutdown = CancellationToken::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    let core = Arc::new(NodeCore {
        agency: config.agency().clone(),
        federation: config.federation.clone(),
        clients: ClientPolicy {
            federation: config.federation.clone(),
            agency: config.agency().clone(),
            roles: config.clients.clone(),
            rate: RateLimiter::per_second(config.limits.requests_per_second_per_client.get() as u32),
        },
        peers: PeerPolicy {
            federation: config.federation.clone(),
            peers: peer_ids.iter().cloned().collect::<BTreeSet<_>>(),
            rate: RateLimiter::per_second(config.limits.requests_per_second_per_peer.get() as u32),
        },
        ledger: Ledger::new(
            store.clone(),
            config.agency().clone(),
            peer_ids,
            config.limits.clone(),
            config.alerts.clone(),
            outbound.clone(),
            pseudo.clone(),
            sharing.clone(),
            metrics.clone(),
        ),
        sharing: sharing.clone(),
        lookups: Lookups::new(
            store.clone(),
            pseudo.clone(),
            expected.clone(),
            config
                .peers
                .iter()
                .map(|p| (p.agency_id.get_ref().clone(), p.address.get_ref().clone()))
                .collect(),
            tls_configs.outgoing.clone(),
            sharing.clone(),
            LookupSettings {
                timeout: Duration::from_secs(config.limits.lookup_timeout_secs.get() as u64),
                max_connection_age: max_age,
                max_identifiers: config.limits.max_identifiers_per_subject.get(),
                fuzzy_threshold: config.matching.fuzzy_threshold,
                per_client_per_minute: config.limits.lookups_per_minute_per_client.get() as u32,
                per_peer_per_minute: config.limits.lookups_per_minute_per_peer.get() as u32,
            },
        ),
        inbound: Inbound::new(
            store.clone(),
            config.limits.clone(),
            sharing.clone(),
            metrics.clone(),
        ),
        metrics: metrics.clone(),
        outbound: outbound.clone(),
        store: store.clone(),
        started_at: SystemTime::now(),
        shutdown: shutdown.clone(),
        health: health.clone(),
        draining: std::sync::atomic::AtomicBool::new(false),
        backup_dir: config.backup_dir(),
        drain_grace: Duration::from_secs(config.limits.drain_grace_secs.get() as u64),
    });

    let peer_addr = listeners
        .peer
        .local_addr()
        .map_err(|source| NodeError::Bind {
            addr: *config.listen.peer.get_ref(),
            source,
        })?;
    let client_addr = listeners
        .client
        .local_addr()
        .map_err(|source| NodeError::Bind {
            addr: *config.listen.client.get_ref(),
            source,
        })?;
    let limits = config.limits.clone();
    let max = limits.max_message_bytes.get();
    let undecoded = crate::api::undecoded::UndecodedLayer {
        store: store.clone(),
        agency: config.agency().clone(),
        federation: config.federation.clone(),
    };
    let server = || {
        Server::builder()
            .layer(undecoded.clone())
            .timeout(limits.request_timeout())
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(256))
    };

    let peer_incoming = serve_tls(
        listeners.peer,
        tls_configs.peer.clone(),
        limits.handshake_timeout(),
        max_age,
        refused_handshakes(&store, &metrics, "peer"),
        shutdown.clone(),
    );
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| NodeError::Serve {
                listener: "reflection",
                reason: e.to_string(),
            })
    };
    let peer_router = server()
        .add_service(health_service.clone())
        .add_service(reflection()?)
        .add_service(
            PeerExchangeServer::new(PeerApi(core.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
    health.set_serving::<PeerExchangeServer<PeerApi>>().await;
    health.set_serving::<AlertServiceServer<AlertApi>>().await;
    health.set_serving::<AdminServiceServer<AdminApi>>().await;
    let client_incoming = serve_tls(
        listeners.client,
        tls_configs.client.clone(),
        limits.handshake_timeout(),
        max_age,
        refused_handshakes(&store, &metrics, "client"),
        shutdown.clone(),
    );
    let client_router = server()
        .add_service(health_service)
        .add_service(reflection()?)
        .add_service(
            AlertServiceServer::new(AlertApi(core.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            AdminServiceServer::new(AdminApi(core.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
    // Bound before anything is spawned, so a taken port fails the start cleanly.
    let metrics_listener = match &config.metrics.listen {
        Some(addr) => Some(
            crate::metrics::bind(*addr.get_ref())
                .await
                .map_err(|source| NodeError::Bind {
                    addr: *addr.get_ref(),
                    source,
                })?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let servers = vec![
        tokio::spawn({
            let stop = shutdown.clone();
            async move {
                peer_router
                    .serve_with_incoming_shutdown(peer_incoming, stop.cancelled_owned())
                    .await
                    .map_err(|e| NodeError::Serve {
                        listener: "peer",
                        reason: crate::identity::error_chain(&e),
                    })
            }
        }),
        tokio::spawn({
            let stop = shutdown.clone();
            async move {
                client_router
                    .serve_with_incoming_shutdown(client_incoming, stop.cancelled_owned())
                    .await
                    .map_err(|e| NodeError::Serve {
                        listener: "client",
                        reason: crate::identity::error_chain(&e),
                    })
            }
        }),
    ];
    store
        .audit([Event::new(NODE, Action::NodeStart, "OK")
            .detail("version", env!("CARGO_PKG_VERSION"))
            .detail("peer_listener", peer_addr)
            .detail("client_listener", client_addr)])
        .await?;
    let mut workers = vec![
        tokio::spawn(audit_upkeep(
            store.clone(),
            signer.clone(),
            Duration::from_secs(config.audit.checkpoint_interval_secs.get() as u64),
            Duration::from_secs(config.audit.retention_days.get() as u64 * 86_400),
            shutdown.clone(),
        )),
        tokio::spawn(purge_expired(
            store.clone(),
            metrics.clone(),
            Duration::from_secs(config.alerts.purge_interval_secs.get() as u64),
            shutdown.clone(),
        )),
        tokio::spawn(tls_reloader.run(
            Duration::from_secs(config.tls.crl_reload_secs.get() as u64),
            shutdown.clone(),
        )),
    ];
    workers.extend(outbound.spawn_workers(
        DeliveryContext {
            store,
            own: expected,
            federation: config.federation.clone(),
            tls: tls_configs.outgoing.clone(),
            max_connection_age: max_age,
            config: config.delivery.clone(),
            max_message_bytes: max,
            metrics: metrics.clone(),
        },
        shutdown.clone(),
    ));

    if let Some(listener) = metrics_listener {
        let refresh_core = core.clone();
        let refresh: Arc<dyn Fn(&Metrics) + Send + Sync> = Arc::new(move |m: &Metrics| {
            let core = &refresh_core;
            for (peer, _, _) in core.outbound.states() {
                let labels = crate::metrics::peer(&peer);
                m.queue_depth
                    .get_or_create(&labels)
                    .set(core.store.outbox_depth(&peer) as i64);
                // The first entry only: a scrape must not read a whole backlog.
                let oldest = core
                    .store
                    .outbox_after(&peer, None, 1)
                    .ok()
                    .and_then(|first| first.into_iter().next())
                    .and_then(|q| q.queued_at)
                    .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.seconds.max(0) as u64));
                m.oldest_undelivered
                    .get_or_create(&labels)
                    .set(crate::metrics::age_secs(oldest));
            }
        });
        let ready_core = core.clone();
        let ready: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(move || {
            !ready_core
                .draining
                .load(std::sync::atomic::Ordering::Relaxed)
        });
        workers.push(tokio::spawn(crate::metrics::serve(
            listener,
            metrics.clone(),
            refresh,
            ready,
            shutdown,
        )));
    }
    tracing::info!(agency = %core.agency, %peer_addr, %client_addr, "node started");
    Ok(RunningNode {
        core,
        peer_addr,
        client_addr,
        metrics_addr,
        servers,
        workers,
        signer,
    })
}

/// Audit entries for refused handshakes per listener and second, at most;
/// a flood from the open internet must not fill the disk through the log.
const HANDSHAKE_ENTRIES_PER_SECOND: u32 = 20;

/// Counts every refused handshake and logs it (`tls.handshake`), up to
/// [`HANDSHAKE_ENTRIES_PER_SECOND`]; the next entry logged says how many
/// were left out before it.
fn refused_handshakes(store: &Arc<Store>, metrics: &Metrics, listener: &'static str) -> OnRefused {
    let counter = metrics
        .refused_handshakes
        .get_or_create(&crate::metrics::label("listener", listener))
        .clone();
    let store = store.clone();
    let limiter = RateLimiter::per_second(HANDSHAKE_ENTRIES_PER_SECOND);
    let left_out = std::sync::atomic::AtomicU64::new(0);
    Arc::new(move |remote: SocketAddr, reason: String| {
        counter.inc();
        if !limiter.allow(listener) {
            left_out.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let mut event = Event::new(
            format!("unauthenticated:{remote}"),
            Action::Handshake,
            "refused",
        )
        .detail("listener", listener)
        .detail("reason", reason);
        let skipped = left_out.swap(0, std::sync::atomic::Ordering::Relaxed);
        if skipped > 0 {
            event = event.detail("left_out_before", skipped);
        }
        if let Err(e) = store.audit_append([event]) {
            tracing::error!(error = %e, "audit entry for a refused handshake could not be written");
        }
    })
}

/// Signs a checkpoint of the chain head, if it moved since the last one.
fn checkpoint(store: &Store, signer: &SigningKey) -> Result<(), StoreError> {
    let (seq, hash) = store.audit_head();
    if seq == 0 || store.audit_last_checkpoint()? >= Some(seq) {
        return Ok(());
    }
    store.audit_put_checkpoint(&signer.sign(seq, hash, crate::audit::now_ms()))
}

/// Signs checkpoints every `interval` and prunes entries past `retention`.
async fn audit_upkeep(
    store: Arc<Store>,
    signer: Arc<SigningKey>,
    interval: Duration,
    retention: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(e) = checkpoint(&store, &signer) {
            tracing::error!(error = %e, "audit checkpoint failed; retrying next round");
        }
        let cutoff = crate::audit::now_ms() - retention.as_millis() as i64;
        let pruning = store.clone();
        match tokio::task::spawn_blocking(move || pruning.audit_prune(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(entries = n, "audit log: entries past retention pruned"),
            Ok(Err(e)) => tracing::error!(error = %e, "audit prune failed; retrying next round"),
            Err(e) => tracing::error!(error = %e, "audit prune task failed"),
        }
    }
}

/// Removes content past its retention deadline, at start and then every
/// `interval`, until shutdown.
async fn purge_expired(
    store: Arc<Store>,
    metrics: Metrics,
    interval: Duration,
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
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
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
    Ok(Pseudonymizer::new(
        ring,
        config
            .matching
            .default_phone_region
            .as_ref()
            .map(|r| r.get_ref().clone()),
    ))
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
        if !self.core.drain_grace.is_zero() {
            tracing::info!(grace = ?self.core.drain_grace, "draining: health is NOT_SERVING");
            tokio::time::sleep(self.core.drain_grace).await;
        }
        self.core.shutdown.cancel();
        let mut first_error = None;
        for server in self.servers {
            let abort = server.abort_handle();
            match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
                Ok(Ok(Err(e))) => first_error = first_error.or(Some(e)),
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!("in-flight requests did not finish in time; closing them");
                    abort.abort();
                }
            }
        }
        for w in self.workers {
            let _ = w.await;
        }
        // The last entry, then a checkpoint over it: a cleanly stopped log is
        // signed to its end, so any cut is detectable.
        let store = &self.core.store;
        store.audit_append([Event::new(NODE, Action::NodeStop, "OK")])?;
        checkpoint(store, &self.signer)?;
        store.close().await?;
        tracing::info!(agency = %self.core.agency, "node stopped");
        first_error.map_or(Ok(()), Err)
    }

    /// Serves until `signal` resolves or a listener fails, then shuts down.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), NodeError> {
        let mut servers = std::mem::take(&mut self.servers);
        let failed = {
            let any_server = futures_util::future::select_all(servers.iter_mut());
            tokio::select! {
                _ = signal => None,
                (res, idx, _) = any_server => Some((idx, res)),
            }
        };
        if let Some((idx, res)) = failed {
            servers.remove(idx);
            self.servers = servers;
            let listener = LISTENERS[idx];
            let err = match res {
                Ok(Err(e)) => e,
                Ok(Ok(())) => NodeError::Serve {
                    listener,
                    reason: "stopped unexpectedly".into(),
                },
                Err(e) => NodeError::Serve {
                    listener,
                    reason: e.to_string(),
                },
            };
            let _ = self.shutdown().await;
            return Err(err);
        }
        self.servers = servers;
        self.shutdown().await
    }
}

/// Binds the configured addresses, starts, and serves until `signal`.
pub async fn run(config: NodeConfig, signal: impl Future<Output = ()>) -> Result<(), NodeError> {
    let listeners = Listeners::bind(&config).await?;
    start(config, listeners).await?.run_until(signal).await
}
