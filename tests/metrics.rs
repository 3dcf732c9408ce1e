//! The Prometheus endpoint exposes the named series with the right values
//! after known traffic.

mod common;

use std::collections::BTreeMap;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Series name with labels → value, from the text exposition.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic() {
    let fed = TestFederation::start_with(&["police", "ngo"], &[], |_, c| {
        c.metrics.listen = Some(toml::Spanned::new(0..0, "127.0.0.1:0".parse().unwrap()));
    })
    .await;
    // ngo holds the phone police's alerts carry: one phone hit per police alert.
    let mut ngo_cms = fed.client("ngo", "cms").await;
    let ngo_alert = submit(&mut ngo_cms, "ngo case").await;
    let mut cms = fed.client("police", "cms").await;
    fed.held("police", &ngo_alert.id).await;
    for i in 0..3 {
        submit(&mut cms, &format!("police case {i}")).await;
    }
    let mut bad = sample_draft("invalid");
    bad.content.as_mut().unwrap().category = 999;
    assert!(
        cms.alerts
            .submit_alert(casebridge::proto::v1::SubmitAlertRequest {
                draft: Some(bad),
                request_id: String::new(),
                validate_only: false
            })
            .await
            .is_err()
    );
    fed.peer_when("police", "police's queue empty", |p| {
        p.queue_depth == 0 && p.delivered_total >= 3
    })
    .await;
    // A refused handshake: a plain TCP connection that sends garbage.
    {
        let mut tcp =
            tokio::net::TcpStream::connect(fed.layout.agencies[&agency("police")].addrs.peer)
                .await
                .unwrap();
        tcp.write_all(b"not TLS\r\n\r\n").await.unwrap();
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink).await;
    }

    let addr = fed.node("police").metrics_addr().unwrap();
    let (status, _) = http_get(addr, "/nope").await;
    assert!(status.contains("404"), "{status}");
    assert!(http_get(addr, "/healthz").await.0.contains("200"));
    assert!(http_get(addr, "/readyz").await.0.contains("200"));
    let m = eventually("the refused handshake counted", || async {
        let (status, body) = http_get(addr, "/metrics").await;
        assert!(status.contains("200"), "{status}");
        let m = samples(&body);
        (m.get("casebridge_refused_handshakes_total{listener=\"peer\"}") == Some(&1.0)).then_some(m)
    })
    .await;
    let v = |k: &str| m.get(k).copied().unwrap_or_else(|| panic!("no series {k}"));
    assert_eq!(v("casebridge_submits_total{outcome=\"ok\"}"), 3.0);
    assert_eq!(v("casebridge_submits_total{outcome=\"invalid\"}"), 1.0);
    // 3 alerts, and for each a phone and a person hit notice to ngo: 9
    // envelopes, each acked exactly once. The 3 alerts are new at ngo
    // (stored). A notice is acked as a duplicate when ngo found the same hit
    // itself first (it matches police's alert on arrival): which side wins
    // is timing, so only the notices may go either way.
    let stored = v("casebridge_deliveries_total{peer=\"ngo\",status=\"stored\"}");
    let duplicate = m
        .get("casebridge_deliveries_total{peer=\"ngo\",status=\"duplicate\"}")
        .copied()
        .unwrap_or(0.0);
    assert_eq!(
        stored + duplicate,
        9.0,
        "stored {stored}, duplicate {duplicate}"
    );
    assert!(stored >= 3.0, "the 3 alerts are stored: {stored}");
    assert_eq!(
        v("casebridge_delivery_latency_seconds_count{peer=\"ngo\"}"),
        stored + duplicate
    );
    assert_eq!(
        v("casebridge_policy_decisions_total{peer=\"ngo\",decision=\"share\"}"),
        3.0
    );
    assert_eq!(
        v("casebridge_received_total{peer=\"ngo\",outcome=\"stored\"}"),
        1.0
    );
    assert_eq!(v("casebridge_queue_depth{peer=\"ngo\"}"), 0.0);
    assert_eq!(
        v("casebridge_oldest_undelivered_seconds{peer=\"ngo\"}"),
        0.0
    );
    // police found the phone and the person of its 3 alerts in ngo's alert.
    assert_eq!(v("casebridge_hits_total{type=\"phone\"}"), 3.0);
    assert_eq!(v("casebridge_hits_total{type=\"person\"}"), 3.0);
    // The audit log: one entry per submit (the invalid one too), one per
    // hit, one per acknowledged envelope, one for the refused handshake.
    assert_eq!(
        v("casebridge_audit_entries_total{action=\"alert.submit\"}"),
        4.0
    );
    assert_eq!(
        v("casebridge_audit_entries_total{action=\"hit.found\"}"),
        6.0
    );
    assert_eq!(
        v("casebridge_audit_entries_total{action=\"alert.share\"}")
            + v("casebridge_audit_entries_total{action=\"hit.notify\"}"),
        stored + duplicate
    );
    assert_eq!(
        v("casebridge_audit_entries_total{action=\"tls.handshake\"}"),
        1.0
    );
    assert!(
        !m.keys().any(|k| k.contains(&ngo_alert.id)),
        "an alert id in a label"
    );
    fed.shutdown().await;
}

/// A quiet node exposes every series from the start, at zero (so rules on
/// `increase()` work before the first event), and the store's size and its
/// filesystem's free space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_exists_at_zero_on_a_quiet_node() {
    let fed = TestFederation::start_with(&["police", "ngo"], &["ngo"], |_, c| {
        c.metrics.listen = Some(toml::Spanned::new(0..0, "127.0.0.1:0".parse().unwrap()));
    })
    .await;
    let addr = fed.node("police").metrics_addr().unwrap();
    let (status, body) = http_get(addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let m = samples(&body);
    for series in [
        "casebridge_submits_total{outcome=\"ok\"}",
        "casebridge_submits_total{outcome=\"invalid\"}",
        "casebridge_deliveries_total{peer=\"ngo\",status=\"stored\"}",
        "casebridge_delivery_failures_total{peer=\"ngo\"}",
        "casebridge_delivery_latency_seconds_count{peer=\"ngo\"}",
        "casebridge_received_total{peer=\"ngo\",outcome=\"stored\"}",
        "casebridge_received_total{peer=\"ngo\",outcome=\"refused\"}",
        "casebridge_hits_total{type=\"phone\"}",
        "casebridge_hits_total{type=\"person\"}",
        "casebridge_policy_decisions_total{peer=\"ngo\",decision=\"share\"}",
        "casebridge_refused_handshakes_total{listener=\"client\"}",
        "casebridge_audit_entries_total{action=\"alert.submit\"}",
        "casebridge_audit_entries_total{action=\"alert.receive\"}",
        "casebridge_purged_alerts_total",
    ] {
        assert_eq!(m.get(series), Some(&0.0), "{series} missing or not zero");
    }
    assert!(m["casebridge_store_bytes"] > 0.0);
    let in_a_year = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300 * 86_400) as f64;
    for name in ["node", "federation CA", "client CA"] {
        let key = format!("casebridge_certificate_not_after_seconds{{certificate=\"{name}\"}}");
        assert!(m[&key] > in_a_year, "{key}");
    }
    assert!(m["casebridge_store_free_bytes"] > 0.0);
    fed.shutdown().await;
}
