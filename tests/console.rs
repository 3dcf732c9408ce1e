//! The web console, in a real browser: Chromium (headless) fetches every
//! page over the node's console listener with a client certificate from
//! its NSS database; actions are checked through the nodes' gRPC APIs.
//! Screenshots land in `target/console-screenshots/`.

#[path = "console/browser.rs"]
mod browser;
mod common;

use std::sync::Arc;

use browser::Browser;
use casebridge::config::Roles;
use casebridge::identity::TlsIdentity;
use casebridge::ids::ClientName;
use common::{
    TestFederation, WAIT, audit_after, audit_head, eventually, files_holding, with_console,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A page's text with its whitespace (table cells, line breaks) as single
/// spaces.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What input or text area `name` of the current page holds.
async fn field_value(b: &Browser, name: &str) -> String {
    b.client
        .execute(
            &format!("return document.getElementsByName('{name}')[0].value"),
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// An HTTP/1.1 exchange with a console over TLS with `client`'s
/// certificate, outside any browser (to read headers and status codes, and
/// to send what no page would): status code, headers (lower-case names),
/// body.
async fn https(
    fed: &TestFederation,
    agency: &str,
    client: &str,
    request_head: &str,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let text = common::console_exchange(fed, agency, client, request_head, body.as_bytes()).await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// Waits until `agency` holds an alert `matches` accepts.
async fn alert_arrives(
    fed: &TestFederation,
    agency: &str,
    what: &str,
    matches: impl Fn(&casebridge::proto::v1::Alert) -> bool,
) {
    let matches = &matches;
    eventually(what, || async move {
        fed.alerts(agency).await.iter().any(matches).then_some(())
    })
    .await;
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// The CSRF token of `client`'s pages (every page carries it).
async fn csrf_token(fed: &TestFederation, agency: &str, client: &str) -> String {
    let (status, _, body) = https(fed, agency, client, "GET /alerts HTTP/1.1", "").await;
    assert_eq!(status, 200, "{body}");
    body.split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its form token")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caseworker_submits_an_alert_in_the_browser_and_the_peer_receives_it() {
    if !browser::available() {
        return;
    }
    let fed = TestFederation::start_with(&["police", "ngo"], &[], with_console).await;
    let b = Browser::open(&fed, "ngo", "cms").await;
    b.goto("/alerts/new").await;
    b.screenshot("alert-form").await;

    // A bad country and a bad phone: both shown at their fields, nothing stored.
    b.choose("category", "CATEGORY_LABOUR_EXPLOITATION").await;
    b.choose("severity", "SEVERITY_HIGH").await;
    b.fill("country", "XX").await;
    b.choose("s0_role", "SUBJECT_ROLE_POTENTIAL_VICTIM").await;
    b.fill("s0_phones", "12").await;
    b.fill("s0_phone_region", "NL").await;
    b.fill(
        "narrative",
        "Workers housed in containers behind the greenhouse.",
    )
    .await;
    b.fill("purpose", &"case ".repeat(60)).await;
    b.follow("form[action='/alerts/new'] button[type=submit]")
        .await;
    let purpose = b.field_error("purpose").await;
    assert!(
        purpose.contains("at most 256 bytes"),
        "purpose error: {purpose:?}"
    );
    // The call was refused for its purpose before the draft was looked at:
    // with a short one, the draft's own problems show.
    b.fill("purpose", "NGO-2026-118").await;
    b.follow("form[action='/alerts/new'] button[type=submit]")
        .await;
    let country = b.field_error("country").await;
    let phone = b.field_error("s0_phones").await;
    b.screenshot("alert-form-errors").await;
    assert!(country.contains("country"), "country error: {country:?}");
    assert!(!phone.is_empty(), "phone error shown at the phone field");
    assert!(
        b.text().await.contains("Nothing was stored"),
        "the summary says nothing was stored"
    );
    assert!(fed.alerts("ngo").await.is_empty(), "nothing stored");
    // What was typed is still there, to be corrected.
    assert_eq!(field_value(&b, "s0_phones").await, "12");

    b.fill("country", "NL").await;
    b.fill("s0_phones", "+31 6 5555 0199").await;
    b.fill("s0_given", "Ana").await;
    b.fill("s0_family", "Popescu").await;
    b.fill("s0_dob", "1994-07-12").await;
    b.fill("purpose", "NGO-2026-118").await;
    b.fill("case_reference", "NGO-2026-118").await;
    b.fill("title", "Greenhouse containers, Westland").await;
    b.follow("form[action='/alerts/new'] button[type=submit]")
        .await;
    let path = b.path().await;
    // The agency's own reference and title head the alert's page.
    let page = b.text().await;
    assert!(
        page.contains("Greenhouse containers, Westland") && page.contains("NGO-2026-118"),
        "{page}"
    );
    assert!(
        path.starts_with("/alerts/ngo:"),
        "the new alert's page: {path}"
    );
    let id = path.trim_start_matches("/alerts/").to_owned();
    let stored = fed.alerts("ngo").await;
    assert_eq!(stored.len(), 1, "one alert");
    assert_eq!(stored[0].id, id);
    let content = stored[0].content.clone().unwrap();
    assert_eq!(content.location.unwrap().country, "NL");
    assert_eq!(
        stored[0].subjects[0].identifiers.len(),
        2,
        "phone and person"
    );

    // Delivered to police (checked through police's API), and the page
    // says who got it under which rule, when acknowledged.
    alert_arrives(&fed, "police", "police receives the alert", |a| a.id == id).await;
    eventually("the share is shown acknowledged", || {
        let b = &b;
        let id = id.clone();
        async move {
            b.goto(&format!("/alerts/{id}")).await;
            let text = b.text().await;
            (text.contains("police") && text.contains("stored")).then_some(())
        }
    })
    .await;
    assert!(b.text().await.contains("dev-share-everything"), "the rule");
    b.screenshot("alert-detail-own").await;

    // Update through the form (a new version reaches the peer), then retract.
    b.follow("a[href$='/edit']").await;
    assert_eq!(
        field_value(&b, "s0_phones").await,
        "+31 6 5555 0199",
        "the form holds the alert as it is"
    );
    b.fill("narrative", "Workers moved to a second site.").await;
    b.follow("form[action$='/edit'] button[type=submit]").await;
    assert!(b.text().await.contains("Workers moved to a second site."));
    alert_arrives(&fed, "police", "police receives version 2", |a| {
        a.id == id && a.version == 2
    })
    .await;
    // At the receiving agency, no page holds the raw identifiers.
    let police = Browser::open(&fed, "police", "analyst").await;
    police.goto(&format!("/alerts/{id}")).await;
    let source = police.client.source().await.unwrap();
    assert!(source.contains(&id), "the received alert is shown");
    assert!(
        source.contains("Workers moved to a second site."),
        "its second version, as shared"
    );
    for raw in ["5555 0199", "655550199", "Popescu", "1994-07-12"] {
        assert!(!source.contains(raw), "{raw} on the receiver's page");
    }
    police.screenshot("alert-detail-received").await;
    police.goto("/alerts").await;
    police.screenshot("alert-list").await;
    let list = police.client.source().await.unwrap();
    assert!(list.contains(&id));
    for raw in ["5555 0199", "655550199", "Popescu"] {
        assert!(!list.contains(raw), "{raw} on the receiver's list");
    }
    police.close().await;

    b.fill("reason", "Entered twice by mistake").await;
    b.follow("form[action$='/retract'] button").await;
    assert!(
        b.text()
            .await
            .contains("Retracted: Entered twice by mistake")
    );
    assert!(
        !b.exists("form[action$='/retract']").await,
        "no second retraction"
    );
    alert_arrives(&fed, "police", "police receives the retraction", |a| {
        a.id == id && a.retracted
    })
    .await;

    // The audit entry is the RPC's, with the console as its channel and
    // the case reference as its purpose.
    let mut admin = fed.client("ngo", "admin").await;
    let entries = audit_after(&mut admin, 0).await;
    let submit = entries
        .iter()
        .find(|e| e.action == "alert.submit" && e.outcome == "OK")
        .expect("the submit is audited");
    assert_eq!(submit.actor, "client:cms");
    assert_eq!(submit.purpose, "NGO-2026-118");
    assert!(
        submit.body.contains("\"channel\":\"console\""),
        "{}",
        submit.body
    );
    b.close().await;

    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_certificate_sees_no_controls_and_forged_posts_are_refused_and_audited() {
    if !browser::available() {
        return;
    }
    let fed = TestFederation::start_with(&["police", "ngo"], &[], |a, c| {
        with_console(a, c);
        // The analyst may only read here.
        c.clients.insert(
            ClientName::new("analyst").unwrap(),
            serde_json::from_str::<Roles>(r#"["read"]"#).unwrap(),
        );
    })
    .await;
    let mut cms = fed.client("ngo", "cms").await;
    let alert = common::submit(&mut cms, "Seen at the bus station at night.").await;

    let b = Browser::open(&fed, "ngo", "analyst").await;
    b.goto("/alerts").await;
    assert!(
        b.text().await.contains(&alert.id),
        "the reader sees the alert"
    );
    assert!(
        !b.exists("a[href='/alerts/new']").await,
        "no submit control"
    );
    b.goto(&format!("/alerts/{}", alert.id)).await;
    assert!(
        !b.exists("form[action$='/retract']").await,
        "no retract control"
    );
    assert!(!b.exists("a[href$='/edit']").await, "no update control");
    b.screenshot("alert-detail-read-only").await;
    b.close().await;

    // A forged POST with the reader's own valid form token: the service
    // refuses it (403) and the audit log keeps the attempt.
    let mut admin = fed.client("ngo", "admin").await;
    let head = audit_head(&mut admin).await;
    let token = csrf_token(&fed, "ngo", "analyst").await;
    let form = format!(
        "csrf={token}&category=CATEGORY_OTHER&severity=SEVERITY_LOW&tlp=TLP_GREEN&request_id=forged-1"
    );
    let (status, _, body) = https(
        &fed,
        "ngo",
        "analyst",
        "POST /alerts/new HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        &form,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("lacks the `submit` role"), "{body}");
    let retract = format!("csrf={token}&expected_version=1&reason=forged");
    let (status, _, body) = https(
        &fed,
        "ngo",
        "analyst",
        &format!(
            "POST /alerts/{}/retract HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
            alert.id
        ),
        &retract,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let entries = audit_after(&mut admin, head).await;
    for action in ["alert.submit", "alert.retract"] {
        let e = entries
            .iter()
            .find(|e| e.action == action && e.actor == "client:analyst")
            .unwrap_or_else(|| panic!("{action} attempt audited: {entries:?}"));
        assert_eq!(e.outcome, "PERMISSION_DENIED");
        assert!(e.body.contains("\"channel\":\"console\""), "{}", e.body);
    }
    assert_eq!(fed.alerts("ngo").await.len(), 1, "nothing stored");
    assert!(!fed.alerts("ngo").await[0].retracted, "nothing retracted");

    // Without the token, or from another site, a POST does not reach any
    // service.
    let (status, _, _) = https(
        &fed,
        "ngo",
        "cms",
        "POST /alerts/new HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        "category=CATEGORY_OTHER&severity=SEVERITY_LOW&tlp=TLP_GREEN",
    )
    .await;
    assert_eq!(status, 403, "no token");
    let cms_token = csrf_token(&fed, "ngo", "cms").await;
    let (status, _, _) = https(
        &fed,
        "ngo",
        "cms",
        "POST /alerts/new HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nOrigin: https://attacker.example\r\nSec-Fetch-Site: cross-site",
        &format!("csrf={cms_token}&category=CATEGORY_OTHER&severity=SEVERITY_LOW&tlp=TLP_GREEN"),
    )
    .await;
    assert_eq!(status, 403, "cross-site");
    // Another certificate's token is worth nothing.
    let (status, _, _) = https(
        &fed,
        "ngo",
        "cms",
        "POST /alerts/new HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        &format!("csrf={token}&category=CATEGORY_OTHER&severity=SEVERITY_LOW&tlp=TLP_GREEN"),
    )
    .await;
    assert_eq!(status, 403, "the reader's token used by cms");
    assert_eq!(fed.alerts("ngo").await.len(), 1, "still nothing stored");
    fed.shutdown().await;
}

/// Every section link a certificate is shown opens for it (no link leads
/// to a 403), and the overview counts only what the viewer may open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_shown_opens_for_the_viewer() {
    let fed = TestFederation::start_with(&["police"], &[], with_console).await;
    for (client, _) in casebridge::certs::DEV_CLIENTS {
        let (status, _, body) = https(&fed, "police", client, "GET / HTTP/1.1", "").await;
        assert_eq!(status, 200, "{client}: {body}");
        let nav = body
            .split("<nav aria-label=\"Sections\">")
            .nth(1)
            .and_then(|n| n.split("</nav>").next())
            .expect("the section links");
        let links: Vec<&str> = nav
            .split("href=\"")
            .skip(1)
            .filter_map(|l| l.split('"').next())
            .collect();
        for link in &links {
            let (status, _, page) =
                https(&fed, "police", client, &format!("GET {link} HTTP/1.1"), "").await;
            assert_eq!(
                status, 200,
                "{client} is shown {link}, which answers {status}: {page}"
            );
        }
        let sees_requests = links.contains(&"/requests");
        assert_eq!(
            sees_requests,
            matches!(*client, "analyst" | "legal"),
            "{client}: {links:?}"
        );
        // The administrator's overview shows the node's health, but no
        // count of requests it may not open.
        if !sees_requests {
            assert!(
                !body.contains("Disclosure requests open"),
                "{client} is counted requests it cannot open"
            );
        }
    }
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_carries_the_security_headers() {
    let fed = TestFederation::start_with(&["police", "ngo"], &[], with_console).await;
    let mut cms = fed.client("ngo", "cms").await;
    let alert = common::submit(&mut cms, "Headers.").await;
    for path in [
        "/".to_string(),
        "/alerts".into(),
        "/alerts/new".into(),
        format!("/alerts/{}", alert.id),
        "/no-such-page".into(),
    ] {
        let (status, headers, body) =
            https(&fed, "ngo", "cms", &format!("GET {path} HTTP/1.1"), "").await;
        assert!(status == 200 || status == 404, "{path}: {status} {body}");
        let csp = header(&headers, "content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("script-src"), "no script is allowed: {csp}");
        assert_eq!(header(&headers, "cache-control"), "no-store", "{path}");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert!(!body.contains("<script"), "{path} has no script");
    }
    // The stylesheet comes from the node itself.
    let (status, headers, css) =
        https(&fed, "ngo", "cms", "GET /assets/console.css HTTP/1.1", "").await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").starts_with("text/css"));
    assert!(
        !css.contains("http://") && !css.contains("https://"),
        "nothing from outside"
    );
    // A client certificate of another agency's CA has no way in: the
    // handshake fails, no page is sent.
    let pki = fed.pki("police");
    let foreign =
        TlsIdentity::load(&pki.join("clients/cms.pem"), &pki.join("clients/cms.key")).unwrap();
    let mut tls =
        casebridge::identity::client_tls_config(&foreign, &fed.layout.federation_ca, &[]).unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(fed.node("ngo").console_addr().unwrap())
        .await
        .unwrap();
    let answer = match tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
    {
        Err(_) => Vec::new(),
        Ok(mut stream) => {
            let _ = stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
            out
        }
    };
    assert!(
        answer.is_empty(),
        "police's certificate got an answer from ngo's console"
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_is_reviewed_a_disclosure_requested_and_approved_and_the_release_shows_its_handling_code()
 {
    if !browser::available() {
        return;
    }
    let fed = TestFederation::start_with(&["police", "ngo"], &[], with_console).await;
    let mut ngo_cms = fed.client("ngo", "cms").await;
    common::submit(&mut ngo_cms, "Victim met at the shelter.").await;
    let mut police_cms = fed.client("police", "cms").await;
    common::submit(&mut police_cms, "Same phone in a raid.").await;
    let police_analyst = fed.client("police", "analyst").await;
    let number = common::first_hit(&police_analyst).await;

    // The police analyst finds the hit, confirms it and asks for the data.
    let b = Browser::open(&fed, "police", "analyst").await;
    b.goto("/hits").await;
    b.screenshot("hits").await;
    b.follow(&format!("a[href='/hits/{number}']")).await;
    let page = b.text().await;
    assert!(page.contains("Phone") && page.contains("exact"), "{page}");
    assert!(
        page.contains("needs this hit confirmed"),
        "no request before a confirmation: {page}"
    );
    b.click("#verdict-HIT_VERDICT_CONFIRMED").await;
    b.fill("note", "same number as our raid").await;
    b.follow("form[action$='/review'] button").await;
    assert!(b.text().await.contains("Confirmed"), "the review is shown");
    b.screenshot("hit-confirmed").await;
    b.choose("legal_basis", "LEGAL_BASIS_DIRECTIVE_2023_977")
        .await;
    b.fill("citation", "Art. 4").await;
    b.fill("reason", "Identify the victim for protection measures.")
        .await;
    b.fill("case_reference", "POL-2026-0042").await;
    // Police's own number for the person, for the NGO to verify the match.
    b.click("form[action$='/request'] details summary").await;
    b.fill("s0_phones", "06-55550101").await;
    b.fill("s0_phone_region", "NL").await;
    b.follow("form[action$='/request'] button[type=submit]")
        .await;
    let path = b.path().await;
    assert!(path.starts_with("/requests/"), "{path}");
    let request_id = path.trim_start_matches("/requests/").to_owned();
    b.screenshot("request-sent").await;
    assert!(
        !b.exists("form[action$='/decide']").await,
        "the requester cannot decide its own request"
    );
    b.goto("/requests?box=out").await;
    assert!(b.text().await.contains(&request_id), "the outbox lists it");
    b.screenshot("requests-outbox").await;
    b.close().await;

    // The NGO's legal officer sees it in the inbox and approves, releasing
    // the phone under H2.
    let legal = Browser::open(&fed, "ngo", "legal").await;
    eventually("the request reaches the ngo's inbox", || {
        let legal = &legal;
        let id = request_id.clone();
        async move {
            legal.goto("/requests?box=in").await;
            legal.text().await.contains(&id).then_some(())
        }
    })
    .await;
    assert!(
        legal.text().await.contains("due in"),
        "a deadline countdown"
    );
    legal.screenshot("requests-inbox").await;
    legal.goto(&format!("/requests/{request_id}")).await;
    let page = words(&legal.text().await);
    assert!(
        page.contains("Does the requester hold the same person?") && page.contains("Phone yes"),
        "the requester's phone verified against the NGO's alert: {page}"
    );
    // The form starts at the least, offers only what the rule allows, and
    // says the rule's maximum and the legal basis in words.
    let page = legal.text().await;
    assert!(
        page.contains("at most the city, the day, the narrative, the indicators; in clear: Phone, E-mail, Person"),
        "{page}"
    );
    assert!(page.contains("Directive (EU) 2023/977"), "{page}");
    assert!(!page.contains("Directive 2023 977"), "{page}");
    let chosen = |id: &'static str| {
        let legal = &legal;
        async move {
            legal
                .client
                .execute(
                    &format!("return document.getElementById('{id}').value"),
                    vec![],
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(chosen("location").await, "LOCATION_DETAIL_NONE");
    assert_eq!(chosen("time").await, "TIME_DETAIL_NONE");
    assert!(legal.exists("#id-IDENTIFIER_TYPE_PHONE").await);
    for forbidden in ["DOCUMENT", "IBAN", "CRYPTO_WALLET"] {
        assert!(
            !legal
                .exists(&format!("#id-IDENTIFIER_TYPE_{forbidden}"))
                .await,
            "{forbidden} is beyond the rule"
        );
    }
    legal.click("#outcome-DISCLOSURE_STATE_APPROVED").await;
    legal.click("#id-IDENTIFIER_TYPE_PHONE").await;
    legal
        .fill("contact_point", "NGO legal desk, +31 20 555 0000")
        .await;
    legal.choose("handling", "HANDLING_CODE_H2").await;
    legal.screenshot("request-decide").await;
    legal.follow("form[action$='/decide'] button").await;
    let page = legal.text().await;
    assert!(page.contains("Approved"), "{page}");
    legal.close().await;

    // The release shows at the requester with its handling code.
    let b = Browser::open(&fed, "police", "analyst").await;
    eventually("the release reaches police", || {
        let b = &b;
        async move {
            b.goto("/releases").await;
            b.text().await.contains("received").then_some(())
        }
    })
    .await;
    b.screenshot("releases").await;
    b.follow("a[href^='/releases/']").await;
    let page = b.text().await;
    assert!(
        page.contains("H2 — do not pass on without the holder's consent"),
        "{page}"
    );
    assert!(
        page.contains("+31 6 5555 0101") || page.contains("+31655550101"),
        "the released phone: {page}"
    );
    b.screenshot("release").await;
    // The figures Directive 2023/977 asks for, in the console too.
    b.goto("/requests/stats").await;
    let stats = words(&b.text().await);
    assert!(stats.contains("ngo sent 1 1 0 0 0 0 0 0"), "{stats}");
    b.close().await;

    // The NGO withdraws the release: police's copy is purged.
    let legal = Browser::open(&fed, "ngo", "legal").await;
    legal.goto("/releases").await;
    legal.follow("a[href^='/releases/']").await;
    legal.follow("form[action$='/withdraw'] button").await;
    assert!(
        !legal.field_error("reason").await.is_empty(),
        "a withdrawal says why: {}",
        legal.text().await
    );
    legal.fill("reason", "The victim withdrew consent.").await;
    legal.follow("form[action$='/withdraw'] button").await;
    assert!(legal.text().await.contains("withdrawn"));
    legal.close().await;
    let b = Browser::open(&fed, "police", "analyst").await;
    eventually("the withdrawal reaches police", || {
        let b = &b;
        async move {
            b.goto("/releases").await;
            b.text().await.contains("withdrawn").then_some(())
        }
    })
    .await;
    b.close().await;
    fed.shutdown().await;
}

/// A possible person hit (no date of birth on one side) is announced only
/// once confirmed here: the hit page says so before, and not after; the
/// other agency's alert, shared with this node, is a link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_possible_hit_page_follows_its_confirmation() {
    if !browser::available() {
        return;
    }
    let fed = TestFederation::start_with(&["police", "ngo"], &[], with_console).await;
    let person = |given: &str, family: &str, dob: &str| {
        let mut d = common::sample_draft("Worker found at a greenhouse.");
        d.subjects[0].identifiers = vec![common::person_id(given, family, dob)];
        d
    };
    let mut ngo = fed.client("ngo", "cms").await;
    let theirs = common::submit_draft(&mut ngo, person("Olena", "Kovalenko", "")).await;
    alert_arrives(&fed, "police", "police receives ngo's alert", |a| {
        a.id == theirs.id
    })
    .await;
    let mut police = fed.client("police", "cms").await;
    common::submit_draft(&mut police, person("Олена", "Коваленко", "1990-03-04")).await;
    let number = common::first_hit(&fed.client("police", "analyst").await).await;

    let b = Browser::open(&fed, "police", "analyst").await;
    b.goto(&format!("/hits/{number}")).await;
    let page = b.text().await;
    assert!(page.contains("possible"), "{page}");
    assert!(page.contains("not announced to ngo"), "{page}");
    assert!(
        b.exists(&format!("a[href='/alerts/{}']", theirs.id)).await,
        "their alert, held here, is a link: {page}"
    );
    b.click("#verdict-HIT_VERDICT_CONFIRMED").await;
    b.follow("form[action$='/review'] button").await;
    let page = b
        .text()
        .await
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(page.contains("They know of it yes"), "{page}");
    assert!(
        !page.contains("not announced"),
        "no stale note once announced: {page}"
    );
    b.screenshot("hit-possible-confirmed").await;
    b.close().await;
    fed.shutdown().await;
}

/// Sets the policy editor's text (typing a whole file key by key would
/// only make the test slow).
async fn set_policy_text(b: &Browser, text: &str) {
    b.client
        .execute(
            "document.getElementById('policy_text').value = arguments[0]",
            vec![serde_json::json!(text)],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_fixes_a_policy_typo_sees_the_diff_and_installs_it_and_the_next_alert_follows_it()
 {
    if !browser::available() {
        return;
    }
    // The policy's test cases, beside the node's files.
    let cases_dir = tempfile::tempdir().unwrap();
    let draft = serde_json::to_string(&common::sample_draft("labour case")).unwrap();
    std::fs::write(cases_dir.path().join("labour.json"), draft).unwrap();
    std::fs::write(
        cases_dir.path().join("policy.cases.toml"),
        r#"
[[case]]
name = "labour cases go to police"
alert = "labour.json"
peer = "police"
expect = "share"

[[case]]
name = "sexual exploitation goes to police"
alert = "labour.json"
category = "sexual_exploitation"
peer = "police"
expect = "share"
"#,
    )
    .unwrap();
    let cases = cases_dir.path().join("policy.cases.toml");
    let fed = TestFederation::start_with(&["police", "ngo"], &[], move |a, c| {
        with_console(a, c);
        c.sharing.tests = Some(toml::Spanned::new(0..0, cases.clone()));
    })
    .await;
    let mut cms = fed.client("ngo", "cms").await;
    let before = common::submit(&mut cms, "Stored before the change.").await;

    let b = Browser::open(&fed, "ngo", "admin").await;
    b.goto("/policy").await;
    b.screenshot("policy").await;
    let text = std::fs::read_to_string(fed.pki("ngo").join("policy.toml")).unwrap();
    let typo_line = text
        .lines()
        .position(|l| l.starts_with("effect = \"share\""))
        .expect("the development policy has a share rule")
        + 1;
    set_policy_text(
        &b,
        &text.replacen("effect = \"share\"", "efect = \"share\"", 1),
    )
    .await;
    b.follow("form[action='/policy/check'] button:not([formaction])")
        .await;
    let page = b.text().await;
    b.screenshot("policy-typo").await;
    assert!(
        page.contains(&format!("Line {typo_line}, column 1:")),
        "the typo's line and column (line {typo_line}): {page}"
    );
    assert!(page.contains("efect"), "{page}");

    // Fixed, and narrowed to sexual exploitation: the diff shows the stored
    // labour alert would no longer go to police, and one test case fails.
    let narrowed = text.replacen(
        "[rules.share]",
        "[rules.when]\ncategories = [\"sexual_exploitation\"]\n\n[rules.share]",
        1,
    );
    set_policy_text(&b, &narrowed).await;
    b.fill("comment", "share only sexual exploitation cases")
        .await;
    b.follow("form[action='/policy/check'] button:not([formaction])")
        .await;
    let page = b.text().await;
    b.screenshot("policy-diff").await;
    assert!(page.contains("The draft is valid"), "{page}");
    let row = b
        .client
        .find(fantoccini::Locator::XPath(
            "//div[@class='checked']//tr[th[normalize-space()='police']]",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        row.starts_with("police 0 1 0 0"),
        "police: newly 0, no longer 1: {row}"
    );
    assert!(page.contains("1 of 2 fail"), "the test cases: {page}");
    b.follow("button[formaction='/policy/install']").await;
    let page = b.text().await;
    assert!(page.contains("Version 2 is now in force"), "{page}");
    assert!(
        page.contains("share only sexual exploitation cases"),
        "the history: {page}"
    );
    b.screenshot("policy-installed").await;
    b.close().await;

    // The next alerts follow it: labour stays home, sexual exploitation goes.
    let labour = common::submit(&mut cms, "Labour case after the change.").await;
    let mut draft = common::sample_draft("Sexual exploitation after the change.");
    draft.content.as_mut().unwrap().category =
        casebridge::proto::v1::Category::SexualExploitation as i32;
    let sexual = common::submit_draft(&mut cms, draft).await;
    alert_arrives(
        &fed,
        "police",
        "police receives the sexual exploitation alert",
        |a| a.id == sexual.id,
    )
    .await;
    let at_police = fed.alerts("police").await;
    assert!(
        at_police.iter().any(|a| a.id == before.id),
        "sent before the change"
    );
    assert!(
        !at_police.iter().any(|a| a.id == labour.id),
        "the labour alert stays home"
    );
    let mut admin = fed.client("ngo", "admin").await;
    let entries = audit_after(&mut admin, 0).await;
    let set = entries
        .iter()
        .find(|e| e.action == "policy.set" && e.outcome == "OK")
        .expect("the install is audited");
    assert!(set.body.contains("\"channel\":\"console\""), "{}", set.body);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_draws_the_last_days_and_the_audit_log_verifies_and_exports() {
    if !browser::available() {
        return;
    }
    let fed = TestFederation::start_with(&["police", "ngo"], &[], with_console).await;
    let mut ngo = fed.client("ngo", "cms").await;
    common::submit(&mut ngo, "One.").await;
    let mut police = fed.client("police", "cms").await;
    let sent = common::submit(&mut police, "Two.").await;
    alert_arrives(&fed, "ngo", "ngo receives police's alert", |a| {
        a.id == sent.id
    })
    .await;
    common::first_hit(&fed.client("ngo", "analyst").await).await;

    let b = Browser::open(&fed, "ngo", "admin").await;
    b.goto("/").await;
    let charts = b
        .client
        .find_all(fantoccini::Locator::Css("svg.chart"))
        .await
        .unwrap();
    assert_eq!(charts.len(), 3, "alerts, hits and delivery time");
    let first = charts[0]
        .attr("aria-label")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        first.contains("1 recorded here and 1 received"),
        "today's counts: {first}"
    );
    let hits = charts[1]
        .attr("aria-label")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        hits.contains("hits found") && !hits.contains(": 0 hits"),
        "today's hits: {hits}"
    );
    let page = b.text().await;
    assert!(
        page.contains("police") && page.contains("up"),
        "police's link: {page}"
    );
    b.screenshot("overview").await;

    // Keyboard first: the first Tab lands on "skip to the page's content".
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E004}")
        .await
        .unwrap();
    let focused = b
        .client
        .active_element()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(focused, "Skip to the page's content");
    // At 200% zoom (a 640-pixel-wide window shows what 1280 shows at 2x)
    // the pages reflow: nothing runs off to the side.
    b.client.set_window_size(640, 1400).await.unwrap();
    for path in ["/", "/alerts", "/hits", "/policy", "/audit"] {
        b.goto(path).await;
        let overflow = b
            .client
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{path} is wider than the window at 200% zoom: {overflow}"
        );
    }
    b.goto("/").await;
    b.screenshot("overview-200-percent").await;
    b.client.set_window_size(1280, 1600).await.unwrap();

    b.goto("/audit").await;
    b.follow("form[action='/audit/verify'] button").await;
    let page = b.text().await;
    assert!(page.contains("The chain is intact"), "{page}");
    b.screenshot("audit").await;
    // Newest first, each time on one line (a range over a cell's text has
    // one client rectangle per line it takes).
    b.goto("/audit").await;
    let shape = b
        .client
        .execute(
            "const n = [...document.querySelectorAll('table.audit tbody th')].map(t => +t.textContent);
             const r = document.createRange();
             r.selectNodeContents(document.querySelector('table.audit td.when'));
             return [n[0], n[n.length - 1], r.getClientRects().length];",
            vec![],
        )
        .await
        .unwrap();
    let shape: Vec<i64> = shape
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert!(shape[0] > shape[1], "newest entry first: {shape:?}");
    assert_eq!(shape[2], 1, "the time on one line: {shape:?}");
    b.close().await;

    // The export is the JSON Lines file `audit verify --file` reads.
    let token = csrf_token(&fed, "ngo", "admin").await;
    let (status, headers, body) = https(
        &fed,
        "ngo",
        "admin",
        "POST /audit/export HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        &format!("csrf={token}&action=alert.submit"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(header(&headers, "content-disposition").starts_with("attachment"));
    let lines: Vec<&str> = body.lines().collect();
    assert!(!lines.is_empty());
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("{\"seq\":") || l.starts_with("{\"checkpoint\":")),
        "{body}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"action\":\"alert.submit\""))
    );
    fed.shutdown().await;
}

/// Reloads a job page until the job has finished (its page stops asking
/// the browser to come back).
async fn job_finishes(b: &Browser) -> String {
    let started = std::time::Instant::now();
    loop {
        let text = b.text().await;
        if !text.contains("updates itself") {
            return text;
        }
        assert!(
            started.elapsed() < common::WAIT * 4,
            "the import did not finish: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let path = b.path().await;
        b.goto(&path).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_is_checked_row_by_row_then_imported_and_the_alerts_exported() {
    if !browser::available() {
        return;
    }
    let fed = TestFederation::start_with(&["ngo", "police"], &[], with_console).await;
    let dir = tempfile::tempdir().unwrap();
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    // The example register, and two rows no one can import as they are.
    let mut register = std::fs::read_to_string(docs.join("register.csv")).unwrap();
    register.push_str("NGO-2024-0040,Forced labour,,NL,Venlo,01/07/2024,Bad phone,Piotr,Nowak,1990,+31 6 1234,,,\n");
    register.push_str(
        "NGO-2024-0041,Robbery,,NL,Venlo,01/07/2024,Unknown type,Jan,Kowalski,1991,+31 6 99,,,\n",
    );
    let file = dir.path().join("register.csv");
    std::fs::write(&file, register).unwrap();
    let mapping = docs.join("register-mapping.toml");

    let b = Browser::open(&fed, "ngo", "cms").await;
    b.goto("/import").await;
    b.screenshot("import-form").await;
    // No file: the error is at its field, nothing happens.
    b.follow("button[value='check']").await;
    assert!(
        b.field_error("register")
            .await
            .contains("Choose the register"),
        "{}",
        b.text().await
    );

    b.attach("register", &file).await;
    b.attach("mapping_file", &mapping).await;
    b.follow("button[value='check']").await;
    let text = job_finishes(&b).await;
    b.screenshot("import-check").await;
    // The upload waits for "Run" sealed under a key only memory holds.
    let uploads = fed.config("ngo").uploads_dir();
    assert!(
        uploads.read_dir().unwrap().next().is_some(),
        "the upload is kept"
    );
    assert_eq!(
        files_holding(&uploads, b"Piotr"),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(
        text.contains("5 rows: would be created 3, would be updated 0, unchanged 0, would be retracted 0, rejected 2"),
        "{text}"
    );
    // Row by row, each problem at its cell under its header, with the
    // value; every problem of a row at once (the unknown type the importer
    // found, the bad phone the node found), in a caseworker's words.
    assert!(
        text.contains("Phone (K5): phone number \"+31 6 1234\""),
        "{text}"
    );
    assert!(
        text.contains("Type (B6): \"Robbery\" is not a category CaseBridge knows"),
        "{text}"
    );
    assert!(
        text.contains("Phone (K6): phone number \"+31 6 99\""),
        "both problems of row 6: {text}"
    );
    assert!(!text.contains("in the mapping"), "{text}");
    assert!(
        text.contains("NGO-2024-0017") && text.contains("would be created"),
        "{text}"
    );
    let mut cms = fed.client("ngo", "cms").await;
    let listed = |source: &str| casebridge::proto::v1::ListImportedRequest {
        source: source.into(),
        ..Default::default()
    };
    assert!(
        cms.alerts
            .list_imported(listed("ngo-register"))
            .await
            .unwrap()
            .into_inner()
            .records
            .is_empty(),
        "a check stores nothing"
    );

    // Run it: the good rows are stored, the rejected ones can be downloaded.
    b.follow("form[action$='/run'] button").await;
    let text = job_finishes(&b).await;
    b.screenshot("import-done").await;
    assert!(
        text.contains("5 rows: created 3, updated 0, unchanged 0, retracted 0, rejected 2"),
        "{text}"
    );
    assert!(b.exists("a[href$='/rejected.csv']").await);
    let records = cms
        .alerts
        .list_imported(listed("ngo-register"))
        .await
        .unwrap()
        .into_inner()
        .records;
    let ids: Vec<&str> = records.iter().map(|r| r.source_id.as_str()).collect();
    assert_eq!(ids, ["NGO-2024-0017", "NGO-2024-0023", "NGO-2024-0031"]);
    // The list tells the cases apart by the register's own numbers and
    // the titles the mapping makes.
    b.goto("/alerts").await;
    let list = b.text().await;
    assert!(
        list.contains("NGO-2024-0017") && list.contains("Sexual exploitation · Rotterdam"),
        "{list}"
    );
    b.screenshot("alerts-with-case-numbers").await;
    // Each row was the viewer's ImportAlert, audited with the console as its channel.
    let mut admin = fed.client("ngo", "admin").await;
    let entries = audit_after(&mut admin, 0).await;
    let imports: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "alert.import" && e.body.contains("IMPORT_OUTCOME_CREATED"))
        .collect();
    // Three rows checked (validate_only), then the same three stored.
    assert_eq!(imports.len(), 6);
    assert_eq!(
        imports
            .iter()
            .filter(|e| e.body.contains("validate_only"))
            .count(),
        3
    );
    assert!(
        imports
            .iter()
            .all(|e| e.actor == "client:cms" && e.body.contains("\"channel\":\"console\""))
    );

    // The export button on the alert list, and what it gives.
    b.goto("/alerts?scope=own").await;
    assert!(
        b.exists("form[action='/alerts/export'] select[name='format']")
            .await
    );
    b.screenshot("alerts-export").await;
    let (status, headers, body) = https(
        &fed,
        "ngo",
        "cms",
        "GET /alerts/export?scope=own&format=csv HTTP/1.1",
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        header(&headers, "content-disposition").starts_with("attachment; filename=\"ngo-alerts-")
    );
    assert_eq!(header(&headers, "cache-control"), "no-store");
    let mut lines = body.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("cb_AlertId,cb_Origin,cb_Version")
    );
    assert_eq!(lines.filter(|l| l.starts_with("ngo:")).count(), 3);
    assert!(body.contains("Popescu"));
    // Another certificate sees neither the job nor its rejected rows.
    let (status, _, _) = https(&fed, "ngo", "analyst", "GET /import/2 HTTP/1.1", "").await;
    assert_eq!(status, 404);
    b.close().await;
    fed.shutdown().await;
}

/// The `sh` block that follows `heading` in docs/console.md.
fn console_doc_block(heading: &str) -> String {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/console.md")).unwrap();
    let from = doc.find(heading).unwrap_or_else(|| panic!("{heading}"));
    let block = &doc[from..];
    let start = block.find("```sh\n").expect("an sh block") + "```sh\n".len();
    let end = block[start..].find("```").expect("the block's end");
    block[start..start + end].to_owned()
}

/// Runs a block of docs/console.md with bash, as a reader would paste it,
/// with `casebridge` on the PATH; fails on the first failing line.
fn run_doc_block(
    script: &str,
    home: &std::path::Path,
    pki: &std::path::Path,
    password: &str,
) -> String {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_casebridge"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .args(["-euc", script])
        .env("HOME", home)
        .env("PKI", pki)
        .env("PASSWORD", password)
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}\nfailed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The password `certs init` or `certs bundle` printed for ngo's `legal`.
fn printed_password(out: &str) -> String {
    out.lines()
        .find(|l| l.contains("legal.p12"))
        .and_then(|l| l.split("password ").nth(1))
        .unwrap_or_else(|| panic!("a password for legal.p12: {out}"))
        .trim()
        .to_owned()
}

/// docs/console.md's certificate steps run as written on a profile that
/// has never started a browser, and a lost password is replaced by a new
/// file that imports.
#[test]
fn the_console_guide_certificate_steps_run_as_written() {
    if !browser::available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let (code, out, err) = common::cli(&[
        "certs",
        "init",
        "--federation",
        "doc.casebridge",
        "--agencies",
        "ngo",
        "--out",
        pki.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("casebridge certs bundle --dir"), "{out}");
    let import = console_doc_block("### Importing it");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let listed = run_doc_block(&import, &home, &pki, &printed_password(&out));
    assert!(
        listed.contains("ngo client legal") && listed.contains("u,u,u"),
        "the certificate with its key: {listed}"
    );
    assert!(listed.contains("federation CA"), "{listed}");

    let again = console_doc_block("Lost a password?");
    let out = run_doc_block(&again, &home, &pki, "");
    let fresh = tmp.path().join("fresh-home");
    std::fs::create_dir(&fresh).unwrap();
    let listed = run_doc_block(&import, &fresh, &pki, &printed_password(&out));
    assert!(
        listed.contains("ngo client legal") && listed.contains("u,u,u"),
        "{listed}"
    );
}

/// An alert richer than the old form (three people, two phones for one,
/// a wallet, a plate, an advert URL) opens in the console's form, takes
/// a fourth person, and saves without losing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_form_holds_everything_the_api_takes() {
    use casebridge::proto::v1::identifier::Kind;
    use casebridge::proto::v1::{AdvertUrl, CryptoWallet, Identifier, Phone, VehiclePlate};
    if !browser::available() {
        return;
    }
    let fed = TestFederation::start_with(&["ngo", "police"], &[], with_console).await;
    let id = |k: Kind| Identifier { kind: Some(k) };
    let mut draft = common::sample_draft("Drivers recruited through an advert.");
    draft.subjects[0].identifiers = vec![
        id(Kind::Phone(Phone {
            number: "+31 6 5555 0101".into(),
            region: String::new(),
        })),
        id(Kind::Phone(Phone {
            number: "+40 721 234 567".into(),
            region: String::new(),
        })),
        id(Kind::CryptoWallet(CryptoWallet {
            chain: "tron".into(),
            address: "TQ4v2p7Lg6sGd1CqJ1xW5mYk8Rz3uN9bXe".into(),
        })),
    ];
    let mut second = draft.subjects[0].clone();
    second.identifiers = vec![id(Kind::VehiclePlate(VehiclePlate {
        country: "NL".into(),
        plate: "12-ABC-3".into(),
    }))];
    let mut third = draft.subjects[0].clone();
    third.identifiers = vec![id(Kind::AdvertUrl(AdvertUrl {
        url: "https://ads.example.org/jobs/123".into(),
    }))];
    draft.subjects.push(second);
    draft.subjects.push(third);
    let mut cms = fed.client("ngo", "cms").await;
    let stored = common::submit_draft(&mut cms, draft).await;

    let b = Browser::open(&fed, "ngo", "cms").await;
    b.goto(&format!("/alerts/{}/edit", stored.id)).await;
    assert_eq!(
        field_value(&b, "s0_phones").await,
        "+31 6 5555 0101\n+40 721 234 567"
    );
    assert!(
        field_value(&b, "s0_wallets")
            .await
            .starts_with("tron: TQ4v")
    );
    assert_eq!(field_value(&b, "s1_plates").await, "NL: 12-ABC-3");
    assert_eq!(
        field_value(&b, "s2_urls").await,
        "https://ads.example.org/jobs/123"
    );
    // A fourth block for a new person is there; a fifth comes on request.
    assert!(b.exists("[name='s3_phones']").await);
    assert!(!b.exists("[name='s4_phones']").await);
    b.follow("button[name='add_person']").await;
    assert!(
        b.exists("[name='s4_phones']").await,
        "another person's block"
    );
    assert_eq!(
        field_value(&b, "s0_phones").await,
        "+31 6 5555 0101\n+40 721 234 567",
        "nothing typed is lost"
    );
    b.fill("s3_emails", "recruiter@example.org").await;
    b.screenshot("alert-form-rich").await;
    b.follow("form[action$='/edit'] button[type=submit]:not([name])")
        .await;
    assert_eq!(b.path().await, format!("/alerts/{}", stored.id));
    let after = fed
        .alerts("ngo")
        .await
        .into_iter()
        .find(|a| a.id == stored.id)
        .unwrap();
    assert_eq!(after.version, 2);
    assert_eq!(after.subjects.len(), 4, "{after:?}");
    assert_eq!(&after.subjects[..3], &stored.subjects[..], "nothing lost");
    b.close().await;

    // A CSV export cannot hold this alert whole: the console says so and
    // offers JSON Lines, or the cut file knowingly.
    let get = |path: &str| format!("GET {path} HTTP/1.1");
    let (status, _, body) = https(
        &fed,
        "ngo",
        "cms",
        &get("/alerts/export?scope=own&format=csv"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("do not fit a CSV row") && body.contains("1 of the 1 alerts"),
        "{body}"
    );
    assert!(body.contains("format=jsonl"), "{body}");
    let (status, headers, body) = https(
        &fed,
        "ngo",
        "cms",
        &get("/alerts/export?scope=own&format=csv&cut=keep"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-disposition" && v.starts_with("attachment")),
        "{headers:?}"
    );
    fed.shutdown().await;
}

/// The administrator's page (back up, share again, withdraw from a peer)
/// and a caseworker's question to the federation, in the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_backs_up_and_reshares_and_a_caseworker_asks_the_federation() {
    if !browser::available() {
        return;
    }
    let fed = TestFederation::start_with(&["ngo", "police"], &[], with_console).await;
    let mut police = fed.client("police", "cms").await;
    common::submit(&mut police, "A phone seen in a raid.").await;
    common::submit(&mut fed.client("ngo", "cms").await, "Ours.").await;

    let admin = Browser::open(&fed, "ngo", "admin").await;
    admin.goto("/admin").await;
    admin.fill("label", "before-upgrade").await;
    admin.follow("form[action='/admin/backup'] button").await;
    let page = admin.text().await;
    assert!(
        page.contains("Backed up.") && page.contains("before-upgrade"),
        "{page}"
    );
    // The same name again: refused at its field, nothing overwritten.
    admin.fill("label", "before-upgrade").await;
    admin.follow("form[action='/admin/backup'] button").await;
    assert!(
        !admin.field_error("label").await.is_empty(),
        "{}",
        admin.text().await
    );
    admin.goto("/admin").await;
    admin.follow("form[action='/admin/reshare'] button").await;
    let page = admin.text().await;
    assert!(
        page.contains("Dry run, nothing sent: 1 of this agency's alerts match"),
        "{page}"
    );
    admin.screenshot("admin").await;
    admin.close().await;

    let b = Browser::open(&fed, "ngo", "analyst").await;
    b.goto("/lookup").await;
    b.fill("s0_phones", "+31 6 5555 0101").await;
    b.fill("purpose", "NGO-2026-7").await;
    b.follow("form[action='/lookup'] button").await;
    let page = b.text().await;
    assert!(
        page.contains("police") && page.contains("Hit Phone"),
        "{page}"
    );
    b.screenshot("lookup").await;
    // A match found by asking can be followed by a request for its data
    // (`requests send --alert`), without a hit.
    b.follow("a[href^='/requests/new?alert=police']").await;
    b.choose("legal_basis", "LEGAL_BASIS_VICTIM_REFERRAL_CONSENT")
        .await;
    b.fill("reason", "The caller agreed to be referred.").await;
    b.fill("case_reference", "NGO-2026-7").await;
    b.follow("form[action='/requests/new'] button[type=submit]")
        .await;
    let path = b.path().await;
    assert!(
        path.starts_with("/requests/ngo:req:"),
        "{path}: {}",
        b.text().await
    );
    b.close().await;
    fed.shutdown().await;
}
