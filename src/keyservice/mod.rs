//! The federation's OPRF key service (`casebridge keyservice run`): holds the
//! OPRF secret keys, evaluates blinded elements for the federation's nodes
//! (RFC 9497 VOPRF with a batched DLEQ proof), counts each node's elements
//! against its budget, and keeps its own hash-chained audit log of counts.
//!
//! What it never sees: an identifier, a token, an alert. A blinded element is
//! a uniformly random group element to anyone without the node's blind, and
//! the outputs are unblinded and hashed on the node. What it does see: which
//! node asks, when, and how many — which is what the budget and the log are
//! about.
//!
//! It is stateless apart from budgets and its log: replicas started from the
//! same key file serve identical outputs (keys are derived from the seed), so
//! nodes may list several addresses. Each replica counts budgets on its own
//! (see `docs/threat-model.md` for what that means for the bound).
//!
//! - [`budget`]: per-minute bucket and per-day count, per node.
//!
//! It listens on mutual TLS trusting the federation CA and serves
//! `Evaluate` (one batched DLEQ proof per call) and `GetPublicKeys`; day
//! counts are restored from its log at start. Its own store holds only
//! that audit log: each admitted `Evaluate` leaves one
//! `keyservice.evaluate` entry (counts, never values), checkpoints are
//! signed as a node signs its own, and calls that spend no budget
//! (refusals, key lists) leave at most [`REFUSAL_ENTRIES_PER_MINUTE`]
//! entries per caller, outcome and minute, the next one saying how many
//! were left out. Its Prometheus series are per node.

pub mod budget;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::audit::signing::SigningKey;
use crate::audit::{Action, Event};
use crate::config::KeyServiceConfig;
use crate::identity::{
    ConnInfo, Identity, NodeIdentity, TlsError, TlsFiles, TlsIdentity, TlsReloader,
    install_crypto_provider,
};
use crate::ids::{AgencyId, FederationName};
use crate::metrics::KeyServiceMetrics;
use crate::proto::v1::key_service_server::{KeyService, KeyServiceServer};
use crate::proto::v1::{
    Budget, EvaluateRequest, EvaluateResponse, GetPublicKeysRequest, GetPublicKeysResponse,
    OprfPublicKey,
};
use crate::pseudo::KeyFileError;
use crate::pseudo::oprf::{MAX_BATCH, OprfError};
use crate::pseudo::oprf_keys::SecretKeys;
use crate::server;
use crate::store::{Store, StoreError};
use budget::{Budgets, Refused};

/// The agency id in a key service's certificate, unless a node's config
/// names another.
pub const DEFAULT_IDENTITY: &str = "keyservice";

/// Clock skew tolerated at the edges of a key's validity window: a node
/// whose clock is a little ahead or behind still gets its evaluation.
const SKEW: time::Duration = time::Duration::minutes(5);

#[derive(Debug, Error)]
pub enum KeyServiceError {
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("audit signing key: {0}")]
    Signing(#[from] crate::audit::signing::SigningError),
    #[error("the key file is for federation `{found}`, the config for `{expected}`")]
    Federation {
        found: FederationName,
        expected: FederationName,
    },
    #[error("certificate names {found}, expected {expected}")]
    WrongCertificate { found: String, expected: String },
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error(transparent)]
    Serve(#[from] server::ServeError),
}

struct Inner {
    federation: FederationName,
    keys: SecretKeys,
    budgets: Budgets,
    store: Arc<Store>,
    metrics: KeyServiceMetrics,
    /// Entries of calls that spend no budget (refusals, key lists).
    refusals_logged: EntryBudget,
}

/// Entries per caller and outcome and minute for calls that spend no
/// budget (bursts of the same).
pub const REFUSAL_ENTRIES_PER_MINUTE: u32 = 60;

/// At most [`REFUSAL_ENTRIES_PER_MINUTE`] entries per key; the rest
/// counted until the next one written.
struct EntryBudget {
    limiter: crate::ratelimit::RateLimiter,
    left_out: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Default for EntryBudget {
    fn default() -> Self {
        Self {
            limiter: crate::ratelimit::RateLimiter::new(
                REFUSAL_ENTRIES_PER_MINUTE,
                REFUSAL_ENTRIES_PER_MINUTE,
            ),
            left_out: Default::default(),
        }
    }
}

impl EntryBudget {
    /// `Some(left out since the last entry)` when an entry may be written.
    fn admit(&self, key: &str) -> Option<u64> {
        let mut left_out = self.left_out.lock().unwrap_or_else(|p| p.into_inner());
        if self.limiter.allow(key) {
            Some(left_out.remove(key).unwrap_or(0))
        } else {
            // Bounded: keys are caller × outcome, and callers need a
            // certificate of the federation CA to get this far (others
            // are keyed by their SPIFFE id, which the CA vouched for).
            *left_out.entry(key.to_owned()).or_default() += 1;
            None
        }
    }
}

/// The gRPC service. Thin: who calls, which key, the budget, one
/// evaluation, one audit entry.
#[derive(Clone)]
pub struct KeyServiceApi(Arc<Inner>);

impl KeyServiceApi {
    /// The calling node's agency, if the certificate names a node of this
    /// federation (anything else is refused and logged under its SPIFFE id).
    fn caller<T>(&self, req: &Request<T>) -> Result<AgencyId, (String, Status)> {
        match req.extensions().get::<ConnInfo>().map(|c| &c.identity) {
            Some(Identity::Node(n)) if n.federation == self.0.federation => Ok(n.agency.clone()),
            Some(other) => Err((
                other.to_string(),
                Status::permission_denied(format!(
                    "{other} is not a node of federation {}",
                    self.0.federation
                )),
            )),
            None => Err((
                "unauthenticated".into(),
                Status::unauthenticated("no client certificate"),
            )),
        }
    }

    /// The audit entry of a call that spends no budget (a refusal, a key
    /// list), within [`REFUSAL_ENTRIES_PER_MINUTE`] per caller and outcome; past that it is counted, and the next entry
    /// written says how many were left out before it (`left_out_before`).
    /// Refusals cost no budget, so without this a caller could grow the
    /// log without bound (38,854 refused calls in 8 s were 16 MB).
    async fn audit_refusal(&self, event: Event) -> Result<(), Status> {
        let key = format!("{}/{}", event.actor, event.outcome);
        match self.0.refusals_logged.admit(&key) {
            Some(0) => self.audit(event).await,
            Some(left_out) => self.audit(event.detail("left_out_before", left_out)).await,
            None => Ok(()),
        }
    }

    async fn audit(&self, event: Event) -> Result<(), Status> {
        self.0.store.audit([event]).await.map_err(|e| {
            tracing::error!(error = %e, "key service audit entry could not be written");
            Status::unavailable("the key service cannot write its audit log")
        })
    }

    fn count(&self, agency: &AgencyId, outcome: &str) {
        self.0
            .metrics
            .requests
            .get_or_create(&vec![
                ("node", agency.to_string()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }
}

fn expected_agency() -> AgencyId {
    AgencyId::new(DEFAULT_IDENTITY).expect("a valid agency id")
}

fn actor(agency: &AgencyId) -> String {
    format!("node:{agency}")
}

fn refusal_status(r: &Refused, elements: u64) -> Status {
    let now = SystemTime::now();
    let at = r
        .retry_at(now)
        .and_then(|t| crate::time::rfc3339(&crate::time::timestamp(t)))
        .unwrap_or_default();
    let message = match r {
        Refused::Minute { per_minute, .. } => format!(
            "over the per-minute budget ({per_minute} elements a minute): {elements} more allowed at {at}"
        ),
        Refused::Day { per_day, .. } => {
            format!("over the daily budget ({per_day} elements a day): next allowance at {at}")
        }
        Refused::Batch {
            elements,
            per_minute,
        } => format!(
            "a batch of {elements} elements is larger than the per-minute budget ({per_minute}); send smaller batches"
        ),
    };
    match r.retry_at(now) {
        Some(t) => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(t.duration_since(now).unwrap_or_default())),
        ),
        None => Status::resource_exhausted(message),
    }
}

#[tonic::async_trait]
impl KeyService for KeyServiceApi {
    async fn evaluate(
        &self,
        req: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        let agency = match self.caller(&req) {
            Ok(a) => a,
            Err((who, status)) => {
                self.audit_refusal(Event::new(
                    who,
                    Action::KeyServiceEvaluate,
                    crate::audit::code_name(status.code()),
                ))
                .await?;
                return Err(status);
            }
        };
        let req = req.into_inner();
        let version = req.key_version;
        let elements = req.blinded_elements.len() as u64;
        let entry = |outcome: &str| {
            Event::new(actor(&agency), Action::KeyServiceEvaluate, outcome)
                .detail("key_version", version)
                .detail("elements", elements)
        };
        self.check_batch(&agency, version, elements, &entry).await?;
        let admitted = self.admit(&agency, elements, &entry).await?;
        // Curve arithmetic for up to a thousand elements: off the async threads.
        let inner = self.0.clone();
        let blinded = req.blinded_elements;
        let evaluated = tokio::task::spawn_blocking(move || {
            let (key, _) = inner.keys.get(version).expect("checked above");
            key.evaluate(&blinded)
        })
        .await
        .map_err(|e| Status::internal(format!("evaluation task failed: {e}")))?;
        let (evaluated, proof) = match evaluated {
            Ok(v) => v,
            Err(e) => {
                self.count(&agency, "invalid");
                self.audit_refusal(entry("INVALID_ARGUMENT")).await?;
                return Err(match e {
                    OprfError::BadElement { index, reason } => crate::violation::invalid_field(
                        &format!("blinded_elements[{index}]"),
                        reason,
                    ),
                    other => Status::invalid_argument(other.to_string()),
                });
            }
        };
        self.audit(
            entry("OK")
                .detail("day_used", admitted.day_used)
                .detail("day_remaining", admitted.day_remaining),
        )
        .await?;
        self.count_evaluated(&agency, elements, admitted.day_remaining);
        Ok(Response::new(EvaluateResponse {
            key_version: version,
            evaluated_elements: evaluated.iter().map(|e| e.to_vec()).collect(),
            proof: proof.to_vec(),
            budget: Some(Budget {
                minute_remaining: admitted.minute_remaining,
                day_remaining: admitted.day_remaining,
                day_resets_at: Some(crate::time::timestamp(admitted.day_resets_at)),
            }),
        }))
    }

    async fn get_public_keys(
        &self,
        req: Request<GetPublicKeysRequest>,
    ) -> Result<Response<GetPublicKeysResponse>, Status> {
        let who = match self.caller(&req) {
            Ok(a) => actor(&a),
            Err((who, status)) => {
                self.audit_refusal(Event::new(
                    who,
                    Action::KeyServiceKeys,
                    crate::audit::code_name(status.code()),
                ))
                .await?;
                return Err(status);
            }
        };
        // Free to call, so bounded like a refusal.
        self.audit_refusal(Event::new(who, Action::KeyServiceKeys, "OK"))
            .await?;
        let keys = self
            .0
            .keys
            .versions()
            .into_iter()
            .filter_map(|v| self.0.keys.get(v))
            .map(|(k, w)| OprfPublicKey {
                version: k.version,
                public_key: k.public_key().to_bytes().to_vec(),
                valid_from: Some(crate::time::timestamp(w.valid_from.into())),
                valid_until: w.valid_until.map(|u| crate::time::timestamp(u.into())),
            })
            .collect();
        Ok(Response::new(GetPublicKeysResponse {
            federation: self.0.federation.to_string(),
            keys,
        }))
    }
}

/// A started key service.
pub struct RunningKeyService {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    inner: Arc<Inner>,
    signer: Arc<SigningKey>,
    shutdown: CancellationToken,
    server: server::Listeners,
    workers: Vec<JoinHandle<()>>,
}

/// Today's elements per node, from the audit log (admitted calls only),
/// so a restart does not refill anyone's daily budget.
fn restore_budgets(store: &Store, budgets: &Budgets) -> Result<(), StoreError> {
    let today = budget::day_of(SystemTime::now());
    let since =
        i64::try_from(crate::time::unix_secs(budget::day_start(today)) * 1000).unwrap_or(i64::MAX);
    let from = store.audit_seq_at(since)?;
    for raw in store.audit_entries(from) {
        let Ok(entry) = raw?.entry() else { continue };
        let e = entry.event;
        if e.action != Action::KeyServiceEvaluate || e.outcome != "OK" {
            continue;
        }
        let (Some(agency), Some(n)) = (
            e.actor
                .strip_prefix("node:")
                .and_then(|a| AgencyId::new(a).ok()),
            e.detail.get("elements").and_then(|n| n.parse::<u64>().ok()),
        ) else {
            continue;
        };
        budgets.restore(&agency, today, n);
    }
    Ok(())
}

/// Binds the configured address (its error names it).
pub async fn bind(config: &KeyServiceConfig) -> Result<TcpListener, KeyServiceError> {
    let addr = *config.listen.get_ref();
    TcpListener::bind(addr)
        .await
        .map_err(|error| KeyServiceError::Bind { addr, error })
}

/// Loads keys and certificates, opens the log and serves on `listener`
/// (bound by [`bind`], or on port 0 by a test or a supervisor). Everything
/// wrong with the files is reported here, before a call is served.
pub async fn start(
    config: &KeyServiceConfig,
    listener: TcpListener,
) -> Result<RunningKeyService, KeyServiceError> {
    install_crypto_provider();
    if let Err(e) = crate::secrets::no_core_dumps() {
        tracing::warn!(error = %e, "core dumps could not be turned off");
    }
    let (keys, own) = keys_and_identity(config)?;
    let tls = &config.tls;
    // Nodes are clients here; their CA is the federation CA (the reloader's
    // "peer" listener config is exactly that).
    let (reloader, configs) = TlsReloader::new(
        TlsFiles {
            federation_ca: tls.federation_ca.get_ref().clone(),
            client_ca: tls.federation_ca.get_ref().clone(),
            federation_crl: tls.federation_crl.as_ref().map(|p| p.get_ref().clone()),
            client_crl: None,
        },
        own,
    )?;
    let addr = listener
        .local_addr()
        .map_err(|error| KeyServiceError::Bind {
            addr: *config.listen.get_ref(),
            error,
        })?;
    let metrics_listener = server::bind_optional(
        config.metrics.listen.as_ref().map(|m| *m.get_ref()),
        crate::metrics::bind,
    )
    .await
    .map_err(|(addr, error)| KeyServiceError::Bind { addr, error })?;
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let store = Arc::new(Store::open_audit_only(&config.data_dir, 16 << 20)?);
    let signer = Arc::new(SigningKey::load_or_create(&config.audit_signing_key())?);
    let budgets = Budgets::new(config.budget.clone());
    restore_budgets(&store, &budgets)?;
    let inner = Arc::new(Inner {
        federation: config.federation.clone(),
        keys,
        budgets,
        store: store.clone(),
        metrics: KeyServiceMetrics::new(),
        refusals_logged: EntryBudget::default(),
    });
    let shutdown = CancellationToken::new();
    let router = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        .max_concurrent_streams(Some(256))
        .add_service(KeyServiceServer::new(KeyServiceApi(inner.clone())));
    let counter = inner.metrics.refused_handshakes.clone();
    let accept = server::Accept {
        tls: configs.peer.clone(),
        handshake_timeout: HANDSHAKE_TIMEOUT,
        max_age: config.tls.max_connection_age_secs.secs(),
    };
    let served = server::spawn(
        "keyservice",
        listener,
        &accept,
        (&store, move || {
            counter.inc();
        }),
        &shutdown,
        |incoming, stop| router.serve_with_incoming_shutdown(incoming, stop),
    );
    let workers = spawn_workers(
        config,
        &inner,
        (&store, &signer),
        reloader,
        metrics_listener,
        &shutdown,
    );
    store
        .audit([Event::new("keyservice", Action::KeyServiceStart, "OK")
            .detail("listener", addr)
            .detail("key_versions", format!("{:?}", inner.keys.versions()))])
        .await?;
    tracing::info!(%addr, federation = %config.federation, "key service started");
    Ok(RunningKeyService {
        addr,
        metrics_addr,
        inner,
        signer,
        shutdown,
        server: server::Listeners::new([served]),
        workers,
    })
}

/// How long a node has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for in-flight evaluations.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The key service's background work: CRL reloads, audit checkpoints, and
/// the metrics endpoint when bound.
fn spawn_workers(
    config: &KeyServiceConfig,
    inner: &Arc<Inner>,
    (store, signer): (&Arc<Store>, &Arc<SigningKey>),
    reloader: TlsReloader,
    metrics_listener: Option<TcpListener>,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut workers = vec![
        tokio::spawn(reloader.run(
            config.tls.crl_reload_secs.secs(),
            // No directory list: the key service reads its CRL files only.
            tokio::sync::watch::channel(String::new()).1,
            shutdown.clone(),
        )),
        tokio::spawn(server::audit_upkeep(
            store.clone(),
            signer.clone(),
            config.audit.checkpoint_interval_secs.secs(),
            None,
            shutdown.clone(),
        )),
    ];
    let (m, stop) = (inner.metrics.clone(), shutdown.clone());
    workers.extend(server::spawn_metrics(
        metrics_listener,
        move || m.render(),
        move || !stop.is_cancelled(),
        shutdown,
    ));
    workers
}

/// The steps of an evaluation, each refusal counted and audited.
impl KeyServiceApi {
    /// A key this service holds, valid now (give or take skew), and a
    /// batch of 1 to `MAX_BATCH` elements.
    async fn check_batch(
        &self,
        agency: &AgencyId,
        version: u32,
        elements: u64,
        entry: &impl Fn(&str) -> Event,
    ) -> Result<(), Status> {
        let now = time::OffsetDateTime::now_utc();
        let valid = matches!(
            self.0.keys.get(version),
            Some((_, w)) if w.valid_from - SKEW <= now && w.valid_until.is_none_or(|u| now < u + SKEW)
        );
        if !valid {
            self.count(agency, "unknown_key");
            self.audit_refusal(entry("FAILED_PRECONDITION")).await?;
            return Err(Status::failed_precondition(format!(
                "key_version: {version} is not a key this service holds valid now (it holds {:?})",
                self.0.keys.versions()
            )));
        }
        if elements == 0 || elements > MAX_BATCH as u64 {
            self.count(agency, "invalid");
            self.audit_refusal(entry("INVALID_ARGUMENT")).await?;
            return Err(crate::violation::invalid_field(
                "blinded_elements",
                format!("send 1 to {MAX_BATCH} elements, not {elements}"),
            ));
        }
        Ok(())
    }

    /// The caller's budget for the whole batch: admitted or refused as one
    /// (garbage costs budget too, so a caller cannot probe for free).
    async fn admit(
        &self,
        agency: &AgencyId,
        elements: u64,
        entry: &impl Fn(&str) -> Event,
    ) -> Result<budget::Admitted, Status> {
        match self.0.budgets.admit(agency, elements) {
            Ok(a) => Ok(a),
            Err(refused) => {
                self.count(agency, "over_budget");
                self.0
                    .metrics
                    .refusals
                    .get_or_create(&vec![
                        ("node", agency.to_string()),
                        ("reason", refused.reason().to_owned()),
                    ])
                    .inc();
                self.audit_refusal(entry("RESOURCE_EXHAUSTED").detail("refused", refused.reason()))
                    .await?;
                Err(refusal_status(&refused, elements))
            }
        }
    }

    /// The series of an evaluation done.
    fn count_evaluated(&self, agency: &AgencyId, elements: u64, day_remaining: u64) {
        self.count(agency, "ok");
        self.0
            .metrics
            .elements
            .get_or_create(&vec![("node", agency.to_string())])
            .inc_by(elements);
        self.0
            .metrics
            .day_remaining
            .get_or_create(&vec![("node", agency.to_string())])
            .set(day_remaining as i64);
    }
}

/// The secret keys and the service's own certificate, each checked to be
/// this federation's and the key service's.
fn keys_and_identity(
    config: &KeyServiceConfig,
) -> Result<(SecretKeys, TlsIdentity), KeyServiceError> {
    let keys = SecretKeys::load(config.keys.get_ref())?;
    if keys.federation != config.federation {
        return Err(KeyServiceError::Federation {
            found: keys.federation.clone(),
            expected: config.federation.clone(),
        });
    }
    let tls = &config.tls;
    let own = TlsIdentity::load(tls.cert.get_ref(), tls.key.get_ref())?;
    let expected = Identity::Node(NodeIdentity {
        federation: config.federation.clone(),
        agency: expected_agency(),
    });
    if own.identity != expected {
        return Err(KeyServiceError::WrongCertificate {
            found: own.identity.to_string(),
            expected: expected.to_string(),
        });
    }
    Ok((keys, own))
}

impl RunningKeyService {
    /// Stops serving, writes the last entry and a signed checkpoint over it,
    /// and closes the log.
    pub async fn shutdown(self) -> Result<(), KeyServiceError> {
        self.shutdown.cancel();
        let served = self.server.drain(DRAIN_TIMEOUT).await;
        for w in self.workers {
            let _ = w.await;
        }
        let stop = Event::new("keyservice", Action::KeyServiceStop, "OK");
        server::close_log(&self.inner.store, &self.signer, stop).await?;
        // Connections still closing hold the service (and so the store's
        // file lock) for a moment: wait for them, so a restart in the same
        // process can open the store again.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.inner) > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if Arc::strong_count(&self.inner) > 1 {
            tracing::warn!(
                held = Arc::strong_count(&self.inner),
                "key service state still held after shutdown"
            );
        }
        Ok(served?)
    }

    /// Serves until `signal` resolves or the listener fails, then shuts down.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), KeyServiceError> {
        match self.server.first_failure(signal).await {
            Some(failed) => {
                let _ = self.shutdown().await;
                Err(failed.into())
            }
            None => self.shutdown().await,
        }
    }
}

/// The public key file (`oprf-keys.toml`) nodes pin, from a secret key file.
pub fn public_key_file(secret: &Path) -> Result<String, KeyFileError> {
    Ok(SecretKeys::load(secret)?.public_file())
}
