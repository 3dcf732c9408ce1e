//! Prometheus metrics of one node, and the plain-HTTP endpoint that exposes
//! them (`[metrics] listen`, loopback by default).
//!
//! Labels carry agency ids, identifier *types*, outcomes and listener names
//! only: never an alert id, a client's data or an identifier, so scraping
//! discloses nothing about cases.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Labels = Vec<(&'static str, String)>;

/// This process's resident memory in MiB (`VmRSS` from `/proc/self/status`;
/// 0 where that file does not exist), for the backlog test and bench.
pub fn resident_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~65 s: a healthy link answers in milliseconds, a backlog in minutes.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

fn answer_histogram() -> Histogram {
    // Around the directive's answer times: 1 min … 30 days, with 8 h, 3 days
    // and 7 days as bucket bounds.
    Histogram::new([
        60.0,
        600.0,
        3_600.0,
        14_400.0,
        28_800.0,
        86_400.0,
        259_200.0,
        604_800.0,
        1_209_600.0,
        2_592_000.0,
    ])
}

/// Every series the node exposes. Cheap to clone (each metric is an `Arc`).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Client submits by outcome (`ok`, `invalid`, `error`).
    pub submits: Family<Labels, Counter>,
    /// Envelopes acknowledged by each peer, by ack status.
    pub deliveries: Family<Labels, Counter>,
    /// Failed delivery connections or streams, per peer.
    pub delivery_failures: Family<Labels, Counter>,
    /// From queueing an envelope to the peer's ack, per peer.
    pub delivery_latency: Family<Labels, Histogram, fn() -> Histogram>,
    /// Envelopes received from each peer, by outcome (stored, duplicate, refused).
    pub received: Family<Labels, Counter>,
    /// Hits recorded, by identifier type.
    pub hits: Family<Labels, Counter>,
    /// Sharing decisions per peer (`share` or `deny`).
    pub policy_decisions: Family<Labels, Counter>,
    /// TLS handshakes refused (bad, revoked or expired certificate; timeouts), per listener.
    pub refused_handshakes: Family<Labels, Counter>,
    /// Envelopes waiting for each peer (set at every scrape).
    pub queue_depth: Family<Labels, Gauge>,
    /// Of those, the ones held until the peer understands them (set at
    /// every scrape, as the current delivery stream counted them).
    pub held: Family<Labels, Gauge>,
    /// Age in seconds of each peer's oldest undelivered envelope (0 when none).
    pub oldest_undelivered: Family<Labels, Gauge>,
    /// Alerts whose content was purged at their retention deadline.
    pub purged: Counter,
    /// Audit entries appended, by action.
    pub audit_entries: Family<Labels, Counter>,
    /// When this node's certificate and its CAs end, Unix seconds, by name.
    pub certificate_not_after: Family<Labels, Gauge>,
    /// When each peer's certificate (as last presented) ends, Unix seconds.
    pub peer_certificate_not_after: Family<Labels, Gauge>,
    /// Bytes the store occupies on disk (set at every scrape).
    pub store_bytes: Gauge,
    /// The federation directory in force: its version, when it expires
    /// (Unix seconds), and 1 while everything outgoing is held because it
    /// expired past its grace (set at every scrape; 0 without a directory).
    pub directory_version: Gauge,
    pub directory_expires_at: Gauge,
    pub directory_holding: Gauge,
    /// Bytes free for the store on its filesystem (set at every scrape).
    pub store_free_bytes: Gauge,
    /// Disclosure requests waiting for a decision, per peer and direction
    /// (`sent`, `received`), and those past their due time (set at every scrape).
    pub disclosure_open: Family<Labels, Gauge>,
    pub disclosure_overdue: Family<Labels, Gauge>,
    /// From a request to its final decision, per peer and direction.
    pub disclosure_answer: Family<Labels, Histogram, fn() -> Histogram>,
    /// Final decisions, per peer, direction and outcome.
    pub disclosure_decisions: Family<Labels, Counter>,
    /// Calls to the OPRF key service, by outcome (`ok`, `unavailable`,
    /// `over_budget`, `refused_proof`, `error`).
    pub keyservice_calls: Family<Labels, Counter>,
    /// Elements (identifiers × key versions) the key service evaluated for us.
    pub keyservice_elements: Counter,
    /// Own alerts stored while the key service was unreachable, waiting for
    /// their tokens (set at every scrape).
    pub tokens_pending: Gauge,
    /// The encryption epoch new data is sealed under (0: a store in clear).
    pub encryption_epoch: Gauge,
    /// When the next epoch starts, Unix seconds (0: a store in clear).
    pub encryption_next_epoch: Gauge,
    /// Federated statistics, per table and quarter (set at every scrape):
    /// releases published, and the epsilon spent and allowed, in
    /// thousandths (integers: Prometheus gauges here are integers).
    pub stats_released: Family<Labels, Gauge>,
    pub stats_epsilon_spent: Family<Labels, Gauge>,
    pub stats_epsilon_budget: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("casebridge");
        let m = Self {
            registry: Arc::new(Registry::default()),
            submits: Family::default(),
            deliveries: Family::default(),
            delivery_failures: Family::default(),
            delivery_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            received: Family::default(),
            hits: Family::default(),
            policy_decisions: Family::default(),
            refused_handshakes: Family::default(),
            queue_depth: Family::default(),
            held: Family::default(),
            oldest_undelivered: Family::default(),
            purged: Counter::default(),
            audit_entries: Family::default(),
            certificate_not_after: Family::default(),
            peer_certificate_not_after: Family::default(),
            store_bytes: Gauge::default(),
            directory_version: Gauge::default(),
            directory_expires_at: Gauge::default(),
            directory_holding: Gauge::default(),
            store_free_bytes: Gauge::default(),
            disclosure_open: Family::default(),
            disclosure_overdue: Family::default(),
            disclosure_answer: Family::new_with_constructor(answer_histogram as fn() -> Histogram),
            disclosure_decisions: Family::default(),
            keyservice_calls: Family::default(),
            keyservice_elements: Counter::default(),
            tokens_pending: Gauge::default(),
            encryption_epoch: Gauge::default(),
            encryption_next_epoch: Gauge::default(),
            stats_released: Family::default(),
            stats_epsilon_spent: Family::default(),
            stats_epsilon_budget: Family::default(),
        };
        register_exchange(&mut r, &m);
        register_node(&mut r, &m);
        register_disclosure_and_tokens(&mut r, &m);
        Self {
            registry: Arc::new(r),
            ..m
        }
    }

    /// Creates every series the node can ever report, at zero, so that a
    /// quiet node shows them from the start: an alert rule on `increase()`
    /// (the operator guide's "audit entries stalled") needs the series to
    /// exist before the first event.
    /// `audit_actions`: every action the audit log knows (a layer above).
    pub fn prime<'a>(
        &self,
        peers: &[crate::ids::AgencyId],
        audit_actions: impl IntoIterator<Item = &'a str>,
    ) {
        for outcome in ["ok", "invalid", "error"] {
            let _ = self.submits.get_or_create(&label("outcome", outcome));
        }
        self.prime_peers(peers);
        // Every identifier type the wire contract defines (0 is unspecified).
        for t in (1..64).filter(|t| crate::proto::v1::IdentifierType::try_from(*t).is_ok()) {
            let name = crate::proto::identifier_type_name(t);
            let _ = self.hits.get_or_create(&label("type", &name));
        }
        for listener in ["peer", "client"] {
            let _ = self
                .refused_handshakes
                .get_or_create(&label("listener", listener));
        }
        for action in audit_actions {
            let _ = self.audit_entries.get_or_create(&label("action", action));
        }
    }

    /// Every per-peer series of `peers` at zero (also for a member a newer
    /// directory adds, so its series exist before anything happens).
    pub fn prime_peers(&self, peers: &[crate::ids::AgencyId]) {
        for p in peers {
            for status in ["stored", "duplicate", "rejected"] {
                let _ = self
                    .deliveries
                    .get_or_create(&peer_and(p, "status", status));
            }
            for outcome in ["stored", "duplicate", "refused"] {
                let _ = self
                    .received
                    .get_or_create(&peer_and(p, "outcome", outcome));
            }
            for decision in ["share", "deny"] {
                let _ = self
                    .policy_decisions
                    .get_or_create(&peer_and(p, "decision", decision));
            }
            for direction in ["sent", "received"] {
                let labels = peer_and(p, "direction", direction);
                let _ = self.disclosure_open.get_or_create(&labels);
                let _ = self.disclosure_overdue.get_or_create(&labels);
                let _ = self.disclosure_answer.get_or_create(&labels);
                for outcome in ["approved", "partially_approved", "refused"] {
                    let mut l = labels.clone();
                    l.push(("outcome", outcome.to_owned()));
                    let _ = self.disclosure_decisions.get_or_create(&l);
                }
            }
            let _ = self.delivery_failures.get_or_create(&peer(p));
            let _ = self.delivery_latency.get_or_create(&peer(p));
            let _ = self.queue_depth.get_or_create(&peer(p));
            let _ = self.held.get_or_create(&peer(p));
            let _ = self.oldest_undelivered.get_or_create(&peer(p));
        }
    }

    /// The text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

pub fn peer(p: &impl ToString) -> Labels {
    vec![("peer", p.to_string())]
}

pub fn peer_and(p: &impl ToString, key: &'static str, value: &str) -> Labels {
    vec![("peer", p.to_string()), (key, value.to_owned())]
}

pub fn label(key: &'static str, value: &str) -> Labels {
    vec![(key, value.to_owned())]
}

/// Seconds since `t` (0 for the future or none).
pub fn age_secs(t: Option<SystemTime>) -> i64 {
    t.and_then(|t| SystemTime::now().duration_since(t).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// The text exposition of a process's series, produced at each scrape (a
/// node first sets the gauges it reads from its store).
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves, until `shutdown`:
/// - `GET /metrics`: the text exposition `render` gives;
/// - `GET /healthz`: 200 while the process serves (liveness);
/// - `GET /readyz`: 200 while `ready()`, 503 once shutdown has started
///   (readiness), for probes that cannot speak mutual TLS, like kubelet's.
pub async fn serve(
    listener: TcpListener,
    render: Render,
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (render, ready) = (render.clone(), ready.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (render, ready) = (render.clone(), ready.clone());
                async move {
                    let text = |status: StatusCode, body: &'static [u8]| {
                        Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from_static(body)))
                    };
                    match req.uri().path() {
                        "/metrics" => Response::builder()
                            .header(
                                "content-type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )
                            .body(Full::new(Bytes::from(render()))),
                        "/healthz" => text(StatusCode::OK, b"ok\n"),
                        "/readyz" if ready() => text(StatusCode::OK, b"ready\n"),
                        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, b"draining\n"),
                        _ => text(
                            StatusCode::NOT_FOUND,
                            b"try /metrics, /healthz or /readyz\n",
                        ),
                    }
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            // Bounded: a scraper that stalls cannot hold a task forever.
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

/// The key service's series (`casebridge keyservice run`): per node, what
/// it evaluated and what it refused, so an operator sees which member is
/// enumerating. Labels are agency ids and reasons, never elements.
#[derive(Clone)]
pub struct KeyServiceMetrics {
    registry: Arc<Registry>,
    /// Elements evaluated, per node.
    pub elements: Family<Labels, Counter>,
    /// Evaluate calls, per node and outcome (`ok`, `over_budget`, `invalid`,
    /// `unknown_key`).
    pub requests: Family<Labels, Counter>,
    /// Refused calls, per node and reason (`per_minute`, `per_day`,
    /// `batch_too_large`).
    pub refusals: Family<Labels, Counter>,
    /// Elements left of each node's daily budget after its last call.
    pub day_remaining: Family<Labels, Gauge>,
    /// TLS handshakes refused on the service's listener.
    pub refused_handshakes: Counter,
}

impl Default for KeyServiceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyServiceMetrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("casebridge_keyservice");
        let m = Self {
            registry: Arc::new(Registry::default()),
            elements: Family::default(),
            requests: Family::default(),
            refusals: Family::default(),
            day_remaining: Family::default(),
            refused_handshakes: Counter::default(),
        };
        r.register(
            "refused_handshakes",
            "TLS handshakes refused on the key service's listener",
            m.refused_handshakes.clone(),
        );
        r.register(
            "elements",
            "Blinded elements evaluated, per node",
            m.elements.clone(),
        );
        r.register(
            "requests",
            "Evaluate calls, per node and outcome",
            m.requests.clone(),
        );
        r.register(
            "refusals",
            "Evaluate calls refused for budget, per node and reason",
            m.refusals.clone(),
        );
        r.register(
            "day_remaining",
            "Elements left of a node's daily budget after its last call",
            m.day_remaining.clone(),
        );
        Self {
            registry: Arc::new(r),
            ..m
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Binds the metrics address; a non-loopback address is allowed but logged,
/// since the endpoint has no authentication.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics endpoint is not on loopback and has no authentication; restrict it with a firewall");
    }
    TcpListener::bind(addr).await
}

/// The series of submits, delivery and receipt, hits and policy decisions.
fn register_exchange(r: &mut Registry, m: &Metrics) {
    r.register("submits", "Client submits, by outcome", m.submits.clone());
    r.register(
        "deliveries",
        "Envelopes acknowledged by a peer, by ack status",
        m.deliveries.clone(),
    );
    r.register(
        "delivery_failures",
        "Failed delivery connections or streams, per peer (each is retried)",
        m.delivery_failures.clone(),
    );
    r.register(
        "delivery_latency_seconds",
        "Time from queueing an envelope to the peer's acknowledgement",
        m.delivery_latency.clone(),
    );
    r.register(
        "received",
        "Envelopes received from a peer, by outcome",
        m.received.clone(),
    );
    r.register("hits", "Hits recorded, by identifier type", m.hits.clone());
    r.register(
        "policy_decisions",
        "Sharing-policy decisions per peer",
        m.policy_decisions.clone(),
    );
    r.register(
        "refused_handshakes",
        "TLS handshakes refused, per listener",
        m.refused_handshakes.clone(),
    );
    r.register(
        "queue_depth",
        "Envelopes waiting in the outbox for a peer",
        m.queue_depth.clone(),
    );
    r.register(
        "outbox_held",
        "Envelopes waiting for a peer until it understands them (announces their capability)",
        m.held.clone(),
    );
    r.register(
        "oldest_undelivered_seconds",
        "Age of the oldest envelope waiting for a peer",
        m.oldest_undelivered.clone(),
    );
}

/// The node's own series: retention, audit, certificates, the store.
fn register_node(r: &mut Registry, m: &Metrics) {
    r.register(
        "purged_alerts",
        "Alerts whose content was purged at the retention deadline",
        m.purged.clone(),
    );
    r.register(
        "audit_entries",
        "Audit log entries appended, by action",
        m.audit_entries.clone(),
    );
    r.register(
        "certificate_not_after_seconds",
        "When this node's certificate or a CA it trusts ends (Unix time)",
        m.certificate_not_after.clone(),
    );
    r.register(
        "peer_certificate_not_after_seconds",
        "When the certificate a peer last presented ends (Unix time)",
        m.peer_certificate_not_after.clone(),
    );
    r.register(
        "store_bytes",
        "Bytes the store occupies on disk",
        m.store_bytes.clone(),
    );
    r.register(
        "directory_version",
        "Version of the federation directory in force (0: none)",
        m.directory_version.clone(),
    );
    r.register(
        "directory_expires_at_seconds",
        "When the federation directory in force expires (Unix time)",
        m.directory_expires_at.clone(),
    );
    r.register(
        "directory_holding",
        "1 while everything outgoing is held: the directory expired past its grace",
        m.directory_holding.clone(),
    );
    r.register(
        "store_free_bytes",
        "Bytes available to the store on its filesystem",
        m.store_free_bytes.clone(),
    );
}

/// Disclosure requests and the OPRF key service.
fn register_disclosure_and_tokens(r: &mut Registry, m: &Metrics) {
    r.register(
        "disclosure_requests_open",
        "Disclosure requests waiting for a decision, per peer and direction",
        m.disclosure_open.clone(),
    );
    r.register(
        "disclosure_requests_overdue",
        "Disclosure requests past their due time without a final decision, per peer and direction",
        m.disclosure_overdue.clone(),
    );
    r.register(
        "disclosure_answer_seconds",
        "Time from a disclosure request to its final decision, per peer and direction",
        m.disclosure_answer.clone(),
    );
    r.register(
        "disclosure_decisions",
        "Final decisions on disclosure requests, per peer, direction and outcome",
        m.disclosure_decisions.clone(),
    );
    r.register(
        "keyservice_calls",
        "Calls to the OPRF key service, by outcome",
        m.keyservice_calls.clone(),
    );
    r.register(
        "keyservice_elements",
        "Elements the OPRF key service evaluated for this node",
        m.keyservice_elements.clone(),
    );
    r.register(
        "tokens_pending",
        "Own alerts stored without their tokens while the key service was unreachable",
        m.tokens_pending.clone(),
    );
    r.register(
        "encryption_epoch",
        "The encryption epoch new data is sealed under (0: the store is in clear)",
        m.encryption_epoch.clone(),
    );
    r.register(
        "encryption_next_epoch_seconds",
        "When the next encryption epoch starts and the live data is sealed again, Unix seconds",
        m.encryption_next_epoch.clone(),
    );
    r.register(
        "stats_released",
        "Statistics releases published, per table and quarter (recounts included)",
        m.stats_released.clone(),
    );
    r.register(
        "stats_epsilon_spent_milli",
        "Privacy budget a table's quarter has spent, in thousandths of epsilon",
        m.stats_epsilon_spent.clone(),
    );
    r.register(
        "stats_epsilon_budget_milli",
        "Privacy budget the plan allows a table per quarter, in thousandths of epsilon",
        m.stats_epsilon_budget.clone(),
    );
}
