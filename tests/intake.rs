//! The public report intake of a real node over HTTPS (docs/intake.md):
//! no client certificate, the form in the reporter's language with the
//! emergency number first, a receipt shown once, the receipt opening the
//! conversation, and nothing of who the reporter is kept anywhere.

#[path = "console/browser.rs"]
#[allow(dead_code)] // the console's tests use the rest
mod browser;
mod common;

use std::sync::Arc;

use casebridge::config::{Bounded, IntakeConfig};
use casebridge::ids::AgencyId;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A user agent no node could have made up: it must appear nowhere.
const USER_AGENT: &str = "Distinctive-Reporter-Agent/7f3a9c";

/// The ngo serves the intake with its node certificate (a test stands in
/// for the public CA's), with small budgets so the test can spend them,
/// and a console (the browser helper opens there first).
fn with_intake(
    wrong_per_minute: usize,
    reports_per_minute: usize,
) -> impl Fn(&AgencyId, &mut casebridge::config::NodeConfig) + 'static {
    move |id, c| {
        if id.as_str() == "ngo" {
            with_console(id, c);
            c.intake = Some(IntakeConfig {
                listen: toml::Spanned::new(0..0, "127.0.0.1:0".parse().unwrap()),
                cert: c.tls.node_cert.clone(),
                key: c.tls.node_key.clone(),
                retention_days: Bounded::new(30),
                max_open_reports: Bounded::new(1000),
                reports_per_minute: Bounded::new(reports_per_minute),
                wrong_receipts_per_minute: Bounded::new(wrong_per_minute),
                max_connections: Bounded::new(64),
                emergency_number: toml::Spanned::new(0..0, "112".into()),
            });
        }
    }
}

/// One HTTP/1.1 exchange with the ngo's intake, without a client
/// certificate, as the distinctive browser: the whole answer as text.
async fn exchange(fed: &TestFederation, head: &str, body: &str) -> String {
    exchange_typed(fed, head, "application/x-www-form-urlencoded", body).await
}

/// [`exchange`] with a body of `content_type`.
async fn exchange_typed(
    fed: &TestFederation,
    head: &str,
    content_type: &str,
    body: &str,
) -> String {
    let addr = fed.node("ngo").intake_addr().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in casebridge::identity::load_certs(&fed.layout.federation_ca).unwrap() {
        roots.add(cert).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let raw = format!(
        "{head}\r\nHost: {addr}\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(raw.as_bytes()).await.unwrap();
    // The node may answer (413) and close before a body past its bound is
    // all written: the answer is still read.
    let _ = stream.write_all(body.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        })
        .map(|(_, v)| v.trim())
}

/// The receipt a receipt page shows.
fn receipt_of(answer: &str) -> String {
    let at = answer.find("id=\"receipt\">").expect("a receipt page") + "id=\"receipt\">".len();
    answer[at..].split('<').next().unwrap().to_owned()
}

fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reporter_reports_in_their_language_and_comes_back_with_the_receipt() {
    let fed = TestFederation::start_with(&["ngo", "police"], &[], with_intake(60, 60)).await;

    // Romanian by choice, Ukrainian by the browser; the emergency number
    // before anything else; no cookie, no script, nothing kept.
    let ro = exchange(&fed, "GET /?lang=ro HTTP/1.1", "").await;
    assert_eq!(status(&ro), 200, "{ro}");
    assert!(ro.contains("Raportați o situație în siguranță"), "{ro}");
    assert!(ro.find("112").unwrap() < ro.find("<form").unwrap());
    assert_eq!(header(&ro, "set-cookie"), None);
    let csp = header(&ro, "content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(header(&ro, "cache-control"), Some("no-store"));
    let uk = exchange(
        &fed,
        "GET / HTTP/1.1\r\nAccept-Language: uk-UA, en;q=0.5",
        "",
    )
    .await;
    assert!(uk.contains("Безпечно повідомте про ситуацію"), "{uk}");

    // A problem is said at its field, in the reporter's language, with
    // what they typed kept.
    let bad = form(&[("lang", "es"), ("town", "Almería"), ("contact", "receipt")]);
    let refused = exchange(&fed, "POST /report HTTP/1.1", &bad).await;
    assert_eq!(status(&refused), 422, "{refused}");
    assert!(
        refused.contains("id=\"what-error\">Rellene este campo"),
        "{refused}"
    );
    assert!(refused.contains("value=\"Almería\""), "{refused}");

    let report = form(&[
        ("lang", "es"),
        ("what", "Trabajadores encerrados de noche en un invernadero"),
        ("country", "ES"),
        ("town", "Almería"),
        ("p0_phone", "+34 600 111 222"),
        ("in_danger", "no"),
        ("contact", "receipt"),
        ("consent", "yes"),
    ]);
    let sent = exchange(&fed, "POST /report HTTP/1.1", &report).await;
    assert_eq!(status(&sent), 200, "{sent}");
    assert_eq!(
        header(&sent, "set-cookie"),
        None,
        "no cookie before a receipt login"
    );
    assert!(
        !sent.contains("class=\"languages\""),
        "no link away from the receipt, shown this once"
    );
    let receipt = receipt_of(&sent);
    assert_eq!(receipt.replace(' ', "").len(), 16, "{receipt}");

    // A wrong receipt opens nothing, and sets nothing.
    let wrong = exchange(
        &fed,
        "POST /receipt HTTP/1.1",
        &form(&[("receipt", "1234 5678 9012 3456")]),
    )
    .await;
    assert_eq!(status(&wrong), 401, "{wrong}");
    assert_eq!(header(&wrong, "set-cookie"), None);
    // The right one opens the conversation for a quarter of an hour.
    let opened = exchange(
        &fed,
        "POST /receipt HTTP/1.1",
        &form(&[("lang", "es"), ("receipt", &receipt)]),
    )
    .await;
    assert_eq!(status(&opened), 303, "{opened}");
    let cookie = header(&opened, "set-cookie").unwrap().to_owned();
    assert!(
        cookie.ends_with("Secure; HttpOnly; SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap();
    let page = exchange(
        &fed,
        &format!("GET /my-report?lang=es HTTP/1.1\r\nCookie: {session}"),
        "",
    )
    .await;
    assert!(page.contains("Trabajadores encerrados"), "{page}");
    assert!(page.contains("Todavía no hay respuesta"), "{page}");
    let added = exchange(
        &fed,
        &format!("POST /my-report HTTP/1.1\r\nCookie: {session}"),
        &form(&[("lang", "es"), ("text", "Son doce personas")]),
    )
    .await;
    assert_eq!(status(&added), 200, "{added}");
    assert!(added.contains("Son doce personas"), "{added}");

    // The intake serves nothing else: not the APIs, not the console.
    for path in [
        "/casebridge.v1.AlertService/ListAlerts",
        "/alerts",
        "/statistics",
        "/metrics",
    ] {
        let other = exchange(&fed, &format!("GET {path} HTTP/1.1"), "").await;
        assert_eq!(status(&other), 404, "{path}: {other}");
    }

    // The reporter's steps are audited as `reporter`, with nothing of them.
    let entries = [
        audited(&fed, "ngo", "intake.report").await,
        audited(&fed, "ngo", "intake.open").await,
        audited(&fed, "ngo", "intake.answer").await,
    ];
    for e in entries.iter().flatten() {
        assert_eq!(e.actor, "reporter");
        let shown = format!("{e:?}");
        assert!(
            !shown.contains(USER_AGENT) && !shown.contains("127.0.0.1"),
            "{shown}"
        );
    }
    assert!(entries.iter().all(|e| e.len() == 1), "{entries:?}");

    // Nothing of the browser anywhere the node writes: its store, its logs.
    let dir = fed.config("ngo").store.dir.parent().unwrap().to_owned();
    let mut fed = fed;
    fed.stop_node("ngo").await;
    for file in walk(&dir) {
        let bytes = std::fs::read(&file).unwrap();
        let found = bytes
            .windows(USER_AGENT.len())
            .any(|w| w == USER_AGENT.as_bytes());
        assert!(!found, "{} holds the reporter's user agent", file.display());
    }
    fed.shutdown().await;
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_and_floods_are_bounded_and_the_node_keeps_serving() {
    let fed = TestFederation::start_with(&["ngo"], &[], with_intake(3, 2)).await;
    let report = form(&[("what", "A flood"), ("contact", "receipt")]);
    let first = exchange(&fed, "POST /report HTTP/1.1", &report).await;
    assert_eq!(status(&first), 200, "{first}");
    let receipt = receipt_of(&first);
    assert_eq!(
        status(&exchange(&fed, "POST /report HTTP/1.1", &report).await),
        200
    );
    let third = exchange(&fed, "POST /report HTTP/1.1", &report).await;
    assert_eq!(
        status(&third),
        503,
        "the minute's reports are spent: {third}"
    );
    assert_eq!(header(&third, "retry-after"), Some("60"));

    // Three wrong receipts spend the minute's budget, whoever sends them;
    // then even the right one waits, and nothing says whether it exists.
    for wrong in [
        "0000 0000 0000 0000",
        "not a receipt",
        "1111-2222-3333-4444",
    ] {
        let answer = exchange(&fed, "POST /receipt HTTP/1.1", &form(&[("receipt", wrong)])).await;
        assert_eq!(status(&answer), 401, "{answer}");
    }
    let waiting = exchange(
        &fed,
        "POST /receipt HTTP/1.1",
        &form(&[("receipt", &receipt)]),
    )
    .await;
    assert_eq!(status(&waiting), 503, "{waiting}");

    // A body past the bound is refused before it is read; the other
    // listeners serve on.
    let huge = "what=".to_owned() + &"x".repeat(200_000);
    assert_eq!(
        status(&exchange(&fed, "POST /report HTTP/1.1", &huge).await),
        413
    );
    let mut cms = fed.client("ngo", "cms").await;
    submit(&mut cms, "the client API serves on").await;
    fed.shutdown().await;
}

/// A browser at the ngo's intake (the helper holds a console certificate
/// the intake never asks for).
async fn browser_at_intake(fed: &TestFederation) -> browser::Browser {
    browser_at_intake_as(fed, browser::Look::default()).await
}

/// [`browser_at_intake`], showing pages as `look` says.
async fn browser_at_intake_as(fed: &TestFederation, look: browser::Look) -> browser::Browser {
    let mut b = browser::Browser::open_with(fed, "ngo", "admin", look).await;
    b.base = format!("https://{}", fed.node("ngo").intake_addr().unwrap());
    b
}

/// The receipt the page shows, as the reporter would copy it.
async fn receipt_shown(b: &browser::Browser) -> String {
    let shown = b.client.find(fantoccini::Locator::Css("#receipt")).await;
    shown.unwrap().text().await.unwrap()
}

/// Chromium, with no script on any page: the form in Tagalog, a problem
/// at its field, a receipt; then a fresh browser profile opens the report
/// with the receipt alone and adds to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reports_in_tagalog_and_a_fresh_browser_comes_back_with_the_receipt() {
    let fed = TestFederation::start_with(&["ngo"], &[], with_intake(60, 60)).await;
    if !browser::available() {
        fed.shutdown().await;
        return;
    }
    let b = browser_at_intake(&fed).await;
    b.goto("/?lang=tl").await;
    assert!(b.text().await.contains("Mag-ulat ng sitwasyon nang ligtas"));
    b.screenshot("intake-form-tl").await;
    b.follow("button[type=submit]").await;
    assert_eq!(b.field_error("what").await, "Pakipunan ito.");
    b.fill("what", "Mga manggagawang nakakulong sa gabi").await;
    b.fill("p0_plate", "NL: 12-ABC-3").await;
    b.follow("button[type=submit]").await;
    let receipt = receipt_shown(&b).await;
    assert_eq!(receipt.replace(' ', "").len(), 16, "{receipt}");
    b.screenshot("intake-receipt-tl").await;
    b.close().await;

    let fresh = browser_at_intake(&fed).await;
    fresh.goto("/receipt?lang=tl").await;
    fresh.fill("receipt", &receipt).await;
    fresh.follow("button[type=submit]").await;
    assert_eq!(fresh.path().await, "/my-report?lang=tl");
    assert!(
        fresh
            .text()
            .await
            .contains("Mga manggagawang nakakulong sa gabi")
    );
    fresh.fill("text", "Labindalawa sila").await;
    fresh.follow("button[type=submit]").await;
    assert!(fresh.text().await.contains("Labindalawa sila"));
    fresh.screenshot("intake-conversation-tl").await;
    fresh.close().await;
    fed.shutdown().await;
}

/// The whole way of a report: Chromium reports in English naming a
/// phone; the ngo's caseworker finds it in the console's inbox and asks a
/// question; the reporter, in a fresh browser profile with the receipt
/// alone, reads it and answers; the caseworker turns the report into an
/// alert from the prefilled form, which hits the police's alert about the
/// same phone through the federation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caseworker_triages_a_report_into_an_alert_that_hits_the_police() {
    let fed = TestFederation::start_with(&["ngo", "police"], &[], with_intake(60, 60)).await;
    if !browser::available() {
        fed.shutdown().await;
        return;
    }
    let mut police = fed.client("police", "cms").await;
    let mut draft = sample_draft("Workers moved at night; a phone in the seized notebook.");
    draft.subjects[0].identifiers = vec![phone_id("+40 712 345 678", "")];
    let police_alert = submit_draft(&mut police, draft).await;

    // The reporter's browser runs no script at all and shows pages at 200 %.
    let look = browser::Look {
        no_script: true,
        zoom: 200,
    };
    let reporter = browser_at_intake_as(&fed, look).await;
    reporter.goto("/?lang=en").await;
    let send = reporter
        .client
        .find(fantoccini::Locator::Css("button[type=submit]"))
        .await
        .unwrap();
    let (x, _, width, _) = send.rectangle().await.unwrap();
    let (_, _, window, _) = reporter.client.get_window_rect().await.unwrap();
    assert!(
        x + width <= window as f64,
        "at 200 % the send button is off the page: {x} + {width} > {window}"
    );
    reporter.screenshot("intake-form-200-percent").await;
    reporter
        .fill(
            "what",
            "Twelve workers sleep in a locked barn behind the greenhouse.",
        )
        .await;
    reporter.fill("town", "Westland").await;
    reporter.fill("p0_name", "Ion Popescu").await;
    reporter.fill("p0_phone", "+40 712 345 678").await;
    reporter.click("#consent").await;
    reporter.follow("button[type=submit]").await;
    let receipt = receipt_shown(&reporter).await;
    reporter.close().await;

    let caseworker = browser::Browser::open(&fed, "ngo", "caseworker").await;
    caseworker.goto("/reports").await;
    assert!(caseworker.text().await.contains("New (1)"));
    caseworker.screenshot("reports-inbox").await;
    caseworker.follow("td a[href^='/reports/']").await;
    let report_path = caseworker.path().await;
    assert!(caseworker.text().await.contains("locked barn"));
    caseworker
        .fill("text", "How many people are there, and who drives them?")
        .await;
    caseworker.follow("form[action$='/reply'] button").await;
    assert!(caseworker.text().await.contains("waiting for the reporter"));

    let back = browser_at_intake(&fed).await;
    back.goto("/receipt?lang=en").await;
    back.fill("receipt", &receipt).await;
    back.follow("button[type=submit]").await;
    assert!(back.text().await.contains("who drives them?"));
    back.fill("text", "A white van, plate B 123 XYZ.").await;
    back.follow("button[type=submit]").await;
    back.close().await;

    caseworker.goto(&report_path).await;
    assert!(caseworker.text().await.contains("A white van"));
    caseworker.screenshot("report-conversation").await;
    caseworker.follow("a[href^='/alerts/new?report=']").await;
    assert!(caseworker.text().await.contains("Prefilled from"));
    let phones = caseworker
        .client
        .find(fantoccini::Locator::Css("[name='s0_phones']"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(phones.as_deref(), Some("+40 712 345 678"));
    caseworker
        .choose("category", "CATEGORY_LABOUR_EXPLOITATION")
        .await;
    caseworker.choose("severity", "SEVERITY_HIGH").await;
    caseworker.fill("country", "NL").await;
    caseworker
        .choose("s0_role", "SUBJECT_ROLE_SUSPECTED_TRAFFICKER")
        .await;
    caseworker.screenshot("report-alert-form").await;
    caseworker
        .follow("form[action='/alerts/new'] button[type=submit]")
        .await;
    let alert_path = caseworker.path().await;
    assert!(
        alert_path.starts_with("/alerts/ngo:"),
        "{alert_path}: {}",
        caseworker.text().await
    );
    caseworker.goto(&report_path).await;
    assert!(
        caseworker
            .text()
            .await
            .contains(alert_path.trim_start_matches("/alerts/"))
    );
    caseworker.close().await;

    let analyst = fed.client("police", "analyst").await;
    first_hit(&analyst).await;
    let hits = hit_log(&mut analyst.clone()).await;
    assert!(
        hits.iter().any(|h| h.local_alert_id == police_alert.id
            && h.other_alert_id == alert_path.trim_start_matches("/alerts/")),
        "{hits:?}"
    );
    for action in ["intake.list", "intake.get", "intake.reply", "intake.link"] {
        let entries = audited(&fed, "ngo", action).await;
        assert!(
            entries.iter().any(|e| e.actor == "client:caseworker"),
            "{action}: {entries:?}"
        );
    }
    fed.shutdown().await;
}

/// Triage over gRPC: only the `intake` role may; every bad field is named;
/// the inbox pages its tabs and counts them; closing many at once takes
/// the open ones only, spam is kept seven days, and a closed report's
/// receipt opens nothing; a report is linked to one alert of this node,
/// once; no answer carries the receipt's hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_service_triages_within_its_role_and_names_every_bad_field() {
    use casebridge::proto::v1::{
        CloseReportsRequest, GetReportRequest, IntakeState, LinkReportRequest, ListReportsRequest,
        ReplyToReportRequest,
    };
    let fed = TestFederation::start_with(&["ngo", "police"], &[], with_intake(60, 60)).await;
    let mut receipts = Vec::new();
    for what in ["first", "second", "third"] {
        let answer = exchange(
            &fed,
            "POST /report HTTP/1.1",
            &form(&[("what", what), ("contact", "receipt")]),
        )
        .await;
        receipts.push(receipt_of(&answer));
    }
    let mut cms = fed.client("ngo", "cms").await;
    let denied = cms
        .reports
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");

    let mut cw = fed.client("ngo", "caseworker").await;
    let list = |state: IntakeState, size: u32, token: &str| ListReportsRequest {
        state: state as i32,
        page_size: size,
        page_token: token.into(),
    };
    let page = cw
        .reports
        .list_reports(list(IntakeState::New, 2, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.reports.len(), 2);
    assert_eq!(page.counts.unwrap().new, 3);
    let rest = cw
        .reports
        .list_reports(list(IntakeState::New, 2, &page.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.reports.len(), 1);
    assert!(rest.next_page_token.is_empty());
    let ids: Vec<String> = page
        .reports
        .iter()
        .chain(&rest.reports)
        .map(|r| r.id.clone())
        .collect();
    for (req, field) in [
        (list(IntakeState::New, 500, ""), "page_size"),
        (list(IntakeState::New, 2, "forged"), "page_token"),
    ] {
        assert_invalid(cw.reports.list_reports(req).await, field);
    }
    let reply = |id: &str, text: &str| ReplyToReportRequest {
        id: id.into(),
        text: text.into(),
    };
    assert_invalid(cw.reports.reply_to_report(reply("nope", "hi")).await, "id");
    assert_invalid(
        cw.reports.reply_to_report(reply(&ids[0], " ")).await,
        "text",
    );
    let long = "x".repeat(5_001);
    assert_invalid(
        cw.reports.reply_to_report(reply(&ids[0], &long)).await,
        "text",
    );
    let got = cw
        .reports
        .get_report(GetReportRequest { id: ids[0].clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(
        got.receipt_hash.is_empty(),
        "an answer carries no receipt hash"
    );

    let close = |ids: Vec<String>, reason: &str, spam: bool| CloseReportsRequest {
        ids,
        reason: reason.into(),
        spam,
    };
    assert_invalid(
        cw.reports.close_reports(close(vec![], "x", false)).await,
        "ids",
    );
    let bad = vec![ids[0].clone(), "x".into()];
    assert_invalid(
        cw.reports.close_reports(close(bad, "x", false)).await,
        "ids[1]",
    );
    let none = close(vec![ids[0].clone()], "", false);
    assert_invalid(cw.reports.close_reports(none).await, "reason");
    let spam = close(vec![ids[0].clone(), ids[1].clone()], "spam", true);
    let closed = cw.reports.close_reports(spam).await.unwrap().into_inner();
    assert_eq!(closed.closed.len(), 2);
    let entries = audited(&fed, "ngo", "intake.close").await;
    let spammed = entries.iter().find(|e| e.outcome == "OK").unwrap();
    assert_eq!(spammed.detail.get("closed").map(String::as_str), Some("2"));
    assert_eq!(spammed.detail.get("spam").map(String::as_str), Some("true"));
    let again = close(vec![ids[0].clone(), ids[2].clone()], "done", false);
    let closed = cw.reports.close_reports(again).await.unwrap().into_inner();
    assert_eq!(
        closed.closed,
        [ids[2].clone()],
        "one closed already is left"
    );
    let spammed = cw
        .reports
        .get_report(GetReportRequest { id: ids[0].clone() })
        .await
        .unwrap()
        .into_inner();
    let week = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 7 * 86_400;
    assert!(spammed.retain_until <= week, "{}", spammed.retain_until);
    let closed_tab = cw
        .reports
        .list_reports(list(IntakeState::Closed, 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed_tab.counts.unwrap().closed, 3);
    assert_eq!(closed_tab.counts.unwrap().new, 0);
    let login = exchange(
        &fed,
        "POST /receipt HTTP/1.1",
        &form(&[("receipt", &receipts[0])]),
    )
    .await;
    assert_eq!(
        status(&login),
        401,
        "a closed report's receipt opens nothing"
    );
    let late = cw
        .reports
        .reply_to_report(reply(&ids[2], "still there?"))
        .await
        .unwrap_err();
    assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late:?}");

    let own = submit(&mut cms, "made of a public report").await;
    let link = |alert: &str| LinkReportRequest {
        id: ids[2].clone(),
        alert_id: alert.into(),
    };
    let police = submit(&mut fed.client("police", "cms").await, "theirs").await;
    assert_invalid(cw.reports.link_report(link(&police.id)).await, "alert_id");
    cw.reports.link_report(link(&own.id)).await.unwrap();
    let twice = cw.reports.link_report(link(&own.id)).await.unwrap_err();
    assert_eq!(twice.code(), tonic::Code::FailedPrecondition);
    assert!(twice.message().contains(&own.id), "{twice:?}");
    fed.shutdown().await;
}

/// The JSON body of an answer.
fn json_of(answer: &str) -> serde_json::Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// A hotline app's way in: a report as JSON in Ukrainian, problems at
/// JSON paths in the reporter's language, malformed JSON at its line and
/// column, another media type refused, the receipt opening the
/// conversation and adding to it — and the caseworker's question read
/// back through it; a wrong receipt says nothing more than the form's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hotline_app_reports_and_converses_as_json() {
    let fed = TestFederation::start_with(&["ngo"], &[], with_intake(60, 60)).await;
    let post = |path: &str, body: serde_json::Value| {
        let fed = &fed;
        let head = format!("POST {path} HTTP/1.1");
        async move { exchange_typed(fed, &head, "application/json", &body.to_string()).await }
    };
    let bad = post(
        "/api/v1/reports",
        serde_json::json!({"language": "uk", "people": [{}, {"phone": "9".repeat(41)}]}),
    )
    .await;
    assert_eq!(status(&bad), 422, "{bad}");
    let errors = json_of(&bad)["errors"].clone();
    assert_eq!(errors[0]["field"], "what");
    assert_eq!(errors[0]["message"], "Будь ласка, заповніть це поле.");
    assert_eq!(errors[1]["field"], "people[1].phone");
    assert_eq!(errors[1]["code"], "error-too-long");
    let typo = post("/api/v1/reports", serde_json::json!({"wat": "x"})).await;
    assert_eq!(status(&typo), 400);
    assert!(
        json_of(&typo)["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `wat`")
    );
    let broken = exchange_typed(
        &fed,
        "POST /api/v1/reports HTTP/1.1",
        "application/json",
        "{\n \"what\": ",
    )
    .await;
    assert_eq!(status(&broken), 400);
    assert!(broken.contains("line 2 column"), "{broken}");
    let deep = "[".repeat(20_000);
    let nested = exchange_typed(
        &fed,
        "POST /api/v1/reports HTTP/1.1",
        "application/json",
        &deep,
    )
    .await;
    assert_eq!(
        status(&nested),
        400,
        "deep nesting is refused, not followed"
    );
    let form_typed = exchange(&fed, "POST /api/v1/reports HTTP/1.1", "what=x").await;
    assert_eq!(status(&form_typed), 415, "{form_typed}");

    let stored = post(
        "/api/v1/reports",
        serde_json::json!({"language": "uk", "what": "Нас тримають на складі",
            "people": [{"plate": "AA 1234 BB"}], "in_danger": true}),
    )
    .await;
    assert_eq!(status(&stored), 201, "{stored}");
    assert_eq!(header(&stored, "set-cookie"), None);
    let receipt = json_of(&stored)["receipt"].as_str().unwrap().to_owned();
    assert_eq!(receipt.replace(' ', "").len(), 16);

    let mut cw = fed.client("ngo", "caseworker").await;
    let inbox = cw
        .reports
        .list_reports(casebridge::proto::v1::ListReportsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let id = inbox.reports[0].id.clone();
    assert_eq!(inbox.reports[0].language, "uk");
    cw.reports
        .reply_to_report(casebridge::proto::v1::ReplyToReportRequest {
            id,
            text: "Де саме?".into(),
        })
        .await
        .unwrap();
    let read = post(
        "/api/v1/conversation",
        serde_json::json!({"receipt": receipt}),
    )
    .await;
    assert_eq!(status(&read), 200, "{read}");
    let view = json_of(&read);
    assert_eq!(view["messages"][0]["from"], "caseworker");
    assert_eq!(view["messages"][0]["text"], "Де саме?");
    assert!(
        view["messages"][0]["hour"]
            .as_str()
            .unwrap()
            .ends_with(":00:00Z")
    );
    let empty = post(
        "/api/v1/conversation/answer",
        serde_json::json!({"receipt": receipt, "text": " "}),
    )
    .await;
    assert_eq!(json_of(&empty)["errors"][0]["field"], "text");
    let answered = post(
        "/api/v1/conversation/answer",
        serde_json::json!({"receipt": receipt, "text": "Біля порту"}),
    )
    .await;
    assert_eq!(json_of(&answered)["messages"][1]["text"], "Біля порту");
    let wrong = post(
        "/api/v1/conversation",
        serde_json::json!({"receipt": "0000 0000 0000 0000"}),
    )
    .await;
    assert_eq!(status(&wrong), 401);
    assert_eq!(json_of(&wrong)["errors"][0]["field"], "receipt");
    fed.shutdown().await;
}
