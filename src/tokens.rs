//! Exact tokens from the federation's OPRF key service (issue 18).
//!
//! A node configured with `[key_service]` derives its exact tokens here:
//! every identifier of one operation (a submit's subjects, a lookup, a
//! disclosure request) is blinded in one batch per key version valid now,
//! sent to the key service over mutual TLS, and the answer is verified
//! against the public key pinned in `oprf-keys.toml` before it is
//! unblinded (see [`crate::pseudo::oprf`]). Nothing here ever sends an
//! identifier or a token: only blinded elements. The key service's
//! replicas are tried in turn, the whole operation within one timeout
//! (`key_service.timeout_ms`).
//!
//! Concurrent operations share calls: while [`CALLS_IN_FLIGHT`] `Evaluate`
//! calls are in flight for a key version, the elements of every operation
//! that arrives queue up, and the next call carries all of them (up to
//! 1,024 elements) with one proof — group commit for evaluations, so a busy
//! node (32 clients submitting, an import's rows in flight) makes few
//! calls, each full, an idle one adds no waiting, and large batches still
//! overlap the node's proof checks with the key service's work.
//!
//! Failures are told apart because callers treat them differently: an
//! outage or an exhausted budget ([`TokenError::is_transient`]) lets a
//! submit store its alert with tokens pending (derived later by
//! `alert::pending`); a proof that does not verify is never retried
//! blindly, since it means the wrong key or a misbehaving key service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use time::OffsetDateTime;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::identity::{NodeIdentity, connect_channel};
use crate::ids::AgencyId;
use crate::metrics::Metrics;
use crate::proto::v1::key_service_client::KeyServiceClient;
use crate::proto::v1::{
    DirectoryKeyService, EvaluateRequest, Identifier, SharedSubject, Subject, Token,
};
use crate::pseudo::oprf::{Blinded, MAX_BATCH, OprfError, token_input};
use crate::pseudo::oprf_keys::{Pinned, PinnedKeys};
use crate::pseudo::{Normalized, Pseudonymizer};

/// The outgoing TLS config (the node certificate), reloaded with the CRLs.
pub type OutgoingTls = tokio::sync::watch::Receiver<Arc<rustls::ClientConfig>>;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the key service is unavailable: {0}")]
    Unavailable(String),
    #[error("the key service refused: over this node's budget: {message}")]
    OverBudget {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error(transparent)]
    Oprf(#[from] OprfError),
    #[error(
        "no OPRF public key in the pinned file is valid now: exact tokens cannot be derived (pinned versions: {0:?})"
    )]
    NoKey(Vec<u32>),
    #[error("the key service refused the request: {0}")]
    Refused(String),
}

impl TokenError {
    /// An outage or an exhausted budget: the same request will work later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TokenError::Unavailable(_) | TokenError::OverBudget { .. }
        )
    }

    /// The metrics label of this outcome.
    fn outcome(&self) -> &'static str {
        match self {
            TokenError::Unavailable(_) => "unavailable",
            TokenError::OverBudget { .. } => "over_budget",
            TokenError::Oprf(OprfError::ProofRefused(_)) => "refused_proof",
            _ => "error",
        }
    }
}

/// The connection to the key service's replicas, and the keys pinned.
struct Service {
    /// Replaced whole when a newer federation directory names other
    /// replicas or keys; an operation keeps the one it started with.
    at: Mutex<Arc<Replicas>>,
    identity: NodeIdentity,
    tls: OutgoingTls,
    timeout: Duration,
    /// Per key version, the operations waiting for the next call.
    queues: Mutex<HashMap<u32, Queue>>,
    metrics: Metrics,
}

/// Where the key service is and which keys its answers must verify under.
struct Replicas {
    pinned: PinnedKeys,
    addresses: Vec<String>,
    /// One channel per address, made on first use and dropped when it fails.
    channels: Mutex<Vec<Option<Channel>>>,
    /// The directory entry they came from (`None`: `[key_service]`).
    listed: Option<DirectoryKeyService>,
}

impl Replicas {
    fn new(
        pinned: PinnedKeys,
        addresses: Vec<String>,
        listed: Option<DirectoryKeyService>,
    ) -> Self {
        Self {
            channels: Mutex::new(vec![None; addresses.len()]),
            pinned,
            addresses,
            listed,
        }
    }
}

/// One operation's inputs, and where its tokens go.
struct Waiter {
    inputs: Vec<Vec<u8>>,
    answer: tokio::sync::oneshot::Sender<Result<Vec<[u8; 32]>, TokenError>>,
}

/// Calls in flight per key version at most; operations beyond wait and
/// share the next call.
pub const CALLS_IN_FLIGHT: usize = 4;

/// Operations waiting for one key version, and how many tasks are making
/// calls for it (each takes from the queue when its call returns).
#[derive(Default)]
struct Queue {
    waiting: Vec<Waiter>,
    calling: usize,
}

/// Where a node's exact tokens come from.
pub struct Tokenizer {
    pseudo: Arc<Pseudonymizer>,
    service: Option<Arc<Service>>,
    metrics: Metrics,
}

/// The settings a [`Tokenizer`] is made from (the node's `[key_service]`,
/// or the directory in force for `pinned` and `addresses`).
pub struct ServiceSettings {
    pub pinned: PinnedKeys,
    pub addresses: Vec<String>,
    /// The directory entry `pinned` and `addresses` came from, if any.
    pub listed: Option<DirectoryKeyService>,
    pub identity: NodeIdentity,
    pub tls: OutgoingTls,
    pub timeout: Duration,
}

impl Tokenizer {
    /// Without `service`, exact tokens are the key ring's alone (the
    /// Pseudonymizer makes them) and this adds nothing.
    pub fn new(
        pseudo: Arc<Pseudonymizer>,
        service: Option<ServiceSettings>,
        metrics: Metrics,
    ) -> Self {
        let service = service.map(|s| {
            Arc::new(Service {
                at: Mutex::new(Arc::new(Replicas::new(s.pinned, s.addresses, s.listed))),
                identity: s.identity,
                tls: s.tls,
                timeout: s.timeout,
                queues: Mutex::new(HashMap::new()),
                metrics: metrics.clone(),
            })
        });
        Self {
            pseudo,
            service,
            metrics,
        }
    }

    /// Whether exact tokens come from the key service.
    pub fn uses_key_service(&self) -> bool {
        self.service.is_some()
    }

    /// How many key service replicas this node lists (0 without one).
    pub fn replicas(&self) -> usize {
        self.service
            .as_ref()
            .map_or(0, |s| s.replicas().addresses.len())
    }

    /// The OPRF key versions valid now (empty without a key service).
    pub fn versions(&self) -> Vec<u32> {
        self.service
            .as_ref()
            .map(|s| {
                s.replicas()
                    .pinned
                    .active(OffsetDateTime::now_utc())
                    .map(|k| k.version)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Takes the key service's replicas and keys from `listed` (the
    /// directory in force) when they differ from those in use: operations
    /// already started finish with theirs. Returns whether anything
    /// changed; a node without a key service, or a list whose keys do not
    /// parse, changes nothing (the error says why).
    pub fn follow(
        &self,
        federation: &crate::ids::FederationName,
        listed: &DirectoryKeyService,
    ) -> Result<bool, String> {
        let Some(service) = &self.service else {
            return Ok(false);
        };
        if service.replicas().listed.as_ref() == Some(listed) {
            return Ok(false);
        }
        let pinned = PinnedKeys::from_directory(federation.clone(), &listed.keys)?;
        let next = Replicas::new(pinned, listed.endpoints.clone(), Some(listed.clone()));
        *service.at.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(true)
    }

    /// Adds the key service's tokens of each subject's identifiers to its
    /// pseudonymous subject (`shared[i]` belongs to `subjects[i]`): one
    /// evaluation per key version for all of them.
    pub async fn complete_subjects(
        &self,
        subjects: &[Subject],
        shared: &mut [SharedSubject],
    ) -> Result<(), TokenError> {
        if self.service.is_none() {
            return Ok(());
        }
        let per_subject: Vec<Vec<Normalized>> = subjects
            .iter()
            .map(|s| self.pseudo.normalized(&s.identifiers))
            .collect();
        let flat: Vec<&Normalized> = per_subject.iter().flatten().collect();
        let mut tokens = self.derive(&flat).await?.into_iter();
        for (i, ids) in per_subject.iter().enumerate() {
            let Some(target) = shared.get_mut(i) else {
                continue;
            };
            for _ in 0..ids.len() {
                if let Some(ts) = tokens.next() {
                    target.tokens.extend(ts);
                }
            }
            sort_tokens(&mut target.tokens);
        }
        Ok(())
    }

    /// Adds the key service's tokens of `identifiers` to `tokens` (a
    /// lookup, a disclosure request's verification).
    pub async fn complete_identifiers(
        &self,
        identifiers: &[Identifier],
        tokens: &mut Vec<Token>,
    ) -> Result<(), TokenError> {
        if self.service.is_none() {
            return Ok(());
        }
        let normalized = self.pseudo.normalized(identifiers);
        let refs: Vec<&Normalized> = normalized.iter().collect();
        for ts in self.derive(&refs).await? {
            tokens.extend(ts);
        }
        sort_tokens(tokens);
        Ok(())
    }

    /// The tokens of each value under every pinned version valid now, in
    /// the order given; the whole operation bounded by the configured
    /// timeout.
    async fn derive(&self, values: &[&Normalized]) -> Result<Vec<Vec<Token>>, TokenError> {
        let Some(service) = &self.service else {
            return Ok(vec![Vec::new(); values.len()]);
        };
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let replicas = service.replicas();
        let active: Vec<Pinned> = replicas
            .pinned
            .active(OffsetDateTime::now_utc())
            .copied()
            .collect();
        if active.is_empty() {
            return Err(TokenError::NoKey(replicas.pinned.versions()));
        }
        let inputs = values
            .iter()
            .map(|n| token_input(n))
            .collect::<Result<Vec<_>, _>>()?;
        let work = async {
            let mut out = vec![Vec::new(); values.len()];
            // Versions one after the other: during an overlap that is two
            // round trips, and a budget refusal of either stops both.
            for key in &active {
                let mut at = 0;
                for chunk in inputs.chunks(MAX_BATCH) {
                    let tokens = service.evaluate_shared(key, chunk.to_vec()).await?;
                    for (j, value) in tokens.into_iter().enumerate() {
                        out[at + j].push(Token {
                            r#type: values[at + j].kind as i32,
                            key_version: key.version,
                            value: value.to_vec(),
                        });
                    }
                    at += chunk.len();
                }
            }
            Ok::<_, TokenError>(out)
        };
        let result = match tokio::time::timeout(service.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(TokenError::Unavailable(format!(
                "no answer within {} ms",
                service.timeout.as_millis()
            ))),
        };
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        self.metrics
            .keyservice_calls
            .get_or_create(&crate::metrics::label("outcome", label))
            .inc();
        result
    }
}

impl Service {
    /// The replicas and keys in use now.
    fn replicas(&self) -> Arc<Replicas> {
        self.at.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `inputs` evaluated under `key` in the next call for that version,
    /// together with whatever other operations are waiting (see the module
    /// documentation). The call is made by a task of its own, so a caller
    /// that gives up (its timeout) never strands the others.
    async fn evaluate_shared(
        self: &Arc<Self>,
        key: &Pinned,
        inputs: Vec<Vec<u8>>,
    ) -> Result<Vec<[u8; 32]>, TokenError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let start = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            let q = queues.entry(key.version).or_default();
            q.waiting.push(Waiter { inputs, answer });
            let start = q.calling < CALLS_IN_FLIGHT;
            if start {
                q.calling += 1;
            }
            start
        };
        if start {
            let (service, key) = (self.clone(), *key);
            tokio::spawn(async move { service.drain(key).await });
        }
        answered
            .await
            .unwrap_or_else(|_| Err(TokenError::Unavailable("the evaluation task ended".into())))
    }

    /// Makes calls for `key` until nobody waits: each takes the waiting
    /// operations up to [`MAX_BATCH`] elements (at least one operation).
    async fn drain(self: Arc<Self>, key: Pinned) {
        loop {
            let batch: Vec<Waiter> = {
                let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                let q = queues.entry(key.version).or_default();
                // An operation whose caller gave up (its timeout) is not
                // evaluated: it would spend budget for nobody.
                q.waiting.retain(|w| !w.answer.is_closed());
                let mut total = 0;
                let mut take = 0;
                for w in &q.waiting {
                    if take > 0 && total + w.inputs.len() > MAX_BATCH {
                        break;
                    }
                    total += w.inputs.len();
                    take += 1;
                }
                if take == 0 {
                    q.calling -= 1;
                    return;
                }
                q.waiting.drain(..take).collect()
            };
            let inputs: Vec<Vec<u8>> = batch
                .iter()
                .flat_map(|w| w.inputs.iter().cloned())
                .collect();
            let result = self.evaluate(&key, inputs).await;
            let mut at = 0;
            for w in batch {
                let n = w.inputs.len();
                let _ = w.answer.send(match &result {
                    Ok(tokens) => Ok(tokens[at..at + n].to_vec()),
                    Err(e) => Err(e.clone()),
                });
                at += n;
            }
        }
    }

    /// One Evaluate call, trying each replica in turn until one answers.
    async fn evaluate(
        &self,
        key: &Pinned,
        inputs: Vec<Vec<u8>>,
    ) -> Result<Vec<[u8; 32]>, TokenError> {
        let replicas = self.replicas();
        // Curve arithmetic (tens of microseconds an element, up to 1,024
        // elements) runs off the async threads that serve the node.
        let blinded = tokio::task::spawn_blocking(move || Blinded::new(inputs))
            .await
            .map_err(|e| TokenError::Refused(format!("blinding task failed: {e}")))??;
        let request = EvaluateRequest {
            key_version: key.version,
            blinded_elements: blinded.elements().iter().map(|e| e.to_vec()).collect(),
        };
        let mut last = String::from("no address configured");
        for (i, address) in replicas.addresses.iter().enumerate() {
            let channel = match self.channel(&replicas, i).await {
                Ok(c) => c,
                Err(e) => {
                    last = format!("{address}: {e}");
                    continue;
                }
            };
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(self.per_attempt(&replicas));
            let answer = KeyServiceClient::new(channel).evaluate(call).await;
            match answer {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    self.metrics
                        .keyservice_elements
                        .inc_by(request.blinded_elements.len() as u64);
                    if resp.key_version != key.version {
                        return Err(TokenError::Refused(format!(
                            "answered key version {} for {}",
                            resp.key_version, key.version
                        )));
                    }
                    let key = *key;
                    return tokio::task::spawn_blocking(move || {
                        blinded.finish(key.version, &key.key, &resp.evaluated_elements, &resp.proof)
                    })
                    .await
                    .map_err(|e| TokenError::Refused(format!("verification task failed: {e}")))?
                    .map_err(TokenError::from);
                }
                Err(status) => match status.code() {
                    tonic::Code::ResourceExhausted => {
                        return Err(TokenError::OverBudget {
                            message: status.message().to_owned(),
                            retry_after: status
                                .get_details_retry_info()
                                .and_then(|r| r.retry_delay),
                        });
                    }
                    tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown
                    | tonic::Code::Internal => {
                        // This replica is down or restarting: the next one.
                        drop_channel(&replicas, i);
                        last = format!("{address}: {}", status.message());
                    }
                    _ => {
                        return Err(TokenError::Refused(format!(
                            "{}: {}",
                            crate::audit::code_name(status.code()),
                            status.message()
                        )));
                    }
                },
            }
        }
        Err(TokenError::Unavailable(last))
    }

    async fn channel(&self, replicas: &Replicas, i: usize) -> Result<Channel, String> {
        let lock = || replicas.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Some(c)) = lock().get(i).cloned() {
            return Ok(c);
        }
        let tls = self.tls.borrow().clone();
        let channel = connect_channel(
            &replicas.addresses[i],
            (self.identity.clone(), None),
            tls,
            self.per_attempt(replicas),
        )
        .await
        .map_err(|e| e.to_string())?;
        if let Some(kept) = lock().get_mut(i) {
            *kept = Some(channel.clone());
        }
        Ok(channel)
    }

    /// Time for one replica: a share of the whole timeout, so a replica
    /// that hangs leaves time to try the next.
    fn per_attempt(&self, replicas: &Replicas) -> Duration {
        self.timeout / (replicas.addresses.len().max(1) as u32)
    }
}

/// Forgets replica `i`'s channel (it failed): the next call dials again.
fn drop_channel(replicas: &Replicas, i: usize) {
    if let Some(kept) = replicas
        .channels
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(i)
    {
        *kept = None;
    }
}

/// Tokens in one canonical order, without repeats (two identifiers may
/// normalize to the same value).
fn sort_tokens(tokens: &mut Vec<Token>) {
    tokens.sort_by(|a, b| {
        (a.r#type, a.key_version, &a.value).cmp(&(b.r#type, b.key_version, &b.value))
    });
    tokens.dedup();
}

/// The key service's identity as a node expects it.
pub fn service_identity(
    federation: &crate::ids::FederationName,
    agency: &AgencyId,
) -> NodeIdentity {
    NodeIdentity {
        federation: federation.clone(),
        agency: agency.clone(),
    }
}
