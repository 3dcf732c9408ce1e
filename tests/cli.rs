//! The command line as scripts use it: output into a pipeline that closes
//! early, exit codes, messages.

mod common;

use std::process::{Command, Stdio};

use common::*;

/// Runs the real binary with stdout connected to a pipe whose reading end
/// is already closed (`… | head -0`): every write to stdout fails with EPIPE.
fn into_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_the_output_quietly() {
    let (code, err) = into_closed_pipe(&[
        "pseudo",
        "normalize",
        "--type",
        "phone",
        "--value",
        "+31 6 1234 5678",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");

    let fed = TestFederation::start(&["police"]).await;
    let mut cms = fed.client("police", "cms").await;
    for i in 0..3 {
        submit(&mut cms, &format!("listed {i}")).await;
    }
    let toml = fed.client_toml("police", "cms").to_str().unwrap();
    let (code, err) = into_closed_pipe(&["--client-config", toml, "alert", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // --json is canonical protobuf JSON: UTC times end in Z.
    let (code, out, err) = fed.cli_as("police", "cms", &["--json", "alert", "list"]);
    assert_eq!(code, 0, "{err}");
    let alerts: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(alerts.len(), 3);
    for a in &alerts {
        for field in ["createdAt", "updatedAt"] {
            let t = a[field].as_str().unwrap();
            assert!(t.ends_with('Z') && !t.contains("+00:00"), "{field}: {t}");
        }
    }
    fed.shutdown().await;
}

/// Shell completions and the man page come from the command definition
/// itself, so they name every command there is.
#[test]
fn completions_and_man_page_are_generated_from_the_cli() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = cli(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        for command in ["alert", "hits", "policy", "audit", "store", "node"] {
            assert!(out.contains(command), "{shell} completions lack {command}");
        }
    }
    let (code, out, err) = cli(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(".TH casebridge 1"),
        "{}",
        &out[..200.min(out.len())]
    );
    assert!(
        out.contains("completions") && out.contains("store"),
        "the man page lists the commands"
    );
    let (code, err) = into_closed_pipe(&["man"]);
    assert_eq!(code, Some(0), "{err}");
}

/// Identifier types and categories have the names policies use
/// (snake_case); the older spellings still work.
#[test]
fn names_agree_with_policies() {
    for spelling in ["national_id", "national-id"] {
        let (code, out, err) = cli(&[
            "pseudo",
            "normalize",
            "--type",
            spelling,
            "--value",
            "x123",
            "--country",
            "NL",
        ]);
        assert_eq!(code, 0, "{spelling}: {err}");
        assert!(out.contains("NATIONAL_ID|NL|X123"), "{out}");
    }
    let (_, out, _) = cli(&["pseudo", "normalize", "--help"]);
    assert!(
        out.contains("crypto_wallet") && !out.contains("crypto-wallet"),
        "{out}"
    );
}

/// Help and verification texts speak to people: no contradictory
/// defaults, no Rust range syntax, plurals that agree.
#[test]
fn help_texts_do_not_contradict_themselves() {
    let (code, out, err) = cli(&["requests", "approve", "--help"]);
    assert_eq!(code, 0, "{err}");
    let retention = out
        .split("--retention-days")
        .nth(1)
        .and_then(|rest| rest.split("\n  -").next())
        .unwrap_or_default();
    assert!(retention.contains("default 90"), "{out}");
    assert!(!retention.contains("[default: 0]"), "{retention}");
}

/// A copy of `base` (a client.toml) presenting `cert` and `key` instead.
fn client_toml_with(
    base: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> String {
    let text = std::fs::read_to_string(base).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("cert =") {
            out.push_str(&format!("cert = {:?}\n", cert.display().to_string()));
        } else if line.starts_with("key =") {
            out.push_str(&format!("key = {:?}\n", key.display().to_string()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A node that refuses the client's certificate at the handshake: the CLI
/// says so and why (unknown issuer, revoked, expired, wrong purpose), not
/// "transport error", and exits 77 (`EX_NOPERM`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_certificate_is_named_with_its_reason() {
    use casebridge::certs::{FaultyClient, RevokeTarget, revoke};
    use casebridge::ids::ClientName;

    let fed = TestFederation::start_with(&["police", "ngo"], &[], |_, c| {
        c.tls.crl_reload_secs = casebridge::config::Bounded::new(1);
    })
    .await;
    let base = fed.client_toml("police", "analyst").to_owned();
    let status_with =
        |toml: &std::path::Path| cli(&["--client-config", toml.to_str().unwrap(), "alert", "list"]);
    // The configuration as issued works.
    let (code, _, err) = status_with(&base);
    assert_eq!(code, 0, "{err}");

    let mut cases = Vec::new();
    for (fault, reason) in [
        (FaultyClient::Expired, "expired"),
        (FaultyClient::ServerAuthOnly, "wrong purpose"),
    ] {
        let (cert, key) = fed.faulty_client("police", "analyst", fault);
        cases.push((client_toml_with(&base, &cert, &key), reason));
    }
    // The NGO's own client certificate, from a client CA police does not trust.
    let ngo_cfg =
        casebridge::config::ClientConfig::load(fed.client_toml("ngo", "analyst")).unwrap();
    cases.push((
        client_toml_with(&base, &ngo_cfg.cert, &ngo_cfg.key),
        "unknown issuer",
    ));
    for (i, (toml, reason)) in cases.iter().enumerate() {
        // Beside the original: its relative paths stay right.
        let path = base.with_file_name(format!("refused-{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        let (code, _, err) = status_with(&path);
        assert_eq!(code, 77, "{reason}: {err}");
        assert!(
            err.contains("refused this client's certificate") && err.contains(reason),
            "{reason}: {err}"
        );
        assert!(!err.contains("transport error"), "{err}");
    }

    // Revoked: refused from the next CRL reload on.
    revoke(
        &fed.layout.dir,
        &RevokeTarget::Client(agency("police"), ClientName::new("analyst").unwrap()),
    )
    .unwrap();
    let err = eventually("the revoked certificate refused", || async {
        let (code, _, err) = status_with(&base);
        (code == 77).then_some(err)
    })
    .await;
    assert!(err.contains("revoked"), "{err}");
    fed.shutdown().await;
}

/// A certificate of the agency that `[clients]` does not list is told so
/// (not that it "lacks the `read` role"), with what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlisted_client_is_told_it_is_not_listed() {
    let fed = TestFederation::start_with(&["police"], &[], |_, c| {
        c.clients
            .remove(&casebridge::ids::ClientName::new("cms").unwrap());
    })
    .await;
    let (code, _, err) = fed.cli_as("police", "cms", &["alert", "list"]);
    assert_eq!(code, 77, "{err}");
    assert!(
        err.contains("client `cms` is not listed in this node's [clients]"),
        "{err}"
    );
    assert!(!err.contains("lacks"), "{err}");
    fed.shutdown().await;
}

/// `--version` names what a peer compares: the release, the protocol
/// range, the capabilities, and the previous release it works beside.
#[test]
fn version_names_the_release_protocol_and_capabilities() {
    use casebridge::release::{Capabilities, PREVIOUS, PROTOCOL, RELEASE};
    let out = Command::new(env!("CARGO_BIN_EXE_casebridge"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        format!("casebridge {RELEASE}"),
        format!("peer protocol: {PROTOCOL}"),
        format!("capabilities: {}", Capabilities::ours().names().join(" ")),
        format!("previous release: {}", PREVIOUS.version),
    ] {
        assert!(text.contains(&line), "no `{line}` in\n{text}");
    }
}
