//! The README's user guide, run as written: every command of every `sh`
//! block between "## User guide" and the next top-level section, in order,
//! in a fresh directory holding a copy of `docs/`, with the real binary.
//! A command that fails (or a line this runner does not know) fails the
//! test, so the guide cannot drift from the program.
//!
//! The runner's only liberties, each explicit:
//! - `casebridge node run …` is started in the background (and stopped at
//!   the end), after which the runner waits for the node to answer;
//!   `casebridge keyservice run …` likewise, waiting for its port;
//! - `hits watch` without `--backlog-only` streams until Ctrl-C: it must
//!   still be running (not failed) after two seconds, then it is stopped;
//! - `export NAME=value` sets the variable for the commands after it;
//! - `> file` writes the command's standard output to that file;
//! - `<id>` stands for the id of the alert the guide's first `alert submit`
//!   created, `<later>` for an RFC 3339 time shortly before the test began;
//! - trailing `# comments` are dropped.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shell lines of the user guide's `sh` blocks, continuation lines joined.
fn guide_commands(readme: &str) -> Vec<String> {
    let start = readme.find("\n## User guide").expect("a user guide");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in rest[..end].lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block && line.trim() == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let line = match line.find(" #") {
            Some(at) if !line[..at].contains('"') || line[..at].matches('"').count() % 2 == 0 => {
                &line[..at]
            }
            _ => line,
        };
        let line = line.trim_end();
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        let command = std::mem::take(&mut pending).trim().to_string();
        if !command.is_empty() {
            out.push(command);
        }
    }
    out
}

/// Splits a command line into words, honouring double quotes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for c in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_user_guide_runs_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let commands = guide_commands(&readme);
    assert!(commands.len() > 20, "{commands:?}");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/docs")),
        &dir.path().join("docs"),
    );
    let bin = env!("CARGO_BIN_EXE_casebridge");
    let began = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let began = began
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut nodes = Nodes(Vec::new());
    let mut id: Option<String> = None;
    for command in &commands {
        if let Some(assignment) = command.strip_prefix("export ") {
            let (k, v) = assignment.split_once('=').expect("export NAME=value");
            env.insert(k.into(), v.into());
            continue;
        }
        let (command, into) = match command.split_once(" > ") {
            Some((c, file)) => (c, Some(file.trim())),
            None => (command.as_str(), None),
        };
        let mut args = words(command);
        assert_eq!(
            args.first().map(String::as_str),
            Some("casebridge"),
            "a user-guide line this runner does not know: {command}"
        );
        args.remove(0);
        for a in &mut args {
            if a.contains("<id>") {
                let id = id
                    .as_deref()
                    .unwrap_or_else(|| panic!("<id> before any submit: {command}"));
                *a = a.replace("<id>", id);
            }
            *a = a.replace("<later>", &began);
        }
        let mut cmd = Command::new(bin);
        cmd.args(&args).current_dir(dir.path()).envs(&env);
        // A server runs in the background; the guide goes on once it answers.
        let server = match args.get(1).map(String::as_str) {
            Some("run") => args.first().map(String::as_str),
            _ => None,
        };
        if let Some(server @ ("keyservice" | "node")) = server {
            let child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            nodes.0.push(child);
            if server == "keyservice" {
                wait_for_key_service(dir.path(), &args);
            } else {
                wait_until_up(bin, dir.path(), &args);
            }
            continue;
        }
        if args.iter().take(2).eq(["hits", "watch"].iter())
            && !args.iter().any(|a| a == "--backlog-only")
        {
            let mut child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_secs(2));
            let exited = child.try_wait().unwrap();
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            assert!(
                exited.is_none(),
                "`{command}` ended ({exited:?}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        let out = cmd.output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "`{command}` failed ({}):\n{stdout}{stderr}",
            out.status
        );
        if let Some(file) = into {
            std::fs::write(dir.path().join(file), &out.stdout).unwrap();
        }
        if id.is_none() && args.iter().take(2).eq(["alert", "submit"].iter()) {
            id = stdout
                .split(|c: char| c.is_whitespace())
                .find(|w| w.starts_with("police:"))
                .map(str::to_owned);
            assert!(id.is_some(), "no alert id in {stdout}");
        }
    }
    assert!(!nodes.0.is_empty(), "the guide starts a node");
}

/// Waits until the key service started with `args` accepts connections.
fn wait_for_key_service(dir: &Path, args: &[String]) {
    let config = args
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("keyservice run --config FILE");
    let config = casebridge::config::KeyServiceConfig::load(&dir.join(config)).unwrap();
    let addr = *config.listen.get_ref();
    let deadline = Instant::now() + common::WAIT;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the key service did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the node started with `args` answers its admin client.
fn wait_until_up(bin: &str, dir: &Path, args: &[String]) {
    let config = args
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("node run --config FILE");
    let admin = Path::new(config).with_file_name("client-admin.toml");
    let deadline = Instant::now() + common::WAIT;
    loop {
        let ok = Command::new(bin)
            .arg("--client-config")
            .arg(&admin)
            .arg("status")
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node of {config} did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
