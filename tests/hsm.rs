//! The KEK inside a PKCS#11 token (docs/encryption.md, "Where the KEK
//! lives"), with a real SoftHSM2 token made by this test: a sealed node
//! moves its KEK from a file into the token with `store rotate-kek`, runs
//! and restarts on it exactly as on a file, and the KEK's bytes are nowhere
//! on disk; a wrong PIN or a token without the key is refused by name.
//!
//! A test binary of its own: SoftHSM2 reads where its tokens live from the
//! environment (`SOFTHSM2_CONF`), set once here before anything runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use casebridge::proto::v1::GetAlertRequest;
use common::*;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const NARRATIVE: &str = "hsm canary narrative: kept in a greenhouse near Almeria";

/// Makes a SoftHSM2 token `casebridge` in `dir` (its own config file,
/// named by `SOFTHSM2_CONF`), with user PIN 5678 in `dir/pin` (0600).
/// `None` (after saying SKIPPED) when SoftHSM2 is not installed, outside CI.
fn softhsm_token(dir: &Path) -> Option<PathBuf> {
    if !Path::new(MODULE).exists() || Command::new("softhsm2-util").arg("-v").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "SoftHSM2 is not installed: .ci/run installs softhsm2, and this test needs it"
        );
        eprintln!("SKIPPED: SoftHSM2 is not installed (apt-get install softhsm2)");
        return None;
    }
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // SAFETY: set before this binary's only test starts any thread that
    // reads the environment.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "casebridge"])
        .args(["--so-pin", "1234", "--pin", "5678"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pin = dir.join("pin");
    casebridge::secrets::create_new(&pin, b"5678\n", true).unwrap();
    Some(pin)
}

/// `store kek-new` of a key `casebridge-kek` in the token, its reference at `out`.
fn kek_new_in_token(out: &Path, pin: &Path) -> (i32, String, String) {
    cli(&[
        "store",
        "kek-new",
        "--out",
        out.to_str().unwrap(),
        "--pkcs11-module",
        MODULE,
        "--token",
        "casebridge",
        "--key-label",
        "casebridge-kek",
        "--pin-file",
        pin.to_str().unwrap(),
    ])
}

async fn narrative(fed: &TestFederation, id: &str) -> String {
    let mut c = fed.client("police", "cms").await;
    let alert = c
        .alerts
        .get_alert(GetAlertRequest { id: id.into() })
        .await
        .unwrap();
    alert.into_inner().content.unwrap_or_default().narrative
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kek_in_a_softhsm2_token_works_as_a_file_does() {
    let hsm = tempfile::tempdir().unwrap();
    let Some(pin) = softhsm_token(hsm.path()) else {
        return;
    };
    let mut fed = TestFederation::start_with(&["police", "ngo"], &["police"], |_, _| {}).await;
    let police = fed.layout.agencies[&agency("police")].clone();
    // Sealed under the KEK file `certs init` wrote, kek.toml.
    let file_kek = police.dir.join("kek.toml");
    seal(&police.node_config, "");
    let text = std::fs::read_to_string(&police.node_config).unwrap();
    fed.start_node("police").await;
    let mut cms = fed.client("police", "cms").await;
    let before = submit_draft(&mut cms, sample_draft(NARRATIVE)).await;

    // The KEK made in the token; the file written only refers to it.
    let token_kek = police.dir.join("kek-hsm.toml");
    let made = kek_new_in_token(&token_kek, &pin);
    assert_eq!(made.0, 0, "{}{}", made.1, made.2);
    assert!(made.1.contains("in token casebridge"), "{}", made.1);
    let again = kek_new_in_token(&police.dir.join("other.toml"), &pin);
    assert_ne!(again.0, 0);
    assert!(
        again.2.contains("already holds a key with this label"),
        "{}",
        again.2
    );

    // The running node moves its epoch keys under the token's KEK.
    let rotated = fed.cli_as(
        "police",
        "admin",
        &[
            "store",
            "rotate-kek",
            "--kek-file",
            token_kek.to_str().unwrap(),
        ],
    );
    assert_eq!(rotated.0, 0, "{}{}", rotated.1, rotated.2);
    let after = submit_draft(&mut cms, sample_draft(NARRATIVE)).await;
    fed.stop_node("police").await;
    std::fs::remove_file(&file_kek).unwrap();
    std::fs::write(
        &police.node_config,
        text.replace("kek_file = \"kek.toml\"", "kek_file = \"kek-hsm.toml\""),
    )
    .unwrap();
    fed.start_node("police").await;
    for id in [&before.id, &after.id] {
        assert_eq!(narrative(&fed, id).await, NARRATIVE);
    }
    let status = fed.status("police").await.encryption.unwrap();
    let reference = std::fs::read_to_string(&token_kek).unwrap();
    assert!(reference.contains(&status.kek_id), "{reference}");
    fed.stop_node("police").await;
    assert_eq!(
        files_holding(&police.dir, NARRATIVE.as_bytes()),
        Vec::<PathBuf>::new()
    );

    // A wrong PIN, and a token that does not hold the key, are refused by name.
    std::fs::write(&pin, "0000\n").unwrap();
    let err = casebridge::vault::load_kek(&token_kek)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("logging in to casebridge"), "{err}");
    std::fs::write(&pin, "5678\n").unwrap();
    let elsewhere = std::fs::read_to_string(&token_kek)
        .unwrap()
        .replace("key = \"casebridge-kek\"", "key = \"no-such-key\"");
    let moved = police.dir.join("kek-moved.toml");
    casebridge::secrets::create_new(&moved, elsewhere.as_bytes(), true).unwrap();
    let err = casebridge::vault::load_kek(&moved)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("0 keys with this label"), "{err}");
    fed.start_node("police").await;
    fed.shutdown().await;
}
