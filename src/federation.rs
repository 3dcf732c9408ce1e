//! Following the signed federation directory (docs/directory.md): which
//! version is in force, how a newer one is adopted, and the roster every
//! part of the node reads its peers from.
//!
//! A node with `[directory]` trusts its anchor first (a signed directory
//! the operator hands it, carrying its own signers' threshold), then
//! adopts any version that [`crate::directory::trust::admit`] accepts from
//! wherever it comes: published by an administrator, dropped into the
//! watched file, or served by a peer whose Hello named a newer version.
//! An adoption and a refusal are both audited; a refusal changes nothing.
//! What is kept (the versions that changed the signer set, the one in
//! force, the adoptions) is one store setting, written with the audit
//! entry in one transaction.
//!
//! Without `[directory]` the roster is `[[peers]]`, read once, and every
//! offer is refused.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost::Message;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::audit::{Action, Event, NODE};
use crate::directory::roster::{Member, Members, Roster};
use crate::directory::signed::{EnvelopeError, Signed};
use crate::directory::trust::{self, Refusal};
use crate::ids::{AgencyId, FederationName};
use crate::proto::v1::{
    Directory, DirectoryAdoption, DirectoryChain, DirectoryKeyService, DirectoryState,
    SignedDirectory,
};
use crate::store::{Store, StoreError};

/// Signer-set changes kept to serve peers that missed them.
const MAX_ROTATIONS: usize = 64;
/// Adoptions kept for `GetDirectory` and the console.
const MAX_ADOPTIONS: usize = 100;
/// Versions taken from one offer (a peer's answer, a publish).
pub const MAX_OFFERED: usize = 64;
/// Distinct refusals remembered so a peer offering the same bad version
/// at every probe is audited once.
const MAX_REMEMBERED_REFUSALS: usize = 256;

/// Where an offered directory came from (kept with its adoption).
#[derive(Debug, Clone)]
pub enum Source {
    Anchor,
    File(PathBuf),
    Publish(String),
    Peer(AgencyId),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anchor => f.write_str("anchor"),
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Publish(client) => write!(f, "publish:{client}"),
            Self::Peer(agency) => write!(f, "peer:{agency}"),
        }
    }
}

#[derive(Debug, Error)]
pub enum FederationError {
    #[error(
        "this node follows no directory: its peers are [[peers]] in node.toml (see [directory] in docs/directory.md)"
    )]
    NoDirectory,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("refused: {0}")]
    Refused(Refusal),
    #[error("directory anchor {path}: {reason}")]
    Anchor { path: PathBuf, reason: String },
    #[error("the stored directory chain is unreadable: {0}")]
    Chain(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the directory in force names besides its members: the key
/// service nodes call and the OPRF keys they pin, and the federation CA's
/// revocation list. Empty without a directory (the node's own files
/// name them then).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Services {
    pub key_service: Option<DirectoryKeyService>,
    /// PEM, or empty.
    pub federation_crl_pem: String,
}

/// The directory a node follows, and its roster.
pub struct Federation {
    store: Arc<Store>,
    roster: Roster,
    own: AgencyId,
    name: FederationName,
    /// `None`: no `[directory]`; the roster is `[[peers]]`.
    chain: Option<tokio::sync::Mutex<DirectoryChain>>,
    /// The version in force (0: none), for Hello and the delivery workers.
    version: tokio::sync::watch::Sender<u64>,
    /// When the version in force expires (Unix seconds).
    expires_at: std::sync::Mutex<Option<i64>>,
    /// How long past expiry the node keeps delivering (`[directory] grace_secs`).
    grace: Duration,
    refused: std::sync::Mutex<BTreeSet<(String, u64)>>,
    /// Followed by the token deriver and the TLS reloader.
    services: tokio::sync::watch::Sender<Arc<Services>>,
}

/// Where the directory in force stands at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Current {
        expires_at: i64,
    },
    /// Expired; still delivering until `hold_at`, warning.
    Grace {
        expires_at: i64,
        hold_at: i64,
    },
    /// Expired past its grace: nothing goes out until a fresh version.
    Holding {
        expires_at: i64,
        hold_at: i64,
    },
}

impl Expiry {
    pub fn name(self) -> &'static str {
        match self {
            Self::Current { .. } => "current",
            Self::Grace { .. } => "grace",
            Self::Holding { .. } => "holding",
        }
    }
}

impl Federation {
    /// A node without a directory: `peers` is its roster, for good.
    pub fn without_directory(
        store: Arc<Store>,
        roster: Roster,
        own: AgencyId,
        name: FederationName,
        peers: Vec<Member>,
    ) -> Self {
        roster.replace(Members::listed(peers));
        Self {
            store,
            roster,
            own,
            name,
            chain: None,
            version: tokio::sync::watch::Sender::new(0),
            expires_at: Default::default(),
            grace: Duration::ZERO,
            refused: Default::default(),
            services: Default::default(),
        }
    }

    /// A node following a directory: the stored chain, or the anchor when
    /// the store has none (or an older version than the anchor: the
    /// operator re-anchored the node).
    pub async fn open(
        store: Arc<Store>,
        roster: Roster,
        (own, name): (AgencyId, FederationName),
        anchor_path: PathBuf,
        grace: Duration,
    ) -> Result<Self, FederationError> {
        let anchor = read_anchor(&anchor_path, &name)?;
        let stored = match store.directory_chain()? {
            Some(bytes) => Some(
                DirectoryChain::decode(bytes.as_slice())
                    .map_err(|e| FederationError::Chain(e.to_string()))?,
            ),
            None => None,
        };
        let stored_current = stored.as_ref().and_then(current_of);
        if let Some(c) = &stored_current
            && c.directory().federation != name.as_str()
        {
            return Err(FederationError::Chain(format!(
                "the store follows federation {}'s directory; this node is in {name}",
                crate::text::quote(&c.directory().federation, 80)
            )));
        }
        let stored_version = stored_current.as_ref().map(|s| s.directory().version);
        let federation = Self {
            store,
            roster,
            own,
            name,
            chain: Some(tokio::sync::Mutex::new(stored.clone().unwrap_or_default())),
            version: tokio::sync::watch::Sender::new(0),
            expires_at: Default::default(),
            grace,
            refused: Default::default(),
            services: Default::default(),
        };
        if stored_version.is_none_or(|v| v < anchor.directory().version) {
            // Re-anchored by the operator: trust starts again from the
            // anchor (no earlier rotation is served), the history stays.
            let fresh = DirectoryChain {
                adopted: stored.map(|c| c.adopted).unwrap_or_default(),
                ..Default::default()
            };
            let chain = federation.put(fresh, anchor, &Source::Anchor).await?;
            if let Some(kept) = &federation.chain {
                *kept.lock().await = chain;
            }
        } else if let Some(current) = stored_current {
            federation.in_force(&current);
        }
        Ok(federation)
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The version in force (0: none), followed by the delivery workers.
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    pub fn version_feed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Offers `versions` (oldest first, as a peer serves them): each is
    /// adopted if it follows from the one in force. Returns the version in
    /// force after; the first refusal ends the offer (those before it
    /// stay adopted), audited unless a peer offered the same before.
    pub async fn offer(
        &self,
        versions: Vec<SignedDirectory>,
        source: Source,
    ) -> Result<u64, FederationError> {
        let Some(chain) = &self.chain else {
            return Err(FederationError::NoDirectory);
        };
        let mut chain = chain.lock().await;
        for envelope in versions.into_iter().take(MAX_OFFERED) {
            let (offered, checked) = match Signed::open(envelope) {
                Err(e) => (0, Err(FederationError::from(e))),
                Ok(signed) => {
                    let current = current_of(&chain).ok_or(FederationError::NoDirectory)?;
                    let now = crate::time::now_ms() / 1000;
                    let verdict = trust::admit(current.directory(), &signed, now);
                    let version = signed.directory().version;
                    let checked = verdict.map(|()| signed).map_err(FederationError::Refused);
                    (version, checked)
                }
            };
            match checked {
                Ok(signed) => {
                    let next = chain.clone();
                    *chain = self.put(next, signed, &source).await?;
                }
                // Two peers served the same new version: the second is
                // stale by the time it is read, not an attack.
                Err(FederationError::Refused(Refusal::NotNewer { .. }))
                    if matches!(source, Source::Peer(_) | Source::File(_)) => {}
                Err(e) => {
                    self.refuse(&e, offered, &source).await?;
                    return Err(e);
                }
            }
        }
        Ok(self.version())
    }

    /// Adopts `signed` on top of `chain`: stored with its audit entry, then
    /// in force. Returns the new chain.
    async fn put(
        &self,
        mut chain: DirectoryChain,
        signed: Signed,
        source: &Source,
    ) -> Result<DirectoryChain, FederationError> {
        let d = signed.directory();
        let before = current_of(&chain);
        let changes = before.as_ref().map(|b| member_changes(b.directory(), d));
        let rotated = before.is_some_and(|c| c.directory().signers != d.signers);
        if rotated {
            chain.rotations.push(signed.envelope().clone());
            let excess = chain.rotations.len().saturating_sub(MAX_ROTATIONS);
            chain.rotations.drain(..excess);
        }
        chain.current = Some(signed.envelope().clone());
        chain.adopted.insert(
            0,
            DirectoryAdoption {
                version: d.version,
                adopted_at: Some(crate::time::timestamp(SystemTime::now())),
                source: source.to_string(),
            },
        );
        chain.adopted.truncate(MAX_ADOPTIONS);
        let mut event = Event::new(NODE, Action::DirectoryAdopt, "OK")
            .detail("version", d.version)
            .detail("source", source)
            .detail("signed_by", signed_names(&signed).join(","))
            .detail("members", d.members.len())
            .detail(
                "expires",
                crate::time::format_ms(d.expires_at.saturating_mul(1000)),
            );
        // The version that began or ended each link, by name.
        for (what, agencies) in changes.into_iter().flatten() {
            event = event.detail(what, agencies.join(","));
        }
        self.store
            .put_directory_chain(&chain.encode_to_vec(), [event])
            .await?;
        self.in_force(&signed);
        tracing::info!(version = d.version, %source, "federation directory adopted");
        Ok(chain)
    }

    /// Puts `signed`'s membership in force for every reader of the roster.
    fn in_force(&self, signed: &Signed) {
        let d = signed.directory();
        *self.expires_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(d.expires_at);
        let mut members = Members::of_directory(d, &self.own);
        if let Some(Expiry::Holding { expires_at, .. }) = self.expiry(crate::time::now_ms() / 1000)
        {
            members.hold = Some(holding_reason(d.version, expires_at));
        }
        self.roster.replace(members);
        self.services.send_if_modified(|now| {
            let next = Services {
                key_service: d.key_service.clone(),
                federation_crl_pem: d.federation_crl_pem.clone(),
            };
            let changed = **now != next;
            if changed {
                *now = Arc::new(next);
            }
            changed
        });
        self.version.send_replace(d.version);
    }

    /// The key service and CRL of the directory in force, as they change.
    pub fn services(&self) -> tokio::sync::watch::Receiver<Arc<Services>> {
        self.services.subscribe()
    }

    /// Where the directory in force stands at `now` (Unix seconds);
    /// `None` without a directory.
    pub fn expiry(&self, now: i64) -> Option<Expiry> {
        let expires_at = (*self.expires_at.lock().unwrap_or_else(|p| p.into_inner()))?;
        let hold_at = expires_at.saturating_add(self.grace.as_secs() as i64);
        Some(if now < expires_at {
            Expiry::Current { expires_at }
        } else if now < hold_at {
            Expiry::Grace {
                expires_at,
                hold_at,
            }
        } else {
            Expiry::Holding {
                expires_at,
                hold_at,
            }
        })
    }

    /// Checks the expiry of the version in force every `every`: during
    /// the grace period the node warns at each check; past it, it holds
    /// everything outgoing (audited once) until a fresh version is
    /// adopted, which lifts the hold by itself (`in_force`).
    pub async fn watch_expiry(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        loop {
            let now = crate::time::now_ms() / 1000;
            let version = self.version();
            match self.expiry(now) {
                Some(Expiry::Grace {
                    expires_at,
                    hold_at,
                }) => tracing::warn!(
                    version,
                    expired = %crate::time::format_ms(expires_at * 1000),
                    holding_from = %crate::time::format_ms(hold_at * 1000),
                    "the federation directory has expired: still delivering during the grace period; publish a fresh version"
                ),
                Some(Expiry::Holding {
                    expires_at,
                    hold_at,
                }) if self.roster.now().hold.is_none() => {
                    tracing::error!(
                        version,
                        "the federation directory expired past its grace: holding everything outgoing until a fresh version arrives"
                    );
                    let mut members = (*self.roster.now()).clone();
                    members.hold = Some(holding_reason(version, expires_at));
                    self.roster.replace(members);
                    let event = Event::new(NODE, Action::DirectoryExpire, "HOLD")
                        .detail("version", version)
                        .detail("expired", crate::time::format_ms(expires_at * 1000))
                        .detail("hold_from", crate::time::format_ms(hold_at * 1000));
                    if let Err(e) = self.store.audit([event]).await {
                        tracing::error!(error = %e, "cannot audit the directory hold");
                    }
                }
                _ => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    async fn refuse(
        &self,
        e: &FederationError,
        offered: u64,
        source: &Source,
    ) -> Result<(), StoreError> {
        let key = (source.to_string(), offered);
        {
            let mut seen = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(source, Source::Peer(_) | Source::File(_)) && !seen.insert(key) {
                return Ok(());
            }
            if seen.len() > MAX_REMEMBERED_REFUSALS {
                seen.clear();
            }
        }
        tracing::warn!(%source, version = offered, reason = %e, "federation directory refused");
        let event = Event::new(NODE, Action::DirectoryRefuse, "REFUSED")
            .detail("version", offered)
            .detail("source", source)
            .detail("reason", e.to_string());
        self.store.audit([event]).await
    }

    /// What `GetDirectory` shows.
    pub async fn state(&self) -> DirectoryState {
        match &self.chain {
            None => DirectoryState::default(),
            Some(chain) => {
                let chain = chain.lock().await;
                DirectoryState {
                    current: chain.current.clone(),
                    adopted: chain.adopted.clone(),
                }
            }
        }
    }

    /// What a peer that follows `have` needs to catch up: the signer-set
    /// changes after it, oldest first, then the version in force.
    pub async fn since(&self, have: u64) -> Vec<SignedDirectory> {
        let Some(chain) = &self.chain else {
            return Vec::new();
        };
        let chain = chain.lock().await;
        let version =
            |e: &SignedDirectory| Signed::open(e.clone()).map_or(0, |s| s.directory().version);
        let mut out: Vec<SignedDirectory> = chain
            .rotations
            .iter()
            .filter(|e| version(e) > have)
            .cloned()
            .collect();
        if let Some(current) = chain.current.as_ref().filter(|c| version(c) > have)
            && out.last() != Some(current)
        {
            out.push(current.clone());
        }
        out.truncate(MAX_OFFERED);
        out
    }

    /// Re-reads `path` every `every`: a newer version dropped there is
    /// offered as a published one is. A file that does not parse is
    /// refused (audited once per version) and read again next time.
    pub async fn watch_file(
        self: Arc<Self>,
        path: PathBuf,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut seen: Option<(SystemTime, u64)> = None;
        loop {
            let stamp = std::fs::metadata(&path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            if stamp.is_some() && stamp != seen {
                seen = stamp;
                match std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| Signed::from_json(&t).map_err(|e| e.to_string()))
                {
                    Ok(signed) if signed.directory().version > self.version() => {
                        let _ = self
                            .offer(vec![signed.into_envelope()], Source::File(path.clone()))
                            .await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "directory file unreadable")
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Adopts what the delivery workers fetched from peers.
    pub async fn take_offers(
        self: Arc<Self>,
        mut offers: tokio::sync::mpsc::Receiver<crate::exchange::outbound::DirectoryOffer>,
        shutdown: CancellationToken,
    ) {
        loop {
            let (peer, versions) = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = offers.recv() => match next { Some(o) => o, None => return },
            };
            let _ = self.offer(versions, Source::Peer(peer)).await;
        }
    }

    pub fn federation(&self) -> &FederationName {
        &self.name
    }
}

/// The names of the signers of its own set that signed `signed`.
fn signed_names(signed: &Signed) -> Vec<String> {
    let set = signed.directory().signers.clone().unwrap_or_default();
    let by = signed.signed_by(&set);
    set.signers
        .iter()
        .filter(|s| {
            crate::ed25519::PublicKey::from_raw(&s.public_key).is_some_and(|k| by.contains(&k))
        })
        .map(|s| s.name.clone())
        .collect()
}

/// Who joined, left, was suspended or resumed from `before` to `after`
/// (only the kinds of change that happened).
fn member_changes(before: &Directory, after: &Directory) -> Vec<(&'static str, Vec<String>)> {
    let state = |d: &Directory| -> std::collections::BTreeMap<String, bool> {
        d.members
            .iter()
            .map(|m| (m.agency_id.clone(), m.suspended))
            .collect()
    };
    let (old, new) = (state(before), state(after));
    let pick = |f: &dyn Fn(Option<&bool>, Option<&bool>) -> bool| -> Vec<String> {
        old.keys()
            .chain(new.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|a| f(old.get(*a), new.get(*a)))
            .cloned()
            .collect()
    };
    [
        ("joined", pick(&|o, n| o.is_none() && n.is_some())),
        ("removed", pick(&|o, n| o.is_some() && n.is_none())),
        (
            "suspended",
            pick(&|o, n| o == Some(&false) && n == Some(&true)),
        ),
        (
            "resumed",
            pick(&|o, n| o == Some(&true) && n == Some(&false)),
        ),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect()
}

/// What a held entry says while the directory has expired past its grace.
fn holding_reason(version: u64, expires_at: i64) -> String {
    format!(
        "directory version {version} expired at {}: held until a fresh version arrives",
        crate::time::format_ms(expires_at.saturating_mul(1000))
    )
}

/// `[[peers]]` of `config`, as roster members.
pub fn configured_peers(config: &crate::config::NodeConfig) -> Vec<Member> {
    config
        .peers
        .iter()
        .map(|p| Member {
            agency: p.agency_id.get_ref().clone(),
            endpoints: vec![p.address.get_ref().clone()],
            kind: p.kind.as_ref().map(|k| *k.get_ref()),
            groups: Default::default(),
            suspended: false,
            key_sha256: None,
        })
        .collect()
}

/// The membership a node of `config` starts from, read from its files
/// alone (for offline checks: `policy validate`, `node check`): its
/// `[[peers]]`, or its directory anchor, or the watched file when that
/// holds a newer version the anchor's signers admit. A running node may
/// have adopted a newer one since.
pub fn starting_members(config: &crate::config::NodeConfig) -> Result<Members, FederationError> {
    let Some(d) = &config.directory else {
        return Ok(Members::listed(configured_peers(config)));
    };
    let mut signed = read_anchor(d.anchor.get_ref(), &config.federation)?;
    if let Some(file) = &d.file
        && let Ok(text) = std::fs::read_to_string(file.get_ref())
        && let Ok(newer) = Signed::from_json(&text)
        && trust::admit(signed.directory(), &newer, crate::time::now_ms() / 1000).is_ok()
    {
        signed = newer;
    }
    Ok(Members::of_directory(signed.directory(), config.agency()))
}

/// The envelope in force in `chain`, opened.
fn current_of(chain: &DirectoryChain) -> Option<Signed> {
    chain.current.clone().and_then(|c| Signed::open(c).ok())
}

/// The anchor file: a signed directory of this federation carrying the
/// threshold of its own signer set.
fn read_anchor(path: &std::path::Path, name: &FederationName) -> Result<Signed, FederationError> {
    let fail = |reason: String| FederationError::Anchor {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let signed = Signed::from_json(&text).map_err(|e| fail(e.to_string()))?;
    trust::anchor(&signed, name.as_str()).map_err(|e| fail(e.to_string()))?;
    Ok(signed)
}
