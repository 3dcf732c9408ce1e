//! Test harness: a federation of real nodes (real certificates, real mTLS,
//! real sled stores in a temp dir) on 127.0.0.1 ports, started in one call.

#![allow(dead_code)]

pub mod fixture;
pub mod keyservice;
pub mod operators;
pub mod postgres;
pub mod previous;
pub mod process;
pub mod proxy;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use casebridge::certs::{
    FaultyClient, FederationLayout, NodeAddrs, init_federation, write_faulty_client,
};
use casebridge::client::NodeClient;
use casebridge::config::NodeConfig;
use casebridge::identity::{
    ClientIdentity, NodeIdentity, TlsIdentity, client_tls_config, connect_channel,
    install_crypto_provider,
};
use casebridge::ids::{AgencyId, ClientName, FederationName};
use casebridge::node::{Listeners, RunningNode, start};
use casebridge::proto::v1::envelope::Payload;
use casebridge::proto::v1::peer_exchange_client::PeerExchangeClient;
use casebridge::proto::v1::{
    Alert, AlertContent, AlertDraft, Category, DeliveryAck, Envelope, GetStatusRequest,
    HelloRequest, Identifier, ListAlertsRequest, ListPeersRequest, Location, NodeStatus,
    PeerStatus, PersonName, Phone, Severity, Subject, SubjectRole, SubmitAlertRequest, Tlp,
    identifier::Kind,
};
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub const FEDERATION: &str = "test.casebridge";
/// Upper bound for anything a test waits for; generous for a loaded 2-core CI box.
pub const WAIT: Duration = Duration::from_secs(30);

type Configure = Box<dyn Fn(&AgencyId, &mut NodeConfig)>;

/// Which of a node's two listeners a hand-built channel dials.
#[derive(Debug, Clone, Copy)]
pub enum Listener {
    Peer,
    Client,
}

pub struct TestFederation {
    pub dir: tempfile::TempDir,
    pub layout: FederationLayout,
    nodes: BTreeMap<AgencyId, RunningNode>,
    configure: Configure,
    /// Listeners bound for nodes not started yet (see [`Self::reserve`]):
    /// their ports stay theirs, so no test running beside takes them.
    reserved: BTreeMap<AgencyId, Listeners>,
}

/// A loopback port free now (the servers bind it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn agency(s: &str) -> AgencyId {
    AgencyId::new(s).unwrap()
}

/// Who `a`'s client `name` is, in this test federation.
pub fn client_identity(a: &str, name: &str) -> ClientIdentity {
    ClientIdentity {
        federation: FederationName::new(FEDERATION).unwrap(),
        agency: agency(a),
        name: ClientName::new(name).unwrap(),
    }
}

/// The connection of client `name` of agency `a`, as the node's services
/// see it on a request (for calling them in-process, as the console does).
pub fn client_conn(a: &str, name: &str) -> casebridge::identity::ConnInfo {
    casebridge::identity::ConnInfo {
        identity: casebridge::identity::Identity::Client(client_identity(a, name)),
        remote: "127.0.0.1:1".parse().unwrap(),
        not_after: None,
        key_sha256: None,
    }
}

/// The Hello a peer node `a` of this test federation opens with.
pub fn hello_as(a: &str) -> HelloRequest {
    use casebridge::release::{Capabilities, PROTOCOL, RELEASE};
    HelloRequest {
        protocol_version: PROTOCOL.newest,
        oldest_protocol_version: PROTOCOL.oldest,
        agency_id: a.into(),
        federation: FEDERATION.into(),
        audit_checkpoint: None,
        release: RELEASE.into(),
        capabilities: Capabilities::ours().names(),
        directory_version: 0,
    }
}

/// The Hello a node of a release from before announcements (0.3.0) opens
/// with: protocol 1, nothing announced.
pub fn hello_as_unannounced_release(a: &str) -> HelloRequest {
    HelloRequest {
        protocol_version: 1,
        agency_id: a.into(),
        federation: FEDERATION.into(),
        ..Default::default()
    }
}

impl TestFederation {
    /// Generates the PKI and starts every node.
    pub async fn start(agencies: &[&str]) -> Self {
        Self::start_with(agencies, &[], |_, _| {}).await
    }

    /// Generates the PKI for `agencies`, starts all but `down`, and lets
    /// `configure` adjust each node's config before it starts.
    pub async fn start_with(
        agencies: &[&str],
        down: &[&str],
        configure: impl Fn(&AgencyId, &mut NodeConfig) + 'static,
    ) -> Self {
        Self::build(agencies, down, configure, false).await
    }

    /// Generates the PKI for `agencies` and binds their listeners, but
    /// starts none: the test first writes what needs their addresses (a
    /// federation directory naming their ports), then calls `start_node`,
    /// which serves on the listeners kept (until then a connection is
    /// taken by the kernel and waits, rather than refused).
    pub async fn reserve(
        agencies: &[&str],
        configure: impl Fn(&AgencyId, &mut NodeConfig) + 'static,
    ) -> Self {
        Self::build(agencies, agencies, configure, true).await
    }

    async fn build(
        agencies: &[&str],
        down: &[&str],
        configure: impl Fn(&AgencyId, &mut NodeConfig) + 'static,
        keep_down: bool,
    ) -> Self {
        install_crypto_provider();
        // `CASEBRIDGE_TEST_LOG=casebridge=info cargo test …` shows the nodes' logs.
        if let Ok(filter) = std::env::var("CASEBRIDGE_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::Builder::new()
            .prefix("casebridge-test-")
            .tempdir()
            .unwrap();
        let mut listeners = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for a in agencies {
            let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.insert(
                agency(a),
                NodeAddrs {
                    peer: peer.local_addr().unwrap(),
                    client: client.local_addr().unwrap(),
                    console: None,
                    intake: None,
                },
            );
            listeners.insert(agency(a), Listeners { peer, client });
        }
        let federation = FederationName::new(FEDERATION).unwrap();
        let layout = init_federation(&federation, &addrs, &dir.path().join("pki")).unwrap();
        unseal(&layout);
        let mut fed = Self {
            dir,
            layout,
            nodes: BTreeMap::new(),
            configure: Box::new(configure),
            reserved: BTreeMap::new(),
        };
        for (id, l) in listeners {
            if down.contains(&id.as_str()) {
                if keep_down {
                    fed.reserved.insert(id, l);
                }
                continue; // else dropped: the port is closed until start_node
            }
            let config = fed.config(id.as_str());
            fed.nodes.insert(id, start(config, l).await.unwrap());
        }
        fed
    }

    pub fn config(&self, a: &str) -> NodeConfig {
        let mut config = NodeConfig::load(&self.layout.agencies[&agency(a)].node_config).unwrap();
        // Quick reconnects keep tests short; production defaults are slower.
        config.delivery.initial_backoff_ms = casebridge::config::Bounded::new(50);
        config.delivery.max_backoff_ms = casebridge::config::Bounded::new(500);
        // No drain grace: tests stop nodes often (tests/health.rs sets one).
        config.limits.drain_grace_secs = casebridge::config::Bounded::new(0);
        (self.configure)(&agency(a), &mut config);
        config
    }

    pub fn node(&self, a: &str) -> &RunningNode {
        &self.nodes[&agency(a)]
    }

    /// Starts (or restarts) a node on its configured addresses (on the
    /// listeners [`Self::reserve`] kept for it, if any).
    pub async fn start_node(&mut self, a: &str) {
        let config = self.config(a);
        let listeners = match self.reserved.remove(&agency(a)) {
            Some(kept) => kept,
            None => Listeners::bind(&config).await.unwrap(),
        };
        self.nodes
            .insert(agency(a), start(config, listeners).await.unwrap());
    }

    /// Takes a running node out of the federation (to shut it down by hand).
    pub fn take_node(&mut self, a: &str) -> RunningNode {
        self.nodes.remove(&agency(a)).expect("node is running")
    }

    pub async fn stop_node(&mut self, a: &str) {
        let node = self.nodes.remove(&agency(a)).expect("node is running");
        node.shutdown().await.unwrap();
    }

    pub fn pki(&self, a: &str) -> &Path {
        &self.layout.agencies[&agency(a)].dir
    }

    pub async fn client(&self, a: &str, name: &str) -> NodeClient {
        NodeClient::connect_file(self.client_toml(a, name))
            .await
            .unwrap()
    }

    /// The client.toml of `a`'s development client `name`.
    pub fn client_toml(&self, a: &str, name: &str) -> &Path {
        self.layout.agencies[&agency(a)].client_config(name)
    }

    /// Runs the real `casebridge` binary as `a`'s client `name`: its
    /// client.toml as `--client-config`, then `args`.
    pub fn cli_as(&self, a: &str, name: &str, args: &[&str]) -> (i32, String, String) {
        let toml = self.client_toml(a, name).to_str().unwrap();
        cli(&[&["--client-config", toml], args].concat())
    }

    /// A certificate and key for `a`'s client `name`, signed by `a`'s
    /// client CA but `fault` (written to a folder named after the fault).
    pub fn faulty_client(&self, a: &str, name: &str, fault: FaultyClient) -> (PathBuf, PathBuf) {
        write_faulty_client(
            &client_identity(a, name),
            self.pki(a),
            &self.dir.path().join(format!("{fault:?}")),
            fault,
        )
        .unwrap()
    }

    /// A client of `target`'s client API presenting the certificate and
    /// key at `cert` and `key` (the handshake may already refuse it).
    pub async fn client_presenting(
        &self,
        (cert, key): (&Path, &Path),
        target: &str,
    ) -> Result<NodeClient, casebridge::identity::TlsError> {
        let channel = self
            .channel_as(
                (cert, key),
                &self.layout.federation_ca,
                target,
                Listener::Client,
            )
            .await?;
        Ok(NodeClient::from_channel(channel))
    }

    /// A raw channel to `target`'s `listener`, presenting the certificate
    /// and key at `cert` and `key` and trusting `ca` for the server. Every
    /// hand-built connection of the tests (foreign, faulty or revoked
    /// certificates, raw peer calls) goes through here.
    pub async fn channel_as(
        &self,
        (cert, key): (&Path, &Path),
        ca: &Path,
        target: &str,
        listener: Listener,
    ) -> Result<Channel, casebridge::identity::TlsError> {
        let own = TlsIdentity::load(cert, key)?;
        let tls = client_tls_config(&own, ca, &[])?;
        let addrs = &self.layout.agencies[&agency(target)].addrs;
        let addr = match listener {
            Listener::Peer => addrs.peer,
            Listener::Client => addrs.client,
        };
        connect_channel(
            &addr.to_string(),
            (
                NodeIdentity {
                    federation: FederationName::new(FEDERATION).unwrap(),
                    agency: agency(target),
                },
                None,
            ),
            Arc::new(tls),
            // Generous: on a loaded 2-core CI machine four nodes busy with
            // Prio3 work can take seconds to finish a handshake.
            Duration::from_secs(30),
        )
        .await
    }

    /// A raw peer-API client presenting the node certificate in `pki_dir`,
    /// connecting to `target`'s peer listener.
    pub async fn peer_client_from(
        &self,
        pki_dir: &Path,
        ca: &Path,
        target: &str,
    ) -> Result<PeerExchangeClient<Channel>, casebridge::identity::TlsError> {
        let node = (&pki_dir.join("node.pem"), &pki_dir.join("node.key"));
        let channel = self
            .channel_as((node.0, node.1), ca, target, Listener::Peer)
            .await?;
        Ok(PeerExchangeClient::new(channel))
    }

    /// A raw channel to `target`'s peer listener, authenticated as
    /// `as_agency`'s node (for any service on that listener).
    pub async fn peer_channel(&self, as_agency: &str, target: &str) -> Channel {
        let dir = self.pki(as_agency);
        let node = (&dir.join("node.pem"), &dir.join("node.key"));
        self.channel_as(
            (node.0, node.1),
            &self.layout.federation_ca,
            target,
            Listener::Peer,
        )
        .await
        .unwrap()
    }

    pub async fn peer_client(&self, as_agency: &str, target: &str) -> PeerExchangeClient<Channel> {
        self.peer_client_from(self.pki(as_agency), &self.layout.federation_ca, target)
            .await
            .unwrap()
    }

    /// Every alert the node holds (all pages, retracted included).
    pub async fn alerts(&self, a: &str) -> Vec<Alert> {
        let mut c = self.client(a, "analyst").await;
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = c
                .alerts
                .list_alerts(ListAlertsRequest {
                    include_retracted: true,
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            out.extend(page.alerts);
            if page.next_page_token.is_empty() {
                return out;
            }
            page_token = page.next_page_token;
        }
    }

    /// The ids of every alert the node holds, as [`Self::alerts`] lists them.
    pub async fn alert_ids(&self, a: &str) -> Vec<String> {
        self.alerts(a)
            .await
            .into_iter()
            .map(|alert| alert.id)
            .collect()
    }

    /// Delivery state of `a`'s peers, through its admin API.
    pub async fn peers(&self, a: &str) -> Vec<PeerStatus> {
        let mut admin = self.client(a, "admin").await;
        admin
            .admin
            .list_peers(ListPeersRequest {})
            .await
            .unwrap()
            .into_inner()
            .peers
    }

    /// Waits until `a` holds the alert `id` (its own or received); the alert.
    pub async fn held(&self, a: &str, id: &str) -> Alert {
        eventually(&format!("{id} at {a}"), || async {
            self.alerts(a)
                .await
                .into_iter()
                .find(|alert| alert.id == id)
        })
        .await
    }

    /// Waits until one of `a`'s peers is as `want` says (`what`, for a
    /// timeout); that peer's delivery state.
    pub async fn peer_when(
        &self,
        a: &str,
        what: &str,
        want: impl Fn(&PeerStatus) -> bool,
    ) -> PeerStatus {
        eventually(what, || async {
            self.peers(a).await.into_iter().find(|p| want(p))
        })
        .await
    }

    /// `a`'s status, through its admin API.
    pub async fn status(&self, a: &str) -> NodeStatus {
        node_status(&mut self.client(a, "admin").await).await
    }

    /// The version of the federation directory `a` follows (0: none).
    pub async fn directory_version(&self, a: &str) -> u64 {
        let mut admin = self.client(a, "admin").await;
        let state = admin
            .admin
            .get_directory(casebridge::proto::v1::GetDirectoryRequest {})
            .await
            .unwrap()
            .into_inner();
        state.current.map_or(0, |c| {
            casebridge::directory::Signed::open(c)
                .unwrap()
                .directory()
                .version
        })
    }

    /// Offers `signed` to `at` as its admin client (`directory publish`).
    pub async fn publish_directory(
        &self,
        at: &str,
        signed: &casebridge::directory::Signed,
    ) -> Result<(), tonic::Status> {
        let mut admin = self.client(at, "admin").await;
        let request = casebridge::proto::v1::PublishDirectoryRequest {
            directory: Some(signed.envelope().clone()),
        };
        admin.admin.publish_directory(request).await.map(|_| ())
    }

    /// Delivers one envelope to `target` as the node `as_agency` and returns
    /// the first answer on the ack stream.
    pub async fn deliver_one(
        &self,
        as_agency: &str,
        target: &str,
        envelope: Envelope,
    ) -> Result<DeliveryAck, tonic::Status> {
        let mut client = self.peer_client(as_agency, target).await;
        let mut acks = deliver_stream(&mut client, vec![envelope]).await?;
        acks.message()
            .await?
            .ok_or_else(|| tonic::Status::unknown("ack stream ended"))
    }

    pub async fn shutdown(mut self) {
        for (_, node) in std::mem::take(&mut self.nodes) {
            node.shutdown().await.unwrap();
        }
    }
}

/// The envelope a peer sends as its `sequence`th, carrying `payload`.
pub fn envelope(sequence: u64, payload: Payload) -> Envelope {
    Envelope {
        sequence,
        payload: Some(payload),
        ..Default::default()
    }
}

/// Opens a delivery stream on `peer` that carries `envelopes` and then
/// ends: the node's answers (acks, then how the stream ended).
pub async fn deliver_stream(
    peer: &mut PeerExchangeClient<Channel>,
    envelopes: Vec<Envelope>,
) -> Result<tonic::Streaming<DeliveryAck>, tonic::Status> {
    Ok(peer
        .deliver(tokio_stream::iter(envelopes))
        .await?
        .into_inner())
}

/// The seed of a test's random faults: `CASEBRIDGE_FAULT_SEED` if set,
/// else a random one; printed (`what` seed) so a failing run can be rerun.
pub fn fault_seed(what: &str) -> u64 {
    let seed = std::env::var("CASEBRIDGE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{what} seed {seed} (rerun with CASEBRIDGE_FAULT_SEED={seed})");
    seed
}

/// Polls `check` until it returns `Some`, for at most [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn phone_id(number: &str, region: &str) -> Identifier {
    Identifier {
        kind: Some(Kind::Phone(Phone {
            number: number.into(),
            region: region.into(),
        })),
    }
}

pub fn person_id(given: &str, family: &str, dob: &str) -> Identifier {
    Identifier {
        kind: Some(Kind::Person(PersonName {
            given_names: given.into(),
            family_name: family.into(),
            date_of_birth: dob.into(),
        })),
    }
}

pub fn email_id(address: &str) -> Identifier {
    Identifier {
        kind: Some(Kind::Email(casebridge::proto::v1::Email {
            address: address.into(),
        })),
    }
}

pub fn iban_id(iban: &str) -> Identifier {
    Identifier {
        kind: Some(Kind::Iban(casebridge::proto::v1::Iban {
            iban: iban.into(),
        })),
    }
}

/// Identifier types of the tokens a node stored for an alert, sorted.
pub fn stored_token_types(fed: &TestFederation, agency: &str, id: &str) -> Vec<i32> {
    let id: casebridge::ids::AlertId = id.parse().unwrap();
    let rec = fed.node(agency).core().store.get(&id).unwrap().unwrap();
    let mut types: Vec<i32> = rec
        .pseudonyms
        .iter()
        .flat_map(|s| s.tokens.iter().map(|t| t.r#type))
        .collect();
    types.sort();
    types
}

pub fn sample_draft(narrative: &str) -> AlertDraft {
    AlertDraft {
        content: Some(AlertContent {
            category: Category::LabourExploitation as i32,
            severity: Severity::High as i32,
            tlp: Tlp::Amber as i32,
            location: Some(Location {
                country: "NL".into(),
                region: "Zuid-Holland".into(),
                city: "Westland".into(),
            }),
            narrative: narrative.into(),
            ..Default::default()
        }),
        subjects: vec![Subject {
            role: SubjectRole::PotentialVictim as i32,
            identifiers: vec![
                Identifier {
                    kind: Some(Kind::Phone(Phone {
                        number: "+31 6 5555 0101".into(),
                        region: String::new(),
                    })),
                },
                Identifier {
                    kind: Some(Kind::Person(PersonName {
                        given_names: "Maria".into(),
                        family_name: "Ionescu".into(),
                        date_of_birth: "1991-04-02".into(),
                    })),
                },
            ],
            profile: None,
        }],
        ..Default::default()
    }
}

pub async fn submit(client: &mut NodeClient, narrative: &str) -> Alert {
    submit_draft(client, sample_draft(narrative)).await
}

/// Submits `draft` and returns the stored alert; panics on refusal.
pub async fn submit_draft(client: &mut NodeClient, draft: AlertDraft) -> Alert {
    client
        .alerts
        .submit_alert(SubmitAlertRequest {
            draft: Some(draft),
            request_id: String::new(),
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Asserts that a call was refused with INVALID_ARGUMENT naming `field`:
/// in its message, and as the one field of its `BadRequest` detail (the
/// machine-readable form a case system points at). Returns the status.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    field: &str,
) -> tonic::Status {
    use tonic_types::StatusExt;
    let err = result.expect_err("an invalid request was accepted");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
    assert!(
        err.message().contains(field),
        "message `{}` does not name {field}",
        err.message()
    );
    let bad = err.get_details_bad_request().expect("BadRequest details");
    let fields: Vec<&str> = bad
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, [field], "{:?}", bad.field_violations);
    err
}

/// `GET path` over plain HTTP/1.1 (the metrics endpoint); status line and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// Every audit entry after `after`, oldest first (needs the admin role).
pub async fn audit_after(
    admin: &mut NodeClient,
    after: u64,
) -> Vec<casebridge::proto::v1::AuditEntry> {
    use casebridge::proto::v1::QueryAuditRequest;
    let mut out = Vec::new();
    let mut req = QueryAuditRequest {
        page_size: 1000,
        page_token: (after + 1).to_string(),
        ..Default::default()
    };
    loop {
        let page = admin
            .admin
            .query_audit(req.clone())
            .await
            .unwrap()
            .into_inner();
        out.extend(page.entries);
        if page.next_page_token.is_empty() {
            return out;
        }
        req.page_token = page.next_page_token;
    }
}

/// The newest audit entry's sequence number (the query itself is logged after it).
pub async fn audit_head(admin: &mut NodeClient) -> u64 {
    admin
        .admin
        .query_audit(casebridge::proto::v1::QueryAuditRequest {
            page_size: 1,
            page_token: u64::MAX.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .head_sequence
}

/// The status of `admin`'s node (needs the admin role; for a node the
/// harness did not start, else see [`TestFederation::status`]).
pub async fn node_status(admin: &mut NodeClient) -> NodeStatus {
    admin
        .admin
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The sharing policy in force at `admin`'s node (needs the admin role).
pub async fn node_policy(admin: &mut NodeClient) -> casebridge::proto::v1::PolicyVersion {
    admin
        .admin
        .get_policy(casebridge::proto::v1::GetPolicyRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The disclosure cases `client`'s node lists for `req` (one page).
pub async fn disclosure_cases(
    client: &mut NodeClient,
    req: casebridge::proto::v1::ListDisclosureRequestsRequest,
) -> Vec<casebridge::proto::v1::DisclosureCase> {
    client
        .disclosure
        .list_disclosure_requests(req)
        .await
        .unwrap()
        .into_inner()
        .requests
}

/// Runs the real `casebridge` binary: exit code, stdout, stderr.
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The hit log of `client`'s node, every entry (hits found, reviews).
#[allow(dead_code)] // not every test binary reads hits
pub async fn hit_log(client: &mut NodeClient) -> Vec<casebridge::proto::v1::Hit> {
    hit_log_after(client, 0).await
}

/// The hit log of `client`'s node after entry `after` (the backlog a
/// `WatchHits` resumed there replays).
pub async fn hit_log_after(client: &mut NodeClient, after: u64) -> Vec<casebridge::proto::v1::Hit> {
    let mut stream = client
        .alerts
        .watch_hits(casebridge::proto::v1::WatchHitsRequest {
            after_sequence: after,
            backlog_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut hits = Vec::new();
    while let Some(h) = stream.message().await.unwrap() {
        hits.push(h);
    }
    hits
}

/// The number of the first hit found at `client`'s node, waiting for one.
#[allow(dead_code)]
pub async fn first_hit(client: &NodeClient) -> u64 {
    eventually("a hit", || {
        let mut c = client.clone();
        async move {
            hit_log(&mut c)
                .await
                .into_iter()
                .find(|h| h.change == casebridge::proto::v1::HitChange::Found as i32)
                .map(|h| h.number)
        }
    })
    .await
}

/// A TLS connection to `agency`'s web console with `client`'s certificate,
/// speaking HTTP/1.1 (to send what no browser would, and read raw answers).
pub async fn console_stream(
    fed: &TestFederation,
    agency: &str,
    client: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let pki = fed.pki(agency);
    let own = casebridge::identity::TlsIdentity::load(
        &pki.join(format!("clients/{client}.pem")),
        &pki.join(format!("clients/{client}.key")),
    )
    .unwrap();
    let mut tls =
        casebridge::identity::client_tls_config(&own, &fed.layout.federation_ca, &[]).unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = fed.node(agency).console_addr().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// One HTTP/1.1 exchange with `agency`'s console as `client`: `head` (the
/// request line and any headers), then Host, Connection: close and the
/// length of `body`; the whole answer as text. The node may answer (and
/// close) before the body is sent.
pub async fn console_exchange(
    fed: &TestFederation,
    agency: &str,
    client: &str,
    head: &str,
    body: &[u8],
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = fed.node(agency).console_addr().unwrap();
    let mut stream = console_stream(fed, agency, client).await;
    let raw = format!(
        "{head}\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let started = Instant::now();
    stream.write_all(raw.as_bytes()).await.unwrap();
    // A server may answer and close before the body is all written: the
    // answer is still read. What went wrong is kept for an empty answer.
    let wrote = stream.write_all(body).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
    if out.is_empty() {
        return format!(
            "(no answer after {:?}: writing the body: {wrote:?}; reading: {read:?})",
            started.elapsed()
        );
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A node configuration change for `TestFederation::start_with`: the web
/// console on a free loopback port.
pub fn with_console(_: &AgencyId, c: &mut NodeConfig) {
    c.console.listen = Some(toml::Spanned::new(0..0, "127.0.0.1:0".parse().unwrap()));
}

/// Takes `[encryption]` out of every node.toml `certs init` wrote: most
/// tests run stores in clear (as a node of the previous release keeps
/// them, and as auditors' `--data-dir` tools read them); the encryption
/// tests put it back with [`seal`]. The KEK files stay where they are.
pub fn unseal(layout: &casebridge::certs::FederationLayout) {
    for a in layout.agencies.values() {
        let text = std::fs::read_to_string(&a.node_config).unwrap();
        std::fs::write(&a.node_config, without_table(&text, "[encryption]")).unwrap();
    }
}

/// Puts `[encryption]` back into `node_toml` (its KEK `kek.toml`, made by
/// `certs init`), with `extra` lines in it.
#[allow(dead_code)] // not every test binary seals
pub fn seal(node_toml: &Path, extra: &str) {
    let mut text = std::fs::read_to_string(node_toml).unwrap();
    text.push_str(&format!("\n[encryption]\nkek_file = \"kek.toml\"\n{extra}"));
    std::fs::write(node_toml, text).unwrap();
}

/// `text` (TOML) without the table headed `header`.
pub fn without_table(text: &str, header: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skipping = line == header;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Every file under `dir` holding `needle`, byte for byte.
#[allow(dead_code)] // not every test binary searches files
pub fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            found.push(path);
        }
    }
    found
}

/// The audit entries of `action` at `agency` (the newest 100), read as its
/// administrator.
#[allow(dead_code)] // not every test binary reads the audit log
pub async fn audited(
    fed: &TestFederation,
    agency: &str,
    action: &str,
) -> Vec<casebridge::proto::v1::AuditEntry> {
    let mut admin = fed.client(agency, "admin").await;
    let query = casebridge::proto::v1::QueryAuditRequest {
        action: action.into(),
        page_size: 100,
        ..Default::default()
    };
    admin
        .admin
        .query_audit(query)
        .await
        .unwrap()
        .into_inner()
        .entries
}
