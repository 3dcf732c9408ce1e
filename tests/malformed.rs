//! Malformed input on every RPC of both listeners — bytes that are not the
//! expected message, truncated messages, wrong wire types, oversize
//! messages — gets an error status and changes nothing.

mod common;

use bytes::{Buf, BufMut};
use casebridge::proto::v1::NodeStatus;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Sends and receives raw message bytes, so a test can put anything on the wire.
#[derive(Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let out = src.chunk().to_vec();
        src.advance(out.len());
        Ok(Some(out))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Unary,
    ServerStream,
    Bidi,
}

/// Field 1 of the request: a length-delimited field, a varint, or none.
#[derive(Clone, Copy, PartialEq)]
enum First {
    Bytes,
    Varint,
    None,
}

const CLIENT_RPCS: &[(&str, Shape, First)] = &[
    (
        "/casebridge.v1.AlertService/SubmitAlert",
        Shape::Unary,
        First::Bytes,
    ),
    (
        "/casebridge.v1.AlertService/UpdateAlert",
        Shape::Unary,
        First::Bytes,
    ),
    (
        "/casebridge.v1.AlertService/RetractAlert",
        Shape::Unary,
        First::Bytes,
    ),
    (
        "/casebridge.v1.AlertService/GetAlert",
        Shape::Unary,
        First::Bytes,
    ),
    (
        "/casebridge.v1.AlertService/ListAlerts",
        Shape::Unary,
        First::Bytes,
    ),
    (
        "/casebridge.v1.AlertService/WatchHits",
        Shape::ServerStream,
        First::Varint,
    ),
    (
        "/casebridge.v1.AlertService/Lookup",
        Shape::Unary,
        First::Bytes,
    ),
    (
        "/casebridge.v1.AdminService/GetStatus",
        Shape::Unary,
        First::None,
    ),
    (
        "/casebridge.v1.AdminService/ListPeers",
        Shape::Unary,
        First::None,
    ),
    (
        "/casebridge.v1.AdminService/GetPolicy",
        Shape::Unary,
        First::None,
    ),
    (
        "/casebridge.v1.AdminService/SetPolicy",
        Shape::Unary,
        First::Bytes,
    ),
    (
        "/casebridge.v1.AdminService/ExplainPolicy",
        Shape::Unary,
        First::Bytes,
    ),
    (
        "/casebridge.v1.AdminService/DiffPolicy",
        Shape::Unary,
        First::Bytes,
    ),
    (
        "/casebridge.v1.AdminService/Reshare",
        Shape::Unary,
        First::Bytes,
    ),
    (
        "/casebridge.v1.AdminService/RetractFromPeer",
        Shape::Unary,
        First::Bytes,
    ),
];

const PEER_RPCS: &[(&str, Shape, First)] = &[
    (
        "/casebridge.v1.PeerExchange/Hello",
        Shape::Unary,
        First::Varint,
    ),
    (
        "/casebridge.v1.PeerExchange/Deliver",
        Shape::Bidi,
        First::Varint,
    ),
    (
        "/casebridge.v1.PeerExchange/Lookup",
        Shape::Unary,
        First::Bytes,
    ),
];

/// Payloads no message of any type decodes from, plus a wrong wire type
/// for field 1 where the message has one.
fn payloads(first: First, rng: &mut StdRng) -> Vec<(&'static str, Vec<u8>)> {
    let mut random: Vec<u8> = (0..rng.random_range(1..512))
        .map(|_| rng.random())
        .collect();
    random[0] = 0x07; // field 0, wire type 7: invalid in any message
    let mut out = vec![
        ("random bytes", random),
        // Field 1, length-delimited, claims 16 bytes and has 1.
        ("truncated", vec![0x0a, 0x10, 0x41]),
        // A varint longer than 10 bytes.
        (
            "overlong varint",
            [vec![0x08], vec![0xff; 11], vec![0x01]].concat(),
        ),
        // Larger than the node's 4 MiB message limit.
        ("oversize", vec![0x0a; 5 * 1024 * 1024]),
    ];
    match first {
        First::Bytes => out.push(("wrong wire type", vec![0x08, 0x01])),
        First::Varint => out.push(("wrong wire type", vec![0x0a, 0x01, 0x41])),
        First::None => {}
    }
    out
}

async fn call(channel: Channel, path: &str, shape: Shape, body: Vec<u8>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_encoding_message_size(64 * 1024 * 1024)
        .max_decoding_message_size(64 * 1024 * 1024);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = PathAndQuery::try_from(path.to_owned()).unwrap();
    match shape {
        Shape::Unary => grpc
            .unary(tonic::Request::new(body), path, Raw)
            .await
            .map(|_| ()),
        Shape::ServerStream => {
            let mut s = grpc
                .server_streaming(tonic::Request::new(body), path, Raw)
                .await?
                .into_inner();
            s.message().await.map(|_| ())
        }
        Shape::Bidi => {
            let stream = tokio_stream::iter(vec![body]);
            let mut s = grpc
                .streaming(tonic::Request::new(stream), path, Raw)
                .await?
                .into_inner();
            s.message().await.map(|_| ())
        }
    }
}

fn fingerprint(s: &NodeStatus) -> (u64, u64, u64, u64, u64) {
    (
        s.local_alerts,
        s.received_alerts,
        s.outbox_depth,
        s.policy_version,
        s.refused_deliveries,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_on_every_rpc_gets_an_error_and_changes_nothing() {
    let fed = TestFederation::start(&["police", "ngo"]).await;
    let mut cms = fed.client("police", "cms").await;
    submit(&mut cms, "already there").await;
    let mut admin = fed.client("police", "admin").await;
    eventually("the first alert delivered", || async {
        (fed.status("police").await.outbox_depth == 0).then_some(())
    })
    .await;
    let before = fingerprint(&fed.status("police").await);
    let ngo_before = fed.alerts("ngo").await.len();
    let policy_before = node_policy(&mut admin).await.version;

    let audit_before = audit_head(&mut admin).await;
    let mut rng = StdRng::seed_from_u64(42);
    let mut calls = 0;
    for (rpcs, channel) in [
        (CLIENT_RPCS, admin.channel.clone()),
        (CLIENT_RPCS, cms.channel.clone()),
        (PEER_RPCS, fed.peer_channel("ngo", "police").await),
    ] {
        for (path, shape, first) in rpcs {
            for (what, body) in payloads(*first, &mut rng) {
                let result = call(channel.clone(), path, *shape, body).await;
                calls += 1;
                let err = result.expect_err(&format!("{path} accepted {what}"));
                assert!(
                    matches!(
                        err.code(),
                        Code::Internal
                            | Code::InvalidArgument
                            | Code::ResourceExhausted
                            | Code::OutOfRange
                            | Code::Unknown
                    ),
                    "{path} with {what}: unexpected {:?}: {}",
                    err.code(),
                    err.message()
                );
            }
        }
    }
    eprintln!("{calls} malformed calls, each refused");

    // Each left exactly one audit entry with its refusal, whether or not
    // tonic could decode it far enough to call the handler.
    let audit_end = audit_head(&mut admin).await;
    let callers = ["client:admin", "client:cms", "peer:ngo"];
    let logged: Vec<_> = audit_after(&mut admin, audit_before)
        .await
        .into_iter()
        .filter(|e| e.sequence <= audit_end && callers.contains(&e.actor.as_str()))
        .filter(|e| !(e.action == "audit.query" && e.outcome == "OK"))
        .collect();
    assert!(logged.iter().all(|e| e.outcome != "OK"), "{logged:#?}");
    let undecoded = logged
        .iter()
        .filter(|e| {
            e.detail
                .get("error")
                .is_some_and(|m| m.contains("did not decode"))
        })
        .count();
    eprintln!(
        "{} audit entries ({undecoded} written for calls no handler saw)",
        logged.len()
    );
    assert_eq!(logged.len(), calls, "one entry per malformed call");

    // Nothing changed, and the node still serves.
    assert_eq!(fingerprint(&fed.status("police").await), before);
    assert_eq!(fed.alerts("ngo").await.len(), ngo_before);
    let policy_after = node_policy(&mut admin).await.version;
    assert_eq!(policy_after, policy_before);
    fed.shutdown().await;
}
