//! The previous release's binary, built from its pinned commit
//! ([`casebridge::release::PREVIOUS`]) so tests and benches can run it
//! beside this build: the mixed-version federation of `tests/mixed.rs` and
//! `cargo bench --bench versions`.
//!
//! Built once per target directory and kept there
//! (`<target>/previous-release/<version>-<commit>/`): the sources come out
//! of this repository's history with `git archive` (no work tree or branch
//! is added to the developer's checkout), and the build has its own target
//! directory, because both crates are called `casebridge` and would
//! otherwise overwrite each other's binary. That target directory starts
//! as a copy of this build's compiled dependencies (the two lock files
//! share every dependency version), so a clean CI machine compiles only
//! the previous release's own crate, not the whole tree twice.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use casebridge::release::PREVIOUS;

/// The previous release's `casebridge` binary, in the profile this test
/// binary was built with (debug for tests, release for benches); `None`
/// (after saying SKIPPED) only outside CI when this checkout lacks the
/// pinned commit — a shallow clone or a source archive. Under `CI=true`
/// that is a failure.
pub fn binary() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT.get_or_init(build).clone()
}

fn build() -> Option<PathBuf> {
    let ours = Path::new(env!("CARGO_BIN_EXE_casebridge"));
    let profile_dir = ours.parent().unwrap();
    let profile = profile_dir
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let cache = profile_dir
        .parent()
        .unwrap()
        .join("previous-release")
        .join(format!("{}-{}", PREVIOUS.version, &PREVIOUS.commit[..12]));
    std::fs::create_dir_all(&cache).unwrap();
    // Test binaries run one after another, but benches and a second
    // `cargo test` may not: one builder at a time.
    let lock = File::create(cache.join("lock")).unwrap();
    lock.lock().unwrap();
    let src = cache.join("src");
    if !src.join("Cargo.toml").exists() && !extract(&src) {
        return None;
    }
    let target = cache.join("target");
    seed_dependencies(profile_dir, &target.join(&profile));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--locked", "--bin", "casebridge"])
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", &target)
        .stdout(Stdio::null());
    if profile == "release" {
        command.arg("--release");
    }
    eprintln!(
        "building release {} ({}) in {}",
        PREVIOUS.version,
        PREVIOUS.commit,
        target.display()
    );
    let ok = command.status().unwrap();
    assert!(ok.success(), "the previous release did not build");
    Some(target.join(&profile).join("casebridge"))
}

/// Writes the pinned commit's tree into `src`; false (SKIPPED) when this
/// checkout does not have that commit and this is not CI.
fn extract(src: &Path) -> bool {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let present = Command::new("git")
        .args(["-C", manifest, "cat-file", "-e"])
        .arg(format!("{}^{{commit}}", PREVIOUS.commit))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "commit {} (release {}) is not in this checkout: CI needs the full history \
             (git fetch --unshallow)",
            PREVIOUS.commit,
            PREVIOUS.version
        );
        eprintln!(
            "SKIPPED: commit {} (release {}) is not in this checkout (git fetch --unshallow)",
            PREVIOUS.commit, PREVIOUS.version
        );
        return false;
    }
    let partial = src.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).unwrap();
    let archive = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git -C '{manifest}' archive --format=tar {} | tar -x -C '{}'",
            PREVIOUS.commit,
            partial.display()
        ))
        .status()
        .unwrap();
    assert!(archive.success(), "git archive {} failed", PREVIOUS.commit);
    std::fs::rename(&partial, src).unwrap();
    true
}

/// Gives the previous release's target directory this build's compiled
/// dependencies, once: hard links for the compiler's outputs (rustc
/// removes an output before writing it, so a rebuild never writes through
/// a link), copies for build-script and fingerprint directories (a build
/// script that runs again may write its files in place). Our own crate's
/// artifacts stay behind: the previous release builds its own.
fn seed_dependencies(ours: &Path, theirs: &Path) {
    if theirs.exists() || !ours.join("deps").is_dir() {
        return;
    }
    let partial = theirs.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    for dir in ["deps", "build", ".fingerprint"] {
        let to = partial.join(dir);
        std::fs::create_dir_all(&to).unwrap();
        let dependencies: Vec<PathBuf> = std::fs::read_dir(ours.join(dir))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                !name.starts_with("casebridge")
                    && !name.starts_with("libcasebridge")
                    && (dir != "deps" || name.starts_with("lib"))
            })
            .collect();
        if dir == "deps" {
            for from in &dependencies {
                std::fs::hard_link(from, to.join(from.file_name().unwrap())).unwrap();
            }
        } else if !dependencies.is_empty() {
            let ok = Command::new("cp")
                .arg("-a")
                .args(&dependencies)
                .arg(&to)
                .status()
                .unwrap();
            assert!(ok.success(), "copying {} failed", ours.join(dir).display());
        }
    }
    std::fs::rename(&partial, theirs).unwrap();
}
