//! A real PostgreSQL for the tests (issue 33): a primary and a synchronous
//! standby on 127.0.0.1, in a temp dir, started with Debian's server
//! binaries as the `postgres` user (initdb and the server refuse root),
//! stopped when dropped. About three seconds to start a pair.
//!
//! Under `CI=true` a missing PostgreSQL fails the test (`.ci/run` installs
//! it); elsewhere the test says it skips.

#![allow(dead_code)] // each test binary uses what it needs

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The newest server binaries Debian installed, if any.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Whether PostgreSQL is here; under `CI=true` its absence is a failure.
pub fn available() -> bool {
    if bin_dir().is_some() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "PostgreSQL's server binaries are missing (apt-get install postgresql)"
    );
    eprintln!("SKIPPED: PostgreSQL is not installed (apt-get install postgresql)");
    false
}

/// One server: its data directory and port.
pub struct Server {
    pub data: PathBuf,
    pub port: u16,
}

impl Server {
    /// A libpq connection string for database `postgres`.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The postmaster's pid (the first line of `postmaster.pid`).
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

/// A primary with a synchronous standby (`standby1`): a commit with
/// `synchronous_commit = on` returns once both have flushed it.
pub struct Pair {
    _base: tempfile::TempDir,
    bin: PathBuf,
    pub primary: Server,
    pub standby: Server,
}

/// `program` to run as the `postgres` user (directly when the tests do
/// not run as root).
fn postgres_command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs `program` with `args` as the `postgres` user; panics with its
/// output when it fails.
fn as_postgres(program: &Path, args: &[&str]) {
    let out = postgres_command(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Pair {
    /// Starts a primary and its synchronous standby, and waits until the
    /// standby is in sync.
    pub fn start() -> Pair {
        let bin = bin_dir().expect("PostgreSQL is installed (check `available()` first)");
        let base = tempfile::Builder::new()
            .prefix("casebridge-pg-")
            .tempdir()
            .unwrap();
        if is_root() {
            as_root_chown(base.path());
        }
        let primary = Server {
            data: base.path().join("p"),
            port: super::free_port(),
        };
        let standby = Server {
            data: base.path().join("s"),
            port: super::free_port(),
        };
        let p = primary.data.to_str().unwrap();
        as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                p,
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        append(
            &primary.data.join("postgresql.conf"),
            &format!(
                "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
                 wal_level = replica\nmax_wal_senders = 4\nshared_buffers = 32MB\n\
                 synchronous_standby_names = 'FIRST 1 (standby1)'\n",
                primary.port,
                base.path().display()
            ),
        );
        append(
            &primary.data.join("pg_hba.conf"),
            "host replication postgres 127.0.0.1/32 trust\n",
        );
        let pair = Pair {
            bin,
            primary,
            standby,
            _base: base,
        };
        pair.pg_ctl(&pair.primary, "start");
        pair.base_backup();
        pair.pg_ctl(&pair.standby, "start");
        pair.wait_in_sync();
        pair
    }

    fn pg_ctl(&self, server: &Server, action: &str) {
        let data = server.data.to_str().unwrap();
        let log = format!("{data}.log");
        let args: Vec<&str> = match action {
            "start" => vec!["-D", data, "-l", &log, "-w", "start"],
            "promote" => vec!["-D", data, "-w", "promote"],
            _ => vec!["-D", data, "-m", "immediate", "-w", "stop"],
        };
        as_postgres(&self.bin.join("pg_ctl"), &args);
    }

    /// The standby's data directory, copied from the primary, following
    /// it under the name the primary waits for.
    fn base_backup(&self) {
        let port = self.primary.port.to_string();
        let s = self.standby.data.to_str().unwrap();
        as_postgres(
            &self.bin.join("pg_basebackup"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                s,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        );
        append(
            &self.standby.data.join("postgresql.conf"),
            &format!(
                "port = {}\nsynchronous_standby_names = ''\n",
                self.standby.port
            ),
        );
        let auto = self.standby.data.join("postgresql.auto.conf");
        let text = std::fs::read_to_string(&auto).unwrap().replace(
            "primary_conninfo = '",
            "primary_conninfo = 'application_name=standby1 ",
        );
        std::fs::write(&auto, text).unwrap();
    }

    /// Waits (at most 30 s) until the primary reports its standby `sync`.
    fn wait_in_sync(&self) {
        let psql = self.bin.join("psql");
        let started = Instant::now();
        loop {
            let out = Command::new(&psql)
                .args(["-h", "127.0.0.1", "-p", &self.primary.port.to_string()])
                .args([
                    "-U",
                    "postgres",
                    "-Atc",
                    "select sync_state from pg_stat_replication",
                ])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).trim() == "sync" {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the standby did not come in sync"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The primary's machine dies: its postmaster and every backend are
    /// killed at once, nothing flushed on the way out.
    pub fn kill_primary(&self) {
        let pid = self.primary.pid().expect("the primary runs");
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        for child in children.split_whitespace() {
            let _ = Command::new("kill").args(["-9", child]).status();
        }
    }

    /// The standby becomes the primary.
    pub fn promote_standby(&self) {
        self.pg_ctl(&self.standby, "promote");
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for server in [&self.standby, &self.primary] {
            if server.pid().is_some() {
                let data = server.data.to_str().unwrap().to_owned();
                let _ = postgres_command(&self.bin.join("pg_ctl"))
                    .args(["-D", &data, "-m", "immediate", "-w", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Gives `dir` to the `postgres` user (the servers' files go under it).
fn as_root_chown(dir: &Path) {
    let status = Command::new("chown")
        .args(["postgres:postgres", dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "chown postgres {}", dir.display());
}
