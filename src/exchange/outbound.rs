//! Outbound delivery: one worker per configured peer streams that peer's
//! durable outbox and deletes each entry when the peer acknowledges it (which
//! the peer does only after its own durable write). A peer that is down keeps
//! its queue on disk; the worker reconnects with capped exponential backoff
//! and jitter and resends whatever is still unacknowledged. The receiver's
//! apply is idempotent, so a resend never creates a duplicate.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rand::Rng;
use thiserror::Error;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::needs;
use crate::audit::{Action, Event, NODE};
use crate::config::DeliveryConfig;
use crate::directory::roster::Members;
use crate::identity::{NodeIdentity, TlsError, connect_channel};
use crate::ids::{AgencyId, FederationName};
use crate::metrics::{self, Metrics};
use crate::proto::v1::envelope::Payload;
use crate::proto::v1::peer_exchange_client::PeerExchangeClient;
use crate::proto::v1::{
    AckStatus, DeliveryAck, Envelope, FetchDirectoryRequest, HelloRequest, ShareRecord, SharedAlert,
};
use crate::release::{Capabilities, Capability, PROTOCOL};
use crate::store::{Queued, Store, StoreError};

/// The longest refusal reason kept from a peer's ack (ours are far
/// shorter; a longer one would only fill the history and the status).
const MAX_REASON_CHARS: usize = 1000;

/// Delivery state of one peer, as shown by the admin API.
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    pub connected: bool,
    pub last_ack_at: Option<SystemTime>,
    /// The last time the peer answered: a Hello (a delivery stream's or an
    /// idle probe's) or an ack.
    pub last_contact_at: Option<SystemTime>,
    /// The last failure to reach the peer, cleared by the next contact: an
    /// error is shown only while it is current.
    pub last_error: Option<(String, SystemTime)>,
    /// The reason of the last envelope the peer refused for good (a fact
    /// about content, not the link: it stays).
    pub last_rejection: Option<(String, SystemTime)>,
    /// When the certificate the peer last presented to us ends (learnt from
    /// its calls: every peer greets us now and then).
    pub certificate_not_after: Option<SystemTime>,
    pub delivered_total: u64,
    /// Envelopes the peer refused for good (REJECTED): dropped, not retried.
    pub rejected_total: u64,
    /// Alert versions dropped unsent because their retention deadline passed
    /// while they waited.
    pub expired_total: u64,
    /// Connection attempts or streams that failed and were retried.
    pub retries: u64,
    /// Why nothing is delivered to it now: "`ngo` is not a member in
    /// directory version 7" (its outbox is held, not dropped).
    pub left: Option<String>,
    /// The directory version its last Hello answer named (0: none).
    pub directory_version: u64,
    /// Greet it at once (its Hello named a newer directory than ours).
    pub probe_now: bool,
    /// Why nothing is delivered to anyone now, though it stays a peer and
    /// is still greeted: the directory expired past its grace.
    pub paused: Option<String>,
    /// The peer's release and capabilities, from its last Hello answer.
    pub release: Option<String>,
    pub capabilities: Option<crate::release::Capabilities>,
    /// Outbox entries the current stream passed over and keeps, by why:
    /// "until ngo understands hit reviews" (the peer has not announced
    /// what they need), or "not understood by ngo: …" (its ack said so).
    /// They go by themselves once the peer announces what they need.
    pub held: std::collections::BTreeMap<String, u64>,
}

/// What is known of a peer's link, from facts only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A delivery stream is open, or the peer answered recently and nothing
    /// failed since.
    Up,
    /// The last attempt to reach it failed (the error is current).
    Down,
    /// Not reached yet since the start (or not for a long time).
    Unknown,
}

impl Link {
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Up => "up",
            Link::Down => "down",
            Link::Unknown => "unknown",
        }
    }
}

impl PeerState {
    /// The link's state at `now`: an answer counts for `fresh_for` (a few
    /// probe intervals), an error until the next answer clears it.
    pub fn link(&self, now: SystemTime, fresh_for: Duration) -> Link {
        if self.connected {
            return Link::Up;
        }
        if self.last_error.is_some() {
            return Link::Down;
        }
        match self.last_contact_at {
            Some(t) if now.duration_since(t).unwrap_or_default() <= fresh_for => Link::Up,
            _ => Link::Unknown,
        }
    }
}

struct PeerSlot {
    /// Where it listens (a newer directory may move it).
    address: Mutex<String>,
    /// The key its certificate must carry, when the directory pins one.
    pin: Mutex<Option<[u8; 32]>>,
    wake: Notify,
    state: Mutex<PeerState>,
}

impl PeerSlot {
    fn new(address: String) -> Self {
        Self {
            address: Mutex::new(address),
            pin: Mutex::new(None),
            wake: Notify::new(),
            state: Mutex::new(PeerState::default()),
        }
    }

    fn update(&self, f: impl FnOnce(&mut PeerState)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn address(&self) -> String {
        self.address
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why nothing goes to the peer now (it left the federation or is
    /// suspended), if so.
    fn left(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .left
            .clone()
    }

    /// Why nothing is sent now, whether the peer left or all delivery is
    /// paused (an expired directory), if so.
    fn held_back(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let left = state.left.as_ref();
        left.map(|why| format!("{why}: held until a directory lists it again"))
            .or_else(|| state.paused.clone())
    }
}

/// What starting a worker after `spawn_workers` takes, and those started.
type LateWorkers = (
    DeliveryContext,
    CancellationToken,
    Vec<tokio::task::JoinHandle<()>>,
);

/// Handle on all delivery workers: wakes them when new work is queued and
/// reports their state.
pub struct Outbound {
    /// Every peer a worker runs for: those of the membership in force, and
    /// those that left it since the start (their outbox is held).
    peers: RwLock<BTreeMap<AgencyId, Arc<PeerSlot>>>,
    /// How long a peer's last answer vouches for its link (see [`Link`]).
    fresh_for: Duration,
    /// What a worker started later needs (a member a newer directory
    /// adds), and the handles of those workers; set by `spawn_workers`.
    late: Mutex<Option<LateWorkers>>,
}

#[derive(Debug, Error)]
enum DeliveryError {
    #[error(transparent)]
    Connect(#[from] TlsError),
    #[error("{0}")]
    Rpc(String),
    #[error("peer answered Hello as {0}")]
    WrongPeer(String),
    #[error("peer answered protocol version {0}; this release speaks {PROTOCOL}")]
    Protocol(u32),
    #[error("peer's Hello answer: {0}")]
    Announcement(#[from] crate::release::AnnouncementError),
    #[error("peer acknowledged sequence {0} which was not in flight")]
    UnexpectedAck(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tonic::Status> for DeliveryError {
    fn from(s: tonic::Status) -> Self {
        DeliveryError::Rpc(format!("{:?}: {}", s.code(), s.message()))
    }
}

/// Everything a worker needs, shared by all workers.
#[derive(Clone)]
pub struct DeliveryContext {
    pub store: Arc<Store>,
    pub own: NodeIdentity,
    pub federation: FederationName,
    /// The dialling config in force (CRLs reload without a restart).
    pub tls: tokio::sync::watch::Receiver<Arc<rustls::ClientConfig>>,
    /// A delivery stream is closed and reopened after this long, so the peer
    /// is re-checked against the current CRL.
    pub max_connection_age: Duration,
    pub config: DeliveryConfig,
    pub max_message_bytes: usize,
    pub metrics: Metrics,
    /// Told when a peer acknowledges a disclosure request.
    pub disclosures: Arc<crate::disclosure::Disclosures>,
    /// What this node announces in Hello.
    pub capabilities: Capabilities,
    /// The directory this node follows, if any: its version goes in
    /// Hello, and newer ones peers serve go to adoption.
    pub directory: Option<DirectoryFeed>,
}

/// Directories a worker fetched from its peer, for adoption.
pub type DirectoryOffer = (AgencyId, Vec<crate::proto::v1::SignedDirectory>);

/// What delivery workers know of the directory in force, and where they
/// hand what they fetch.
#[derive(Clone)]
pub struct DirectoryFeed {
    /// The version in force (0 before any).
    pub version: tokio::sync::watch::Receiver<u64>,
    pub offers: mpsc::Sender<DirectoryOffer>,
}

impl Outbound {
    /// `probe_interval`: how often idle peers are greeted; an answer counts
    /// as current for three intervals.
    pub fn new(
        peers: impl IntoIterator<Item = (AgencyId, String)>,
        probe_interval: Duration,
    ) -> Self {
        Self {
            fresh_for: probe_interval * 3,
            peers: RwLock::new(
                peers
                    .into_iter()
                    .map(|(id, address)| (id, Arc::new(PeerSlot::new(address))))
                    .collect(),
            ),
            late: Mutex::new(None),
        }
    }

    fn slot(&self, peer: &AgencyId) -> Option<Arc<PeerSlot>> {
        self.peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
            .cloned()
    }

    /// Tells the workers of `peers` that their outbox has new entries.
    pub fn wake(&self, peers: &[AgencyId]) {
        for p in peers {
            if let Some(slot) = self.slot(p) {
                slot.wake.notify_one();
            }
        }
    }

    /// Follows a new membership: a worker starts for each new member,
    /// moved endpoints are dialled at the next connection, and a member
    /// that left or is suspended is delivered nothing more (its stream
    /// ends; what is queued for it stays, shown as held) until a newer
    /// membership lists it again.
    pub fn follow(&self, members: &Members) {
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        for m in members.all() {
            let Some(address) = m.address() else { continue };
            match peers.get(&m.agency) {
                Some(slot) => {
                    *slot.address.lock().unwrap_or_else(|e| e.into_inner()) = address.to_owned();
                    *slot.pin.lock().unwrap_or_else(|e| e.into_inner()) = m.key_sha256;
                }
                None => {
                    let slot = Arc::new(PeerSlot::new(address.to_owned()));
                    *slot.pin.lock().unwrap_or_else(|e| e.into_inner()) = m.key_sha256;
                    peers.insert(m.agency.clone(), slot.clone());
                    self.spawn_late(&m.agency, slot);
                }
            }
        }
        for (id, slot) in peers.iter() {
            let left = members.why_not(id);
            // Greet every peer at once: a peer that follows an older
            // version learns of this one now and fetches it (a version
            // published at one node spreads in round trips, not intervals).
            slot.update(|s| {
                s.left = left;
                s.paused = members.hold.clone();
                s.probe_now = true;
            });
            slot.wake.notify_one();
        }
    }

    /// Whether every worker has stopped sending for an expired directory
    /// (what status reports as holding: the workers follow the roster a
    /// moment after it changes).
    pub fn all_paused(&self) -> bool {
        let peers = self.peers.read().unwrap_or_else(|e| e.into_inner());
        peers.values().all(|slot| {
            let state = slot.state.lock().unwrap_or_else(|e| e.into_inner());
            state.paused.is_some()
        })
    }

    /// Asks `peer`'s worker to greet it now (its Hello named a newer
    /// directory than ours: the worker fetches it).
    pub fn probe_soon(&self, peer: &AgencyId) {
        if let Some(slot) = self.slot(peer) {
            slot.update(|s| s.probe_now = true);
            slot.wake.notify_one();
        }
    }

    /// The workers started after `spawn_workers`, for the shutdown to wait on.
    pub fn take_late_workers(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut late = self.late.lock().unwrap_or_else(|e| e.into_inner());
        late.as_mut()
            .map(|(_, _, h)| std::mem::take(h))
            .unwrap_or_default()
    }

    fn spawn_late(&self, peer: &AgencyId, slot: Arc<PeerSlot>) {
        let mut late = self.late.lock().unwrap_or_else(|e| e.into_inner());
        let Some((ctx, shutdown, handles)) = late.as_mut() else {
            return; // not started yet: `spawn_workers` starts it
        };
        if shutdown.is_cancelled() {
            return;
        }
        let worker = Worker {
            peer: peer.clone(),
            slot,
            ctx: ctx.clone(),
        };
        handles.push(tokio::spawn(worker.run(shutdown.clone())));
    }
}

/// The store tells the workers of every outbox write (see
/// [`crate::store::OutboxListener`]).
impl crate::store::OutboxListener for Outbound {
    fn queued(&self, peers: &[AgencyId]) {
        self.wake(peers);
    }
}

impl Outbound {
    /// Notes when the certificate `peer` presented stops being valid.
    pub fn note_certificate(&self, peer: &AgencyId, not_after: SystemTime) {
        if let Some(slot) = self.slot(peer) {
            slot.update(|s| s.certificate_not_after = Some(not_after));
        }
    }

    /// How long a peer's last answer vouches for its link.
    pub fn fresh_for(&self) -> Duration {
        self.fresh_for
    }

    pub fn states(&self) -> Vec<(AgencyId, String, PeerState)> {
        self.peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, slot)| {
                let state = slot.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
                (id.clone(), slot.address(), state)
            })
            .collect()
    }

    /// Starts one worker per peer; they stop when `shutdown` is cancelled.
    pub fn spawn_workers(
        &self,
        ctx: DeliveryContext,
        shutdown: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let peers = self.peers.read().unwrap_or_else(|e| e.into_inner());
        let handles = peers
            .iter()
            .map(|(id, slot)| {
                let worker = Worker {
                    peer: id.clone(),
                    slot: slot.clone(),
                    ctx: ctx.clone(),
                };
                tokio::spawn(worker.run(shutdown.clone()))
            })
            .collect();
        *self.late.lock().unwrap_or_else(|e| e.into_inner()) = Some((ctx, shutdown, Vec::new()));
        handles
    }
}

struct Worker {
    peer: AgencyId,
    slot: Arc<PeerSlot>,
    ctx: DeliveryContext,
}

/// Capped exponential backoff with full jitter (AWS architecture blog's
/// "full jitter"): spreads reconnects of many nodes after an outage.
struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    fn new(cfg: &DeliveryConfig) -> Self {
        let initial = Duration::from_millis(cfg.initial_backoff_ms.get() as u64);
        Self {
            next: initial,
            initial,
            max: Duration::from_millis(
                cfg.max_backoff_ms.get().max(cfg.initial_backoff_ms.get()) as u64
            ),
        }
    }
    fn reset(&mut self) {
        self.next = self.initial;
    }
    fn delay(&mut self) -> Duration {
        let cap = self.next;
        self.next = (self.next * 2).min(self.max);
        let ms = rand::rng().random_range(cap.as_millis() as u64 / 2..=cap.as_millis() as u64);
        Duration::from_millis(ms)
    }
}

impl Worker {
    async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(&self.ctx.config);
        let probe_every = self.ctx.config.probe_interval_secs.secs();
        // The first probe at once: after a start the state is known in
        // seconds, not at the next delivery.
        let mut next_probe = tokio::time::Instant::now();
        loop {
            // Stream only when there is something to send; meanwhile say
            // Hello now and then, so an idle peer's state is a fact.
            loop {
                if let Some(why) = self.slot.held_back() {
                    self.hold_all(why);
                } else {
                    match self.ctx.store.outbox_after(&self.peer, None, 1) {
                        Ok(batch) if !batch.is_empty() => break,
                        Ok(_) => {}
                        Err(e) => self.record_error(&e.to_string()),
                    }
                }
                if self.take_probe_now() {
                    next_probe = tokio::time::Instant::now();
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.slot.wake.notified() => {}
                    _ = tokio::time::sleep_until(next_probe) => {
                        if self.slot.left().is_none() {
                            self.probe().await;
                        }
                        next_probe = tokio::time::Instant::now() + probe_every;
                    }
                }
            }
            let result = self.session(&shutdown, &mut backoff).await;
            self.slot.update(|s| s.connected = false);
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(e) = result {
                let delay = backoff.delay();
                tracing::info!(peer = %self.peer, error = %crate::text::Escaped(&e.to_string()), retry_in = ?delay, "delivery interrupted");
                self.record_error(&e.to_string());
                self.slot.update(|s| s.retries += 1);
                self.ctx
                    .metrics
                    .delivery_failures
                    .get_or_create(&metrics::peer(&self.peer))
                    .inc();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    /// A peer that left (or is suspended), or all delivery paused for an
    /// expired directory: nothing is sent, and everything queued for the
    /// peer is shown as held with `why` (see [`PeerSlot::held_back`]).
    fn hold_all(&self, why: String) {
        let depth = self.ctx.store.outbox_depth(&self.peer);
        self.slot.update(|s| {
            s.held.clear();
            if depth > 0 {
                s.held.insert(why, depth);
            }
        });
    }

    /// Whether a Hello was asked for (see [`Outbound::probe_soon`]), clearing it.
    fn take_probe_now(&self) -> bool {
        let mut state = self.slot.state.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut state.probe_now)
    }

    fn record_error(&self, e: &str) {
        self.slot
            .update(|s| s.last_error = Some((e.to_owned(), SystemTime::now())));
    }

    /// The peer answered: its last error is history.
    fn contact(&self) {
        self.slot.update(|s| {
            s.last_contact_at = Some(SystemTime::now());
            s.last_error = None;
        });
    }

    /// Hello, and nothing else: is the peer there and who we expect?
    async fn probe(&self) {
        match self.connect().await {
            Ok(_) => self.contact(),
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %crate::text::Escaped(&e.to_string()), "peer unreachable");
                self.record_error(&e.to_string());
            }
        }
    }

    /// Dials the peer and says Hello: the peer must be who the config says
    /// and speak our protocol version.
    async fn connect(
        &self,
    ) -> Result<PeerExchangeClient<tonic::transport::Channel>, DeliveryError> {
        let ctx = &self.ctx;
        let expected = NodeIdentity {
            federation: ctx.federation.clone(),
            agency: self.peer.clone(),
        };
        let timeout = ctx.config.connect_timeout_secs.secs();
        let tls = ctx.tls.borrow().clone();
        let pin = *self.slot.pin.lock().unwrap_or_else(|e| e.into_inner());
        let channel = connect_channel(&self.slot.address(), (expected, pin), tls, timeout).await?;
        let mut client = PeerExchangeClient::new(channel)
            .max_decoding_message_size(ctx.max_message_bytes)
            .max_encoding_message_size(ctx.max_message_bytes);
        self.greet(&mut client).await?;
        Ok(client)
    }

    /// Hello on an open connection: the peer must be who the config says
    /// and speak our protocol; its release, capabilities and directory
    /// version are noted, and a newer directory is fetched. Said when
    /// connecting, and every probe interval while a stream stays open (so
    /// a busy link still learns of a new directory).
    async fn greet(
        &self,
        client: &mut PeerExchangeClient<tonic::transport::Channel>,
    ) -> Result<(), DeliveryError> {
        let ctx = &self.ctx;
        let mut hello = tonic::Request::new(HelloRequest {
            protocol_version: PROTOCOL.newest,
            oldest_protocol_version: PROTOCOL.oldest,
            release: crate::release::RELEASE.into(),
            capabilities: ctx.capabilities.names(),
            directory_version: ctx.directory.as_ref().map_or(0, |d| *d.version.borrow()),
            agency_id: ctx.own.agency.to_string(),
            federation: ctx.federation.to_string(),
            audit_checkpoint: ctx.store.audit_latest_checkpoint()?.map(|c| {
                crate::proto::v1::AuditAnchor {
                    sequence: c.seq,
                    hash: c.hash.to_vec(),
                    time: c.time,
                    signature: c.signature,
                }
            }),
        });
        hello.set_timeout(ctx.config.connect_timeout_secs.secs());
        let hello = client.hello(hello).await?.into_inner();
        if hello.agency_id != self.peer.as_str() || hello.federation != ctx.federation.as_str() {
            return Err(DeliveryError::WrongPeer(format!(
                "{}/{}",
                hello.federation, hello.agency_id
            )));
        }
        if !PROTOCOL.contains(hello.protocol_version) {
            return Err(DeliveryError::Protocol(hello.protocol_version));
        }
        // A peer of the previous release announces nothing: its set is known.
        let release = crate::release::announced_release(&hello.release)?.to_owned();
        let capabilities = Capabilities::announced(&hello.capabilities)?;
        let serves_directory = capabilities.has(Capability::Directory);
        self.slot.update(|s| {
            s.release = Some(release);
            s.capabilities = Some(capabilities);
            s.directory_version = hello.directory_version;
        });
        if serves_directory {
            self.fetch_directory(client, hello.directory_version).await;
        }
        Ok(())
    }

    /// When the peer follows a newer directory than ours, fetches it (and
    /// the signer-set changes since ours) and hands it on for adoption. A
    /// failure is logged only: the next Hello tries again.
    async fn fetch_directory(
        &self,
        client: &mut PeerExchangeClient<tonic::transport::Channel>,
        theirs: u64,
    ) {
        let Some(feed) = &self.ctx.directory else {
            return;
        };
        let ours = *feed.version.borrow();
        if theirs <= ours {
            return;
        }
        let mut request = tonic::Request::new(FetchDirectoryRequest { have_version: ours });
        request.set_timeout(self.ctx.config.connect_timeout_secs.secs());
        match client.fetch_directory(request).await {
            Ok(answer) => {
                let versions = answer.into_inner().versions;
                if feed.offers.try_send((self.peer.clone(), versions)).is_err() {
                    tracing::debug!(peer = %self.peer, "directory offers queue full; next Hello retries");
                }
            }
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %crate::text::Escaped(e.message()), "fetching the directory failed");
            }
        }
    }

    /// One connection: Hello, then stream the outbox until an error or shutdown.
    async fn session(
        &self,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), DeliveryError> {
        let mut client = self.connect().await?;
        // Counted afresh as this stream passes the outbox.
        self.slot.update(|s| s.held.clear());
        let aged = tokio::time::sleep(self.ctx.max_connection_age);
        tokio::pin!(aged);
        let window = self.ctx.config.window.get();
        let (tx, rx) = mpsc::channel::<Envelope>(window);
        let mut acks = client.deliver(ReceiverStream::new(rx)).await?.into_inner();
        self.slot.update(|s| s.connected = true);
        self.contact();
        tracing::info!(peer = %self.peer, "delivery stream open");
        let mut stream = Window::default();
        let probe_every = self.ctx.config.probe_interval_secs.secs();
        let mut greet =
            tokio::time::interval_at(tokio::time::Instant::now() + probe_every, probe_every);
        loop {
            if stream.in_flight.len() < window {
                self.refill(&mut stream, window, &tx).await?;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = greet.tick() => {
                    self.greet(&mut client).await?;
                    self.contact();
                }
                // Unacked envelopes stay in the outbox and go again on the
                // next stream; the receiver dedups.
                _ = &mut aged => return Ok(()),
                _ = self.slot.wake.notified(), if stream.in_flight.len() < window => {
                    // Left the federation: the stream ends, unacked
                    // entries stay queued (and held).
                    if self.slot.held_back().is_some() {
                        return Ok(());
                    }
                    if self.take_probe_now() {
                        self.greet(&mut client).await?;
                    }
                }
                ack = acks.message() => {
                    let Some(ack) = ack? else {
                        return Err(DeliveryError::Rpc("peer closed the delivery stream".into()));
                    };
                    let Some(pos) = stream.in_flight.iter().position(|s| s.seq == ack.sequence) else {
                        return Err(DeliveryError::UnexpectedAck(ack.sequence));
                    };
                    let sent = stream.in_flight.remove(pos).expect("position is in range");
                    self.contact();
                    self.acked(sent, &ack)?;
                    backoff.reset();
                }
            }
        }
    }

    /// Sends the next outbox entries, up to the window, once they are on
    /// disk; drops (and logs) alert versions whose retention passed while
    /// they waited.
    async fn refill(
        &self,
        stream: &mut Window,
        window: usize,
        tx: &mpsc::Sender<Envelope>,
    ) -> Result<(), DeliveryError> {
        let theirs = self.peer_capabilities();
        // Held entries take no room in the window: read on past them.
        while stream.in_flight.len() < window {
            let want = window - stream.in_flight.len();
            let batch = self.next_durable(stream, want).await?;
            if batch.is_empty() {
                break;
            }
            for queued in batch {
                stream.cursor = Some(queued.seq);
                if let Some(queued) = self.sendable(queued, &theirs)? {
                    self.send(stream, queued, tx).await?;
                }
            }
        }
        Ok(())
    }

    /// What the peer announced at this stream's Hello.
    fn peer_capabilities(&self) -> Capabilities {
        self.slot
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .capabilities
            .clone()
            .unwrap_or_else(Capabilities::unannounced)
    }

    /// Up to `want` outbox entries after the stream's cursor, once they are
    /// on disk.
    async fn next_durable(
        &self,
        stream: &mut Window,
        want: usize,
    ) -> Result<Vec<Queued>, DeliveryError> {
        let store = &self.ctx.store;
        let batch = store.outbox_after(&self.peer, stream.cursor, want)?;
        if let Some(last) = batch.last().map(|q| q.seq)
            && last > stream.durable_upto
        {
            // Only what is on disk leaves: an entry is visible here as
            // soon as its transaction commits, before the flush that
            // acknowledges it. Sending it earlier could give a peer an
            // alert that a crash then erases at the origin, which
            // could never retract it. One flush covers everything
            // visible now, so a backlog costs one wait, not one per batch.
            let visible = store.outbox_last_seq(&self.peer)?.unwrap_or(last);
            store.durable().await?;
            stream.durable_upto = visible.max(last);
        }
        Ok(batch)
    }

    /// The entry, if it goes now: content past its retention deadline
    /// never leaves (a tombstone still goes, it only removes), and what
    /// the peer has not announced it understands stays, counted as held.
    fn sendable(
        &self,
        queued: Queued,
        theirs: &Capabilities,
    ) -> Result<Option<Queued>, DeliveryError> {
        if let Payload::Alert(a) = &queued.payload
            && !a.retracted
            && crate::store::expired(a.content.as_ref(), SystemTime::now())
        {
            self.drop_expired(&queued, a)?;
            return Ok(None);
        }
        if let Some(first) = theirs.missing(&needs::needed(&queued.payload)).first() {
            let why = format!("until {} understands {}", self.peer, first.describe());
            self.slot.update(|s| *s.held.entry(why).or_default() += 1);
            return Ok(None);
        }
        Ok(Some(queued))
    }

    /// Sends one entry on the stream, in flight until its ack.
    async fn send(
        &self,
        stream: &mut Window,
        queued: Queued,
        tx: &mpsc::Sender<Envelope>,
    ) -> Result<(), DeliveryError> {
        let Queued {
            seq,
            payload,
            queued_at,
            rule,
            disclosed,
        } = queued;
        stream
            .in_flight
            .push_back(Sent::new(seq, &payload, queued_at, rule, disclosed));
        // What the receiver must understand, named: a receiver that lacks
        // one answers "not understood" rather than misapplying it.
        let requires = needs::needed(&payload)
            .into_iter()
            .map(|c| c.name().to_owned())
            .collect();
        let envelope = Envelope {
            sequence: seq,
            payload: Some(payload),
            queued_at: None,
            rule: String::new(),
            disclosed: String::new(),
            requires,
        };
        if tx.send(envelope).await.is_err() {
            return Err(DeliveryError::Rpc("delivery stream closed".into()));
        }
        Ok(())
    }

    /// Removes a queued alert version whose retention deadline passed, unsent.
    fn drop_expired(&self, queued: &Queued, a: &SharedAlert) -> Result<(), DeliveryError> {
        let share = ShareRecord {
            peer: self.peer.to_string(),
            alert_id: a.id.clone(),
            version: a.version,
            retraction: a.retracted,
            rule: queued.rule.clone(),
            disclosed: queued.disclosed.clone(),
            queued_at: queued.queued_at,
            acked_at: None,
            status: "expired".into(),
        };
        self.ctx.store.outbox_done(
            &self.peer,
            queued.seq,
            Some(&share),
            Event::new(NODE, Action::AlertShare, "expired")
                .object(a.id.clone())
                .detail("peer", &self.peer)
                .detail("version", a.version)
                .detail("reason", "retention deadline passed while queued; not sent"),
        )?;
        self.slot.update(|s| s.expired_total += 1);
        tracing::info!(peer = %self.peer, alert = %a.id, "retention deadline passed while queued; dropped");
        Ok(())
    }

    /// The peer acknowledged `sent`: drop it from the outbox, log the share,
    /// count it.
    fn acked(&self, sent: Sent, ack: &DeliveryAck) -> Result<(), DeliveryError> {
        let ctx = &self.ctx;
        let now = SystemTime::now();
        if ack.status == AckStatus::NotUnderstood as i32 {
            // Kept in the outbox: it goes again once the peer understands it.
            let reason: String = ack.reason.chars().take(MAX_REASON_CHARS).collect();
            tracing::info!(peer = %self.peer, sequence = ack.sequence, reason = %crate::text::Escaped(&reason), "peer does not understand an envelope yet; held");
            let why = format!("not understood by {}: {reason}", self.peer);
            self.slot.update(|s| {
                s.last_ack_at = Some(now);
                *s.held.entry(why).or_default() += 1;
            });
            return Ok(());
        }
        let status = AckStatus::try_from(ack.status).map_or("unknown".to_string(), |s| {
            s.as_str_name()
                .trim_start_matches("ACK_STATUS_")
                .to_ascii_lowercase()
        });
        // Not synced: if a crash loses the removal, the record and the
        // entry, the envelope goes again and its new ack records them
        // then, so a disclosure is never unlogged.
        ctx.store.outbox_done(
            &self.peer,
            ack.sequence,
            sent.share(&self.peer, &status, now).as_ref(),
            sent.event(&self.peer, &status),
        )?;
        ctx.metrics
            .deliveries
            .get_or_create(&metrics::peer_and(&self.peer, "status", &status))
            .inc();
        if let Some(q) = sent.queued_at
            && let Ok(d) = now.duration_since(crate::time::system_time_lossy(&q))
        {
            ctx.metrics
                .delivery_latency
                .get_or_create(&metrics::peer(&self.peer))
                .observe(d.as_secs_f64());
        }
        // The reason is the peer's text: bounded before it is kept.
        let reason: String = ack.reason.chars().take(MAX_REASON_CHARS).collect();
        if sent.kind == Action::DisclosureRequestSend
            && let Some(id) = sent.objects.first().and_then(|o| o.parse().ok())
        {
            let rejected = (ack.status == AckStatus::Rejected as i32).then_some(reason.as_str());
            ctx.disclosures
                .delivered(&id, rejected, ack.due_at.as_ref())?;
        }
        if ack.status == AckStatus::Rejected as i32 {
            tracing::warn!(peer = %self.peer, sequence = ack.sequence, reason = %crate::text::Escaped(&reason), "peer rejected envelope");
            self.slot.update(|s| {
                s.last_ack_at = Some(now);
                s.last_rejection = Some((reason.clone(), now));
                s.rejected_total += 1;
            });
        } else {
            self.slot.update(|s| {
                s.last_ack_at = Some(now);
                s.delivered_total += 1;
            });
        }
        Ok(())
    }
}

/// One delivery stream's progress through the outbox.
#[derive(Default)]
struct Window {
    /// Each envelope sent and not yet acked (payload dropped: the audit
    /// entry at its ack needs only ids, rule and levels).
    in_flight: VecDeque<Sent>,
    /// The last outbox sequence read.
    cursor: Option<u64>,
    /// Outbox entries up to this sequence are known to be on disk.
    durable_upto: u64,
}

/// What the audit entry for an acknowledged envelope needs.
struct Sent {
    seq: u64,
    queued_at: Option<pbjson_types::Timestamp>,
    /// The audit action of its ack: `alert.share`, `hit.notify`, `hit.review_send`.
    kind: Action,
    retraction: bool,
    objects: Vec<String>,
    version: u64,
    rule: String,
    disclosed: String,
}

impl Sent {
    fn new(
        seq: u64,
        payload: &Payload,
        queued_at: Option<pbjson_types::Timestamp>,
        rule: String,
        disclosed: String,
    ) -> Self {
        let (kind, objects, version, retraction) = match payload {
            Payload::Alert(a) => (
                Action::AlertShare,
                vec![a.id.clone()],
                a.version,
                a.retracted,
            ),
            Payload::HitNotice(n) => (
                Action::NoticeSend,
                vec![n.our_alert_id.clone(), n.your_alert_id.clone()],
                0,
                false,
            ),
            Payload::HitReview(r) => (
                Action::ReviewSend,
                vec![r.our_alert_id.clone(), r.your_alert_id.clone()],
                r.review.as_ref().map_or(0, |r| r.revision),
                false,
            ),
            Payload::DisclosureRequest(r) => (
                Action::DisclosureRequestSend,
                vec![r.id.clone(), r.holder_alert_id.clone()],
                0,
                false,
            ),
            Payload::DisclosureDecision(d) => (
                Action::DisclosureDecisionSend,
                [d.request_id.clone(), d.release_id.clone()]
                    .into_iter()
                    .filter(|o| !o.is_empty())
                    .collect(),
                0,
                false,
            ),
            Payload::ClarificationAnswer(a) => (
                Action::DisclosureAnswerSend,
                vec![a.request_id.clone()],
                0,
                false,
            ),
            Payload::Release(r) => (
                Action::ReleaseSend,
                vec![r.id.clone(), r.request_id.clone(), r.alert_id.clone()],
                r.alert_version,
                false,
            ),
            Payload::ReleaseWithdrawal(w) => (
                Action::ReleaseWithdrawSend,
                vec![w.release_id.clone(), w.request_id.clone()],
                0,
                false,
            ),
            Payload::StatsReports(s) => (
                Action::StatsReportsSend,
                s.release.iter().map(crate::analytics::label).collect(),
                u64::from(s.chunk),
                false,
            ),
            Payload::StatsAggregate(s) => (
                Action::StatsSumSend,
                s.release.iter().map(crate::analytics::label).collect(),
                0,
                false,
            ),
            Payload::StatsCall(s) => (
                Action::StatsCallSend,
                s.release.iter().map(crate::analytics::label).collect(),
                0,
                false,
            ),
        };
        Self {
            seq,
            queued_at,
            kind,
            retraction,
            objects,
            version,
            rule,
            disclosed,
        }
    }

    /// What the peer got of an alert (nothing to record for a notice or a review).
    fn share(&self, peer: &AgencyId, status: &str, at: SystemTime) -> Option<ShareRecord> {
        (self.kind == Action::AlertShare).then(|| ShareRecord {
            peer: peer.to_string(),
            alert_id: self.objects[0].clone(),
            version: self.version,
            retraction: self.retraction,
            rule: self.rule.clone(),
            disclosed: self.disclosed.clone(),
            queued_at: self.queued_at,
            acked_at: Some(crate::time::timestamp(at)),
            status: status.into(),
        })
    }

    /// `alert.share` / `hit.notify` / `hit.review_send`, with the peer's
    /// ack status as outcome.
    fn event(&self, peer: &AgencyId, status: &str) -> Event {
        let mut e = Event::new(NODE, self.kind, status).detail("peer", peer);
        e.objects = self.objects.clone();
        match self.kind {
            Action::AlertShare => e = e.detail("version", self.version),
            Action::ReviewSend => e = e.detail("revision", self.version),
            _ => {}
        }
        if !self.rule.is_empty() {
            e = e.detail("rule", &self.rule);
        }
        e.detail("disclosed", &self.disclosed)
    }
}
