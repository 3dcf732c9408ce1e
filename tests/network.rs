//! The network view between real nodes: a chain planted across three
//! agencies appears at the middle one with the right links, and the chain
//! between its ends is found through it; an own alert linked to another
//! own alert through another agency's is found too (the links keyed the
//! other way round); a hotline number shared by 30 alerts is one hub, not
//! 30 nodes; other agencies' alerts carry no content.

#[path = "console/browser.rs"]
#[allow(dead_code)] // the console's tests use the rest
mod browser;
mod common;

use casebridge::proto::v1::{AlertDraft, GetAlertNetworkRequest, IdentifierType};
use common::*;

fn with_phones(title: &str, phones: &[&str]) -> AlertDraft {
    let mut d = sample_draft("linked by phones");
    d.title = title.into();
    d.subjects[0].identifiers = phones.iter().map(|p| phone_id(p, "NL")).collect();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_across_three_agencies_and_a_capped_hub() {
    let fed = TestFederation::start_with(&["police", "ngo", "labour"], &[], with_console).await;
    let mut police = fed.client("police", "cms").await;
    let mut ngo = fed.client("ngo", "cms").await;
    let mut labour = fed.client("labour", "cms").await;

    // police P1 —(A)— ngo N1 —(B)— labour L1; police P2 —(C)— N1.
    let p1 = submit_draft(&mut police, with_phones("P1", &["+31 6 5555 0201"]))
        .await
        .id;
    let p2 = submit_draft(&mut police, with_phones("P2", &["+31 6 5555 0203"]))
        .await
        .id;
    let n1 = submit_draft(
        &mut ngo,
        with_phones(
            "N1",
            &["+31 6 5555 0201", "+31 6 5555 0202", "+31 6 5555 0203"],
        ),
    )
    .await
    .id;
    let l1 = submit_draft(&mut labour, with_phones("L1", &["+31 6 5555 0202"]))
        .await
        .id;
    // A hotline: one ngo alert, 30 police alerts with the same number.
    let hotline = "+31 6 5555 0999";
    let h1 = submit_draft(&mut ngo, with_phones("H1", &[hotline]))
        .await
        .id;
    for i in 0..30 {
        submit_draft(
            &mut police,
            with_phones(&format!("hotline {i}"), &[hotline]),
        )
        .await;
    }
    eventually("every hit at ngo", || {
        let mut ngo = ngo.clone();
        async move { (hit_log(&mut ngo).await.len() >= 33).then_some(()) }
    })
    .await;

    let network = |client: &casebridge::client::NodeClient, id: &str, to: &str| {
        let mut c = client.clone();
        let req = GetAlertNetworkRequest {
            alert_id: id.into(),
            to_alert_id: to.into(),
        };
        async move { c.alerts.get_alert_network(req).await.unwrap().into_inner() }
    };
    // At ngo, the middle of the chain: both ends, each by id and agency only.
    let at_ngo = network(&ngo, &n1, &l1).await;
    let node = |id: &str| {
        at_ngo
            .nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("{id} in {at_ngo:?}"))
    };
    assert_eq!(node(&n1).depth, 0);
    assert_eq!(
        node(&n1).title,
        "N1",
        "own alerts carry this agency's title"
    );
    for (id, agency) in [(&p1, "police"), (&p2, "police"), (&l1, "labour")] {
        let n = node(id);
        assert_eq!((n.agency.as_str(), n.depth, n.own), (agency, 1, false));
        assert!(
            n.title.is_empty(),
            "another agency's alert shows no content"
        );
    }
    assert!(
        at_ngo
            .edges
            .iter()
            .all(|e| e.r#type == IdentifierType::Phone as i32)
    );
    assert_eq!(at_ngo.path, vec![n1.clone(), l1.clone()]);

    // From police's P1, the chain to its own P2 runs through ngo's N1:
    // police knows N1 is linked to both (the reverse index).
    let at_police = network(&police, &p1, &p2).await;
    assert_eq!(at_police.path, vec![p1.clone(), n1.clone(), p2.clone()]);
    // L1 is labour's and ngo's affair: police knows nothing of that link.
    assert!(at_police.nodes.iter().all(|n| n.id != l1));

    // The hotline: at ngo, H1 links 30 police alerts by phone: one hub.
    let hub = network(&ngo, &h1, "").await;
    assert_eq!(hub.nodes.len(), 2, "{hub:?}");
    assert_eq!(hub.nodes[1].hub_links, 30);
    assert_eq!(hub.nodes[1].hub_type, IdentifierType::Phone as i32);

    // The console draws it, with the chain found.
    let page = console_get(&fed, "ngo", &format!("/alerts/{n1}/network?to={l1}")).await;
    assert!(page.contains("Chain (1 links)"), "{page}");
    assert!(page.contains("<svg class=\"network\""), "{page}");
    let page = console_get(&fed, "ngo", &format!("/alerts/{h1}/network")).await;
    assert!(page.contains("30 alerts (not shown)"), "{page}");
    if browser::available() {
        let b = browser::Browser::open(&fed, "police", "admin").await;
        b.goto(&format!("/alerts/{p1}/network?to={p2}")).await;
        assert!(b.text().await.contains("Chain (2 links)"));
        b.screenshot("network").await;
        b.close().await;
    }
    fed.shutdown().await;
}

async fn console_get(fed: &TestFederation, agency: &str, path: &str) -> String {
    console_exchange(fed, agency, "admin", &format!("GET {path} HTTP/1.1"), b"").await
}
