//! Federation lookup: "does anyone know this identifier?"
//!
//! The asking node normalizes and tokenizes locally; only tokens and person
//! encodings go to peers. A peer answers only about alerts it originated
//! (never about what it received from others) and only where its sharing
//! policy would send the asker that identifier type, rate-limits each asking peer,
//! and both sides log every lookup for the audit log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use thiserror::Error;
use time::OffsetDateTime;
use tonic::transport::Channel;

use crate::identity::{ClientIdentity, NodeIdentity, connect_channel};
use crate::ids::{AgencyId, FederationName};
use crate::proto::v1::peer_exchange_client::PeerExchangeClient;
use crate::proto::v1::{
    AgencyAnswer, LookupRecord, LookupRequest, LookupResponse, PeerLookupRequest,
    PeerLookupResponse,
};
use crate::pseudo::Pseudonymizer;
use crate::ratelimit::RateLimiter;
use crate::sharing::Sharing;
use crate::store::{Store, StoreError};
use crate::time::timestamp;
use crate::violation::FieldViolation;

#[derive(Debug, Error)]
pub enum LookupError {
    #[error("invalid request: {}", crate::violation::summary(.0))]
    Invalid(Vec<FieldViolation>),
    #[error("lookup rate limit reached for {0}; retry later")]
    RateLimited(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tokens(crate::tokens::TokenError),
}

/// Most tokens plus encodings a peer lookup may carry.
const MAX_PROBES: usize = 256;

pub struct Lookups {
    store: Arc<Store>,
    pseudo: Arc<Pseudonymizer>,
    /// Exact tokens from the OPRF key service, when configured.
    tokenizer: Arc<crate::tokens::Tokenizer>,
    own: AgencyId,
    federation: FederationName,
    /// Whom to ask, and where: the membership in force.
    peers: crate::directory::roster::Roster,
    tls: tokio::sync::watch::Receiver<Arc<rustls::ClientConfig>>,
    max_connection_age: Duration,
    sharing: Arc<Sharing>,
    timeout: Duration,
    max_identifiers: usize,
    /// Matches from the lower end of the review band are answered, with
    /// their score and evidence.
    possible_threshold: f64,
    clients: RateLimiter,
    askers: RateLimiter,
    /// Open channels to peers, with when each was opened: reused until
    /// the connection age limit, then dialled again (and CRL-checked).
    channels: Mutex<BTreeMap<AgencyId, (Channel, std::time::Instant)>>,
}

pub struct LookupSettings {
    pub timeout: Duration,
    /// A cached channel to a peer is dialled again after this long.
    pub max_connection_age: Duration,
    pub max_identifiers: usize,
    pub possible_threshold: f64,
    pub per_client_per_minute: u32,
    pub per_peer_per_minute: u32,
}

impl Lookups {
    #[allow(clippy::too_many_arguments)] // plain wiring, called once by `core::open`
    pub fn new(
        store: Arc<Store>,
        pseudo: Arc<Pseudonymizer>,
        tokenizer: Arc<crate::tokens::Tokenizer>,
        own: NodeIdentity,
        peers: crate::directory::roster::Roster,
        tls: tokio::sync::watch::Receiver<Arc<rustls::ClientConfig>>,
        sharing: Arc<Sharing>,
        s: LookupSettings,
    ) -> Self {
        Self {
            store,
            pseudo,
            tokenizer,
            own: own.agency,
            federation: own.federation,
            peers,
            tls,
            max_connection_age: s.max_connection_age,
            sharing,
            timeout: s.timeout,
            max_identifiers: s.max_identifiers,
            possible_threshold: s.possible_threshold,
            clients: RateLimiter::new(s.per_client_per_minute, s.per_client_per_minute),
            askers: RateLimiter::new(s.per_peer_per_minute, s.per_peer_per_minute),
            channels: Mutex::new(BTreeMap::new()),
        }
    }

    async fn channel(&self, peer: &AgencyId, address: &str) -> Result<Channel, String> {
        if let Some((c, opened)) = self
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
            && opened.elapsed() < self.max_connection_age
        {
            return Ok(c.clone());
        }
        let expected = NodeIdentity {
            federation: self.federation.clone(),
            agency: peer.clone(),
        };
        let tls = self.tls.borrow().clone();
        let pin = self.peers.now().get(peer).and_then(|m| m.key_sha256);
        let channel = connect_channel(address, (expected, pin), tls, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer.clone(), (channel.clone(), std::time::Instant::now()));
        Ok(channel)
    }

    async fn ask_peer(
        &self,
        peer: &AgencyId,
        address: &str,
        probe: &PeerLookupRequest,
    ) -> AgencyAnswer {
        let mut answer = AgencyAnswer {
            agency: peer.to_string(),
            ..Default::default()
        };
        let call = async {
            let channel = self.channel(peer, address).await?;
            let mut req = tonic::Request::new(probe.clone());
            req.set_timeout(self.timeout);
            PeerExchangeClient::new(channel)
                .lookup(req)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| {
                    // A broken channel is rebuilt on the next lookup.
                    self.channels
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(peer);
                    format!("{:?}: {}", s.code(), s.message())
                })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(r)) => {
                answer.answered = true;
                answer.matches = r.matches;
            }
            Ok(Err(e)) => answer.error = e,
            Err(_) => answer.error = "no answer in time".into(),
        }
        answer
    }

    /// A local client's lookup: this node's own holdings first, then one
    /// answer per asked peer (asked concurrently, each bounded in time).
    pub async fn ask(
        &self,
        client: &ClientIdentity,
        req: LookupRequest,
    ) -> Result<LookupResponse, LookupError> {
        if !self.clients.allow(client.name.as_str()) {
            return Err(LookupError::RateLimited(format!(
                "client `{}`",
                client.name
            )));
        }
        let violation = |field: String, description: String| {
            LookupError::Invalid(vec![FieldViolation { field, description }])
        };
        if req.identifiers.is_empty() {
            return Err(violation(
                "identifiers".into(),
                "at least one identifier is needed".into(),
            ));
        }
        if req.identifiers.len() > self.max_identifiers {
            return Err(violation(
                "identifiers".into(),
                format!("at most {} identifiers", self.max_identifiers),
            ));
        }
        if let Some(j) = req.identifiers.iter().position(|i| i.kind.is_none()) {
            return Err(violation(
                format!("identifiers[{j}]"),
                "identifier has no type".into(),
            ));
        }
        let members = self.peers.now();
        let mut targets = Vec::new();
        for (j, p) in req.peers.iter().enumerate() {
            let id = AgencyId::new(p.clone())
                .map_err(|e| violation(format!("peers[{j}]"), e.to_string()))?;
            let address = members
                .get(&id)
                .filter(|_| members.is_peer(&id))
                .and_then(|m| m.address())
                .ok_or_else(|| {
                    violation(
                        format!("peers[{j}]"),
                        members
                            .why_not(&id)
                            .unwrap_or_else(|| format!("`{id}` has no endpoint")),
                    )
                })?;
            targets.push((id, address.to_owned()));
        }
        if req.peers.is_empty() {
            targets = members
                .peers()
                .filter_map(|m| Some((m.agency.clone(), m.address()?.to_owned())))
                .collect();
        }
        let (mut tokens, encodings) = self
            .pseudo
            .identifiers(&req.identifiers, "identifiers", OffsetDateTime::now_utc())
            .map_err(LookupError::Invalid)?;
        // A lookup cannot wait for the key service to come back: it fails
        // (UNAVAILABLE, or RESOURCE_EXHAUSTED with the next allowance).
        self.tokenizer
            .complete_identifiers(&req.identifiers, &mut tokens)
            .await
            .map_err(LookupError::Tokens)?;
        let probe = PeerLookupRequest { tokens, encodings };
        // Our own alerts only: an alert we received is its origin's to
        // report (in that agency's answer), or it would be listed twice.
        let local = AgencyAnswer {
            agency: self.own.to_string(),
            answered: true,
            error: String::new(),
            matches: self.store.lookup(
                &probe.tokens,
                &probe.encodings,
                self.possible_threshold,
                Some(&self.own),
            )?,
        };
        let asked = futures_util::future::join_all(
            targets.iter().map(|(id, a)| self.ask_peer(id, a, &probe)),
        )
        .await;
        let matches = asked.iter().map(|a| a.matches.len()).sum::<usize>() + local.matches.len();
        self.log(format!("client:{}", client.name), &probe, matches)
            .await?;
        let mut answers = vec![local];
        answers.extend(asked);
        Ok(LookupResponse { answers })
    }

    /// A peer's lookup: only alerts this node originated and whose matching
    /// identifier the sharing policy would send the asking peer.
    pub async fn answer(
        &self,
        from: &NodeIdentity,
        req: PeerLookupRequest,
    ) -> Result<PeerLookupResponse, LookupError> {
        if !self.askers.allow(from.agency.as_str()) {
            return Err(LookupError::RateLimited(format!("peer `{}`", from.agency)));
        }
        if req.tokens.len() + req.encodings.len() > MAX_PROBES {
            return Err(LookupError::Invalid(vec![FieldViolation {
                field: "tokens".into(),
                description: format!("at most {MAX_PROBES} tokens and encodings together"),
            }]));
        }
        let mut matches = Vec::new();
        for m in self.store.lookup(
            &req.tokens,
            &req.encodings,
            self.possible_threshold,
            Some(&self.own),
        )? {
            // An answer discloses that we hold the identifier: only where the
            // policy would share it with the asker anyway (see `Sharing::may_disclose`).
            let Ok(id) = m.alert_id.parse() else { continue };
            let by = crate::matching::MatchedBy::found(m.fuzzy, m.evidence.as_ref());
            if let Some(record) = self.store.get(&id)?
                && self
                    .sharing
                    .may_disclose(&record, &from.agency, m.r#type, by)
            {
                matches.push(m);
            }
        }
        self.log(format!("peer:{}", from.agency), &req, matches.len())
            .await?;
        Ok(PeerLookupResponse { matches })
    }

    async fn log(
        &self,
        asked_by: String,
        probe: &PeerLookupRequest,
        matches: usize,
    ) -> Result<(), StoreError> {
        self.store
            .record_lookup(LookupRecord {
                at: Some(timestamp(SystemTime::now())),
                asked_by,
                tokens: probe.tokens.len() as u32,
                encodings: probe.encodings.len() as u32,
                matches: matches as u32,
            })
            .await
    }
}
