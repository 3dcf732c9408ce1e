//! The sharing policy on real nodes: each peer stores only what its rule
//! allows; denied, TLP:RED and unmatched alerts do not leave.

mod common;

use casebridge::ids::AlertId;
use casebridge::proto::v1::AlertDraft;
use casebridge::proto::v1::{Category, IdentifierType, Indicator, Severity, TimeWindow, Tlp};
use common::*;

fn draft(category: Category, tlp: Tlp, narrative: &str) -> AlertDraft {
    let mut d = sample_draft(narrative);
    let c = d.content.as_mut().unwrap();
    c.category = category as i32;
    c.tlp = tlp as i32;
    c.severity = Severity::High as i32;
    c.indicators = vec![Indicator::DebtBondage as i32];
    c.time_window = Some(TimeWindow {
        start: Some(pbjson_types::Timestamp {
            seconds: 1_789_123_456,
            nanos: 0,
        }), // 2026-09-11
        end: None,
    });
    d.subjects[0]
        .identifiers
        .extend([email_id("boss@example.org"), iban_id("NL91ABNA0417164300")]);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_peer_stores_only_what_its_rule_allows() {
    let policy = std::fs::canonicalize("docs/examples/policy-police.toml").unwrap();
    let fed = TestFederation::start_with(&["police", "labour", "ngo"], &[], move |a, cfg| {
        if a.as_str() == "police" {
            cfg.sharing.policy = Some(toml::Spanned::new(0..0, policy.clone()));
        }
    })
    .await;
    let cms = fed.client("police", "cms").await;
    let submit = |d: AlertDraft| {
        let mut cms = cms.clone();
        async move { submit_draft(&mut cms, d).await.id }
    };
    let child = submit(draft(Category::ChildTrafficking, Tlp::Amber, "child case")).await;
    let red = submit(draft(Category::LabourExploitation, Tlp::Red, "red case")).await;
    let labour_case = submit(draft(
        Category::LabourExploitation,
        Tlp::Amber,
        "greenhouse case",
    ))
    .await;

    // Delivery is in order per peer: once the last alert is there, the
    // earlier ones would have been too.
    let stored_at = |agency: &'static str| {
        let fed = &fed;
        let id = labour_case.clone();
        async move {
            fed.held(agency, &id).await;
            fed.alerts(agency).await
        }
    };
    let at_ngo = stored_at("ngo").await;
    let at_labour = stored_at("labour").await;
    for held in [&at_ngo, &at_labour] {
        assert!(!held.iter().any(|a| a.id == red), "TLP:RED left the node");
    }
    assert!(
        !at_ngo.iter().any(|a| a.id == child),
        "denied child case reached the NGO"
    );
    assert!(
        !at_labour.iter().any(|a| a.id == child),
        "no rule shares child cases with labour"
    );

    // ngo: country and month only, no narrative or indicators; phone tokens
    // and the person (fuzzy = token and encoding), no e-mail or IBAN.
    let ngo_copy = at_ngo.iter().find(|a| a.id == labour_case).unwrap();
    let c = ngo_copy.content.as_ref().unwrap();
    let loc = c.location.as_ref().unwrap();
    assert_eq!(
        (loc.country.as_str(), loc.region.as_str(), loc.city.as_str()),
        ("NL", "", "")
    );
    assert_eq!(
        c.time_window.as_ref().unwrap().start.unwrap().seconds,
        1_788_220_800,
        "2026-09-01"
    );
    assert!(c.narrative.is_empty() && c.indicators.is_empty());
    let id: AlertId = labour_case.parse().unwrap();
    let rec = fed.node("ngo").core().store.get(&id).unwrap().unwrap();
    assert_eq!(
        stored_token_types(&fed, "ngo", &labour_case),
        [IdentifierType::Phone as i32, IdentifierType::Person as i32]
    );
    assert!(
        rec.pseudonyms.iter().any(|s| !s.encodings.is_empty()),
        "person shared fuzzily"
    );

    // labour: everything its rule grants.
    let labour_copy = at_labour.iter().find(|a| a.id == labour_case).unwrap();
    let c = labour_copy.content.as_ref().unwrap();
    assert_eq!(c.location.as_ref().unwrap().city, "Westland");
    assert_eq!(c.narrative, "greenhouse case");
    assert_eq!(
        stored_token_types(&fed, "labour", &labour_case),
        [
            IdentifierType::Phone,
            IdentifierType::Email,
            IdentifierType::Person,
            IdentifierType::Iban
        ]
        .map(|t| t as i32)
    );
    fed.shutdown().await;
}
