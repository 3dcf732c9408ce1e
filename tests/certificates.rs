//! Certificates for a real federation, from nothing to a running node: the
//! node makes its key and a signing request, the federation CA signs it,
//! the node runs on it and delivers; a client system does the same with the
//! agency's client CA. A CA refuses requests of the wrong role or
//! federation.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::process::{NodeProcess, connect_when_up, two_agencies};
use common::*;

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_and_a_client_run_on_certificates_signed_from_requests() {
    let dir = tempfile::tempdir().unwrap();
    let layout = two_agencies(dir.path());
    let police = &layout.agencies[&agency("police")];
    let fed_ca = (&layout.federation_ca, layout.dir.join("federation-ca.key"));
    let req = dir.path().join("requests");

    // The node's side: a key that never leaves, and a request.
    let (code, out, err) = cli(&[
        "certs",
        "request",
        "--federation",
        FEDERATION,
        "--agency",
        "police",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--out",
        arg(&req),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("spiffe://test.casebridge/agency/police"),
        "{out}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(req.join("node.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The federation operator's side: a client's request is not a node's,
    // another federation's is not ours.
    let sign = |csr: &Path, ca: &Path, key: &Path, role: &str, fed: &str, out: &Path| {
        cli(&[
            "certs",
            "sign",
            "--ca",
            arg(ca),
            "--ca-key",
            arg(key),
            "--csr",
            arg(csr),
            "--role",
            role,
            "--federation",
            fed,
            "--out",
            arg(out),
        ])
    };
    let (code, _, err) = sign(
        &req.join("node.csr"),
        fed_ca.0,
        &fed_ca.1,
        "client",
        FEDERATION,
        &req.join("x.pem"),
    );
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("node's id, not a client's"), "{err}");
    let (code, _, err) = sign(
        &req.join("node.csr"),
        fed_ca.0,
        &fed_ca.1,
        "node",
        "other.casebridge",
        &req.join("x.pem"),
    );
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("not other.casebridge"), "{err}");
    assert!(!req.join("x.pem").exists(), "nothing written when refused");
    let (code, out, err) = sign(
        &req.join("node.csr"),
        fed_ca.0,
        &fed_ca.1,
        "node",
        FEDERATION,
        &req.join("node.pem"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid 397 days"), "{out}");

    // Police runs on it: the new key and certificate replace the old ones.
    std::fs::rename(req.join("node.key"), police.dir.join("node.key")).unwrap();
    std::fs::copy(req.join("node.pem"), police.dir.join("node.pem")).unwrap();
    let (code, out, err) = cli(&["node", "check", "--config", arg(&police.node_config)]);
    assert_eq!(code, 0, "{out}{err}");

    // A client system's request, signed by police's client CA.
    let (code, _, err) = cli(&[
        "certs",
        "request",
        "--federation",
        FEDERATION,
        "--agency",
        "police",
        "--client",
        "intake",
        "--out",
        arg(&req),
    ]);
    assert_eq!(code, 0, "{err}");
    let client_ca = (
        police.dir.join("client-ca.pem"),
        police.dir.join("client-ca.key"),
    );
    let (code, _, err) = sign(
        &req.join("intake.csr"),
        &client_ca.0,
        &client_ca.1,
        "node",
        FEDERATION,
        &req.join("y.pem"),
    );
    assert_eq!(code, 65, "{err}");
    let (code, _, err) = sign(
        &req.join("intake.csr"),
        &client_ca.0,
        &client_ca.1,
        "client",
        FEDERATION,
        &req.join("intake.pem"),
    );
    assert_eq!(code, 0, "{err}");
    let cms_toml = std::fs::read_to_string(police.client_config("cms")).unwrap();
    // Beside the agency's other client configs: their paths are relative.
    let intake_toml = police.dir.join("client-intake.toml");
    std::fs::write(
        &intake_toml,
        cms_toml
            .replace("clients/cms.pem", arg(&req.join("intake.pem")))
            .replace("clients/cms.key", arg(&req.join("intake.key"))),
    )
    .unwrap();

    let ngo = &layout.agencies[&agency("ngo")];
    let _ngo_node = NodeProcess::spawn(&ngo.node_config, "warn", Stdio::inherit());
    let police_node = NodeProcess::spawn(&police.node_config, "warn", Stdio::inherit());
    // Not yet in [clients]: refused. Listed, then SIGHUP: in, no restart.
    connect_when_up(police.client_config("cms")).await;
    let mut intake = casebridge::client::NodeClient::connect_file(&intake_toml)
        .await
        .unwrap();
    let refused = intake
        .alerts
        .list_alerts(casebridge::proto::v1::ListAlertsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let node_toml = std::fs::read_to_string(&police.node_config).unwrap();
    std::fs::write(
        &police.node_config,
        node_toml.replace(
            "[clients]\n",
            "[clients]\nintake = [\"submit\", \"read\"]\n",
        ),
    )
    .unwrap();
    police_node.signal("-HUP");
    let id = eventually("intake allowed after SIGHUP", || {
        let mut c = intake.clone();
        async move {
            let mut d = sample_draft("from the intake system");
            d.subjects.clear();
            c.alerts
                .submit_alert(casebridge::proto::v1::SubmitAlertRequest {
                    draft: Some(d),
                    request_id: "intake-1".into(),
                    validate_only: false,
                })
                .await
                .ok()
                .map(|a| a.into_inner().id)
        }
    })
    .await;
    let ngo_cms = connect_when_up(ngo.client_config("cms")).await;
    eventually(
        "police's alert at ngo, over the new node certificate",
        || {
            let (mut c, id) = (ngo_cms.clone(), id.clone());
            async move {
                c.alerts
                    .get_alert(casebridge::proto::v1::GetAlertRequest { id })
                    .await
                    .ok()
                    .map(|_| ())
            }
        },
    )
    .await;
}

/// `certs init` writes every client certificate as a PKCS#12 file a browser
/// imports (mode 0600), and prints each password once: NSS, the certificate
/// store of Chromium and Firefox, takes the file with that password, with
/// its key, and refuses it with another.
#[test]
fn certs_init_writes_browser_bundles_nss_imports() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    if Command::new("pk12util").arg("-h").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "pk12util is not installed: .ci/run installs libnss3-tools, and this test needs it"
        );
        eprintln!("SKIPPED: pk12util is not installed (apt-get install libnss3-tools)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pki");
    let (code, stdout, err) = cli(&[
        "certs",
        "init",
        "--federation",
        FEDERATION,
        "--agencies",
        "police,ngo",
        "--out",
        arg(&out),
    ]);
    assert_eq!(code, 0, "{err}");
    let p12 = out.join("ngo/clients/legal.p12");
    let line = stdout
        .lines()
        .find(|l| l.contains(arg(&p12)))
        .unwrap_or_else(|| panic!("no line for {}: {stdout}", p12.display()));
    let password = line.rsplit("password ").next().unwrap().trim();
    assert_eq!(password.len(), 29, "{line}");
    assert_eq!(
        stdout.matches(password).count(),
        1,
        "each password is printed once"
    );
    let bundles = stdout.matches(".p12  password ").count();
    assert_eq!(bundles, 2 * casebridge::certs::DEV_CLIENTS.len());
    let mode = std::fs::metadata(&p12).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Every development node is sealed at rest under a KEK of its own.
    for a in ["police", "ngo"] {
        let kek = out.join(a).join("kek.toml");
        let mode = std::fs::metadata(&kek).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", kek.display());
        let config = casebridge::config::NodeConfig::load(&out.join(a).join("node.toml")).unwrap();
        assert_eq!(config.encryption.unwrap().kek_file.into_inner(), kek);
    }

    let db = dir.path().join("nssdb");
    std::fs::create_dir(&db).unwrap();
    let nss = format!("sql:{}", db.display());
    let run = |cmd: &str, args: &[&str]| {
        let o = Command::new(cmd).args(args).output().unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let (ok, why) = run("certutil", &["-N", "-d", &nss, "--empty-password"]);
    assert!(ok, "{why}");
    let (ok, why) = run(
        "pk12util",
        &["-i", arg(&p12), "-d", &nss, "-W", "not-the-password"],
    );
    assert!(!ok, "a wrong password must not open the file: {why}");
    let (ok, why) = run("pk12util", &["-i", arg(&p12), "-d", &nss, "-W", password]);
    assert!(ok, "{why}");
    // `u,u,u`: NSS holds the certificate's private key, so a browser can
    // present it.
    let (_, certs) = run("certutil", &["-L", "-d", &nss]);
    assert!(
        certs
            .lines()
            .any(|l| l.contains("CN=ngo client legal") && l.trim_end().ends_with("u,u,u")),
        "the client certificate with its key: {certs}"
    );
    assert!(certs.contains("ngo local client CA"), "its CA: {certs}");
    let (ok, keys) = run("certutil", &["-K", "-d", &nss]);
    assert!(
        ok && keys.contains("ngo client legal"),
        "its private key: {keys}"
    );
}
