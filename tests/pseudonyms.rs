//! Subjects leave a node only as tokens: what a peer receives, byte for byte,
//! contains no raw identifier, and identifiers that cannot be normalized are
//! refused at submit.

mod common;

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use casebridge::identity::{TlsIdentity, serve_tls, server_tls_config};
use casebridge::proto::v1::envelope::Payload;
use casebridge::proto::v1::peer_exchange_server::{PeerExchange, PeerExchangeServer};
use casebridge::proto::v1::{
    AckStatus, AlertDraft, DeliveryAck, Email, Envelope, HelloRequest, HelloResponse, Iban,
    Identifier, IdentifierType, Phone, SubmitAlertRequest, identifier::Kind,
};
use common::*;
use futures_util::{Stream, StreamExt};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// A stand-in for the `ngo` node: real mTLS with ngo's certificate, records
/// the exact bytes of every envelope it is sent and acknowledges it.
#[derive(Clone, Default)]
struct RecordingPeer {
    wire: Arc<Mutex<Vec<Vec<u8>>>>,
}

#[tonic::async_trait]
impl PeerExchange for RecordingPeer {
    async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloResponse>, Status> {
        // Answers as the previous release would: protocol 1, nothing
        // announced (its capabilities are known).
        Ok(Response::new(HelloResponse {
            protocol_version: 1,
            agency_id: "ngo".into(),
            federation: FEDERATION.into(),
            ..Default::default()
        }))
    }

    async fn lookup(
        &self,
        _: Request<casebridge::proto::v1::PeerLookupRequest>,
    ) -> Result<Response<casebridge::proto::v1::PeerLookupResponse>, Status> {
        Err(Status::unimplemented(
            "the stand-in only records deliveries",
        ))
    }

    async fn fetch_directory(
        &self,
        _: Request<casebridge::proto::v1::FetchDirectoryRequest>,
    ) -> Result<Response<casebridge::proto::v1::FetchDirectoryResponse>, Status> {
        Err(Status::unimplemented(
            "the stand-in only records deliveries",
        ))
    }

    async fn stats_prepare(
        &self,
        _: Request<casebridge::proto::v1::StatsPrepareRequest>,
    ) -> Result<Response<casebridge::proto::v1::StatsPrepareResponse>, Status> {
        Err(Status::unimplemented(
            "the stand-in only records deliveries",
        ))
    }

    async fn stats_commit(
        &self,
        _: Request<casebridge::proto::v1::StatsCommitRequest>,
    ) -> Result<Response<casebridge::proto::v1::StatsCommitResponse>, Status> {
        Err(Status::unimplemented(
            "the stand-in only records deliveries",
        ))
    }

    type DeliverStream = Pin<Box<dyn Stream<Item = Result<DeliveryAck, Status>> + Send>>;

    async fn deliver(
        &self,
        req: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        let wire = self.wire.clone();
        let acks = req.into_inner().map(move |env| {
            let env = env?;
            wire.lock().unwrap().push(env.encode_to_vec());
            Ok(DeliveryAck {
                sequence: env.sequence,
                status: AckStatus::Stored as i32,
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(acks)))
    }
}

fn draft_with_identifiers() -> AlertDraft {
    let mut d = sample_draft("workers contacted through an agency");
    d.subjects[0].identifiers.extend([
        email_id("Recruit.Jobs+eu@Example.org"),
        iban_id("NL91 ABNA 0417 1643 00"),
    ]);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_identifier_goes_over_the_wire() {
    let fed = TestFederation::start_with(&["police", "ngo"], &["ngo"], |_, _| {}).await;
    let ngo_dir = fed.pki("ngo").to_owned();
    let own = TlsIdentity::load(&ngo_dir.join("node.pem"), &ngo_dir.join("node.key")).unwrap();
    let tls = tokio::sync::watch::channel(Arc::new(
        server_tls_config(&own, &fed.layout.federation_ca, &[]).unwrap(),
    ))
    .1;
    let listener = tokio::net::TcpListener::bind(fed.layout.agencies[&agency("ngo")].addrs.peer)
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let peer = RecordingPeer::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PeerExchangeServer::new(peer.clone()))
            .serve_with_incoming_shutdown(
                serve_tls(
                    listener,
                    tls,
                    std::time::Duration::from_secs(5),
                    std::time::Duration::from_secs(3600),
                    std::sync::Arc::new(|_, _| {}),
                    stop.clone(),
                ),
                stop.clone().cancelled_owned(),
            ),
    );

    let mut cms = fed.client("police", "cms").await;
    let sent = submit_draft(&mut cms, draft_with_identifiers()).await;
    let wire = eventually("an envelope at the recording peer", || async {
        peer.wire.lock().unwrap().first().cloned()
    })
    .await;

    // Tokens did travel: one per identifier (phone, person+dob, e-mail, IBAN).
    let env = Envelope::decode(wire.as_slice()).unwrap();
    // It names what a receiver must understand to apply it.
    let scheme_2 = env.payload.iter().any(|p| match p {
        Payload::Alert(a) => a
            .subjects
            .iter()
            .flat_map(|s| &s.encodings)
            .any(|e| !e.name.is_empty()),
        _ => false,
    });
    let mut expected = vec!["alert".to_owned()];
    if scheme_2 {
        expected.push("person-encoding-2".into());
    }
    assert_eq!(env.requires, expected);
    let Some(Payload::Alert(alert)) = env.payload else {
        panic!("expected an alert envelope");
    };
    assert_eq!(alert.id, sent.id);
    let tokens = &alert.subjects[0].tokens;
    let mut types: Vec<i32> = tokens.iter().map(|t| t.r#type).collect();
    types.sort();
    assert_eq!(
        types,
        [
            IdentifierType::Phone,
            IdentifierType::Email,
            IdentifierType::Person,
            IdentifierType::Iban
        ]
        .map(|t| t as i32)
    );
    assert!(
        tokens
            .iter()
            .all(|t| t.value.len() == 32 && t.key_version == 1)
    );

    // …and nothing else identifying did: raw spellings, normalized forms, fragments.
    let needles = [
        "5555",
        "0101",
        "+31655550101",
        "Maria",
        "maria",
        "Ionescu",
        "ionescu",
        "1991",
        "04-02",
        "Recruit",
        "recruit",
        "jobs",
        "Example",
        "example.org",
        "NL91",
        "ABNA",
        "0417164300",
    ];
    for needle in needles {
        assert!(
            !wire.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "`{needle}` found in the envelope bytes sent to a peer"
        );
    }
    // Stop police first: that ends its delivery stream, so the stand-in's
    // graceful shutdown has nothing left to wait for.
    fed.shutdown().await;
    stop.cancel();
    tokio::time::timeout(WAIT, server)
        .await
        .expect("stand-in peer did not stop")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_that_cannot_be_normalized_are_refused() {
    let fed = TestFederation::start(&["police"]).await;
    let mut cms = fed.client("police", "cms").await;
    let cases: Vec<(&str, Kind)> = vec![
        (
            "draft.subjects[0].identifiers[2].phone.number",
            Kind::Phone(Phone {
                number: "12345".into(),
                region: "NL".into(),
            }),
        ),
        (
            "draft.subjects[0].identifiers[2].iban.iban",
            Kind::Iban(Iban {
                iban: "NL92ABNA0417164300".into(),
            }),
        ),
        (
            "draft.subjects[0].identifiers[2].email.address",
            Kind::Email(Email {
                address: "someone@localhost".into(),
            }),
        ),
    ];
    for (field, kind) in cases {
        let mut d = sample_draft("x");
        d.subjects[0]
            .identifiers
            .push(Identifier { kind: Some(kind) });
        let result = cms
            .alerts
            .submit_alert(SubmitAlertRequest {
                draft: Some(d),
                request_id: String::new(),
                validate_only: false,
            })
            .await;
        assert_invalid(result, field);
    }
    assert!(fed.alerts("police").await.is_empty(), "nothing stored");
    fed.shutdown().await;
}
