//! The storage contract of [`super`] as tests that any backend must pass.
//!
//! Each check takes a function that opens the backend under test in a
//! directory; `default_engine` at the bottom runs them all against the engine
//! `Db::open` uses. A new backend adds one such block.
//!
//! Two checks need a second process (a crash cannot be simulated inside the
//! test's own process): the test binary runs itself again as a writer
//! (`child_writer`, which does nothing unless the environment asks for it),
//! kills it with SIGKILL, and reopens what it left. The second of them runs
//! the writer under `strace` to see that every acknowledgement it prints
//! follows a real `fsync`/`fdatasync` of a file of the database.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Db, EngineError, Options, Reads, Tree};

pub(crate) type Open = fn(&Path) -> Db;

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn all(db: &Db, tree: Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
    db.range::<&[u8]>(tree, ..).map(Result::unwrap).collect()
}

/// A transaction's writes across trees appear together at commit, or not
/// at all when its body fails; a snapshot taken before sees none of them.
pub(crate) fn atomic_across_trees(open: Open) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (a, b) = (db.tree("a").unwrap(), db.tree("b").unwrap());
    let failed: Result<(), EngineError> = db.transaction(|tx| {
        tx.insert(a, b"k", b"1")?;
        tx.insert(b, b"k", b"1")?;
        Err(EngineError::Io("the body gives up".into()))
    });
    assert!(failed.is_err());
    assert_eq!(
        db.get(a, b"k").unwrap(),
        None,
        "a rolled-back write is visible"
    );
    assert_eq!(
        db.get(b, b"k").unwrap(),
        None,
        "a rolled-back write is visible"
    );

    let before = db.snapshot();
    db.transaction(|tx| {
        tx.insert(a, b"k", b"2")?;
        tx.insert(b, b"k", b"2")?;
        tx.remove(a, b"absent")
    })
    .unwrap();
    assert_eq!(db.get(a, b"k").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(db.get(b, b"k").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(
        before.get(a, b"k").unwrap(),
        None,
        "a snapshot saw a later commit"
    );
    assert_eq!(before.range::<&[u8]>(b, ..).count(), 0);
}

/// Inside a transaction, reads and range scans see its own inserts and
/// removals, merged in key order with what was committed before.
pub(crate) fn read_your_writes(open: Open) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = db.tree("t").unwrap();
    db.transaction(|tx| {
        for k in [b"b", b"d", b"f"] {
            tx.insert(t, k, b"old")?;
        }
        Ok::<_, EngineError>(())
    })
    .unwrap();
    db.transaction(|tx| {
        tx.insert(t, b"c", b"new")?;
        tx.insert(t, b"d", b"new")?;
        tx.remove(t, b"f")?;
        assert_eq!(tx.get(t, b"c")?.as_deref(), Some(&b"new"[..]));
        assert_eq!(tx.get(t, b"d")?.as_deref(), Some(&b"new"[..]));
        assert_eq!(tx.get(t, b"f")?, None, "a removal inside the transaction");
        let seen: Vec<(Vec<u8>, Vec<u8>)> = tx.range::<&[u8]>(t, ..).collect::<Result<_, _>>()?;
        assert_eq!(
            seen,
            vec![
                (b"b".to_vec(), b"old".to_vec()),
                (b"c".to_vec(), b"new".to_vec()),
                (b"d".to_vec(), b"new".to_vec()),
            ]
        );
        let last = tx.range::<&[u8]>(t, ..).next_back().transpose()?;
        assert_eq!(last.map(|(k, _)| k), Some(b"d".to_vec()));
        // A scan made before a later write does not see it; a new one does.
        let early = tx.prefix(t, b"e");
        tx.insert(t, b"e", b"new")?;
        assert_eq!(early.count(), 0);
        assert_eq!(tx.prefix(t, b"e").count(), 1);
        Ok::<_, EngineError>(())
    })
    .unwrap();
    assert_eq!(all(&db, t).len(), 4);
}

/// Ranges and prefixes come back in ascending byte order (descending from
/// the back), with the bounds as asked; an inverted range is empty.
pub(crate) fn range_order(open: Open) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = db.tree("t").unwrap();
    let mut keys: Vec<Vec<u8>> = vec![
        vec![0],
        vec![0, 0],
        vec![1],
        b"a".to_vec(),
        b"a\x00".to_vec(),
        b"a\x00b".to_vec(),
        b"a\xff".to_vec(),
        b"ab".to_vec(),
        vec![0xff],
        vec![0xff, 0xff],
    ];
    keys.extend((0..200u64).map(|i| (i * 7919 % 1000).to_be_bytes().to_vec()));
    // Insert in a scrambled order, over several transactions.
    let mut scrambled = keys.clone();
    scrambled.reverse();
    scrambled.rotate_left(5);
    for chunk in scrambled.chunks(17) {
        db.transaction(|tx| {
            for k in chunk {
                tx.insert(t, k, k)?;
            }
            Ok::<_, EngineError>(())
        })
        .unwrap();
    }
    let refused = db.transaction(|tx| tx.insert(t, b"", b"x"));
    assert!(matches!(refused, Err(EngineError::Key(0))), "{refused:?}");
    let long = vec![1u8; super::MAX_KEY + 1];
    let refused = db.transaction(|tx| tx.insert(t, &long, b"x"));
    assert!(matches!(refused, Err(EngineError::Key(_))), "{refused:?}");
    keys.push(vec![1u8; super::MAX_KEY]);
    db.transaction(|tx| tx.insert(t, vec![1u8; super::MAX_KEY], b"longest"))
        .unwrap();
    keys.sort();
    keys.dedup();
    let got: Vec<Vec<u8>> = all(&db, t).into_iter().map(|(k, _)| k).collect();
    assert_eq!(got, keys);
    let back: Vec<Vec<u8>> = db
        .range::<&[u8]>(t, ..)
        .rev()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(back, keys.iter().rev().cloned().collect::<Vec<_>>());

    let of = |r: super::Range| -> Vec<Vec<u8>> { r.map(|r| r.unwrap().0).collect() };
    assert_eq!(
        of(db.prefix(t, b"a")),
        [&b"a"[..], b"a\x00", b"a\x00b", b"ab", b"a\xff"]
    );
    assert_eq!(of(db.prefix(t, b"a\x00")), [&b"a\x00"[..], b"a\x00b"]);
    assert_eq!(of(db.prefix(t, [0xff])), [vec![0xff], vec![0xff, 0xff]]);
    assert_eq!(
        of(db.range(t, b"a".to_vec()..b"ab".to_vec())),
        [&b"a"[..], b"a\x00", b"a\x00b"]
    );
    assert_eq!(
        of(db.range(
            t,
            (
                std::ops::Bound::Excluded(b"a".to_vec()),
                std::ops::Bound::Included(b"ab".to_vec())
            )
        )),
        [&b"a\x00"[..], b"a\x00b", b"ab"]
    );
    assert_eq!(
        of(db.range(t, b"b".to_vec()..b"a".to_vec())),
        Vec::<Vec<u8>>::new()
    );
    assert_eq!(
        of(db.range(t, b"a".to_vec()..b"a".to_vec())),
        Vec::<Vec<u8>>::new()
    );
    let n = 500u64.to_be_bytes().to_vec();
    let below: Vec<Vec<u8>> = keys
        .iter()
        .filter(|k| k.len() == 8 && k.as_slice() < n.as_slice())
        .cloned()
        .collect();
    assert_eq!(of(db.range(t, vec![0u8; 8]..n)), below);
}

/// Replaying the same conditional write (apply a version only if it is
/// newer than the one held) changes nothing the second time, and the
/// second run sees the first's result.
pub(crate) fn idempotent_replays(open: Open) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (items, log) = (db.tree("items").unwrap(), db.tree("log").unwrap());
    let apply = |id: &[u8], version: u64| -> bool {
        db.transaction(|tx| {
            let held = tx
                .get(items, id)?
                .map(|v| u64::from_be_bytes(v.try_into().unwrap()));
            if held.is_some_and(|h| h >= version) {
                return Ok::<_, EngineError>(false);
            }
            tx.insert(items, id, version.to_be_bytes())?;
            let n = tx.range::<&[u8]>(log, ..).count() as u64;
            tx.insert(log, key(n), id)?;
            Ok(true)
        })
        .unwrap()
    };
    assert!(apply(b"x", 1));
    let once = (all(&db, items), all(&db, log));
    assert!(!apply(b"x", 1), "a replay applied again");
    assert!(!apply(b"x", 1));
    assert_eq!((all(&db, items), all(&db, log)), once);
    assert!(apply(b"x", 2));
    assert_eq!(all(&db, log).len(), 2);
}

/// Concurrent read-modify-write transactions lose no update.
pub(crate) fn serialized_writers(open: Open) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = db.tree("counter").unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..250 {
                    db.transaction(|tx| {
                        let n = tx
                            .get(t, b"n")?
                            .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
                        tx.insert(t, b"n", (n + 1).to_be_bytes())
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(
        db.get(t, b"n").unwrap(),
        Some(1000u64.to_be_bytes().to_vec())
    );
}

/// What was committed and synced is there after a clean reopen, trees and
/// all; large values too.
pub(crate) fn reopen_keeps_everything(open: Open) {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![7u8; 300 * 1024];
    {
        let db = open(dir.path());
        let (a, b) = (db.tree("a").unwrap(), db.tree("b").unwrap());
        for i in 0..1000u64 {
            db.transaction(|tx| {
                tx.insert(a, key(i), i.to_string())?;
                tx.insert(b, key(i), b"")
            })
            .unwrap();
        }
        db.transaction(|tx| tx.insert(a, b"big", &big)).unwrap();
        db.transaction(|tx| tx.remove(b, key(3))).unwrap();
        db.sync().unwrap();
    }
    let db = open(dir.path());
    let mut names = db.tree_names();
    names.sort();
    assert!(
        names.contains(&"a".into()) && names.contains(&"b".into()),
        "{names:?}"
    );
    let (a, b) = (db.tree("a").unwrap(), db.tree("b").unwrap());
    assert_eq!(db.len(a).unwrap(), 1001);
    assert_eq!(db.len(b).unwrap(), 999);
    assert_eq!(db.get(a, key(999)).unwrap(), Some(b"999".to_vec()));
    assert_eq!(db.get(a, b"big").unwrap(), Some(big));
    assert!(db.disk_bytes().unwrap() > 0);
}

/// Environment variables that turn `child_writer` into the writer process.
const CHILD_DIR: &str = "CASEBRIDGE_CONFORMANCE_DIR";

/// The writer process of the crash checks: transactions over two trees,
/// a sync after every tenth, and after each sync one line "synced N" on
/// stdout (N: the last transaction the sync covers). Runs until killed.
pub(crate) fn child_writer(open: Open) {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return; // an ordinary test run: nothing to do
    };
    let db = open(Path::new(&dir));
    let (a, b, meta) = (
        db.tree("a").unwrap(),
        db.tree("b").unwrap(),
        db.tree("meta").unwrap(),
    );
    let mut out = std::io::stdout().lock();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0u64.. {
        db.transaction(|tx| {
            tx.insert(a, key(i), vec![1u8; 600])?;
            tx.insert(b, key(i), i.to_string())?;
            tx.insert(meta, b"last", key(i))
        })
        .unwrap();
        if i % 10 == 9 {
            db.sync().unwrap();
            writeln!(out, "synced {i}").unwrap();
            out.flush().unwrap();
        }
        if Instant::now() > deadline {
            break; // never outlive a parent that died without killing us
        }
    }
}

/// Starts the writer (optionally under strace) and returns it with its
/// stdout reader.
fn spawn_writer(
    test_name: &str,
    dir: &Path,
    strace_out: Option<&Path>,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match strace_out {
        Some(out) => {
            let mut c = Command::new("strace");
            c.args([
                "-f",
                "-qq",
                "-ttt",
                "-y",
                "-e",
                "trace=fsync,fdatasync,write",
                "-o",
            ])
            .arg(out)
            .arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut child = cmd
        .args([
            test_name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

/// Reads "synced N" lines until `n` of them have come; returns the last N.
fn wait_for_syncs(out: &mut BufReader<std::process::ChildStdout>, n: usize) -> u64 {
    let mut seen = 0;
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the writer stopped early"
        );
        if let Some(i) = line.trim().strip_prefix("synced ") {
            seen += 1;
            if seen == n {
                return i.parse().unwrap();
            }
        }
    }
}

/// Kill the process group member with SIGKILL (no destructor, no final sync).
fn kill9(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// After SIGKILL mid-write, the database opens and holds a prefix of the
/// transactions, each whole: everything a completed sync covered, nothing
/// half-written, no holes.
pub(crate) fn consistent_after_kill9(open: Open, writer_test: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut out) = spawn_writer(writer_test, dir.path(), None);
    let synced = wait_for_syncs(&mut out, 30);
    kill9(&mut child);
    let db = open(dir.path());
    let (a, b, meta) = (
        db.tree("a").unwrap(),
        db.tree("b").unwrap(),
        db.tree("meta").unwrap(),
    );
    let ids = |t: Tree| -> Vec<u64> {
        db.range::<&[u8]>(t, ..)
            .map(|r| u64::from_be_bytes(r.unwrap().0.try_into().unwrap()))
            .collect()
    };
    let (in_a, in_b) = (ids(a), ids(b));
    assert_eq!(in_a, in_b, "a transaction survived in one tree only");
    assert!(
        in_a.len() as u64 > synced,
        "synced through {synced} but only {} transactions survived",
        in_a.len()
    );
    assert_eq!(
        in_a,
        (0..in_a.len() as u64).collect::<Vec<_>>(),
        "the survivors are not a prefix"
    );
    let last = db.get(meta, b"last").unwrap().unwrap();
    assert_eq!(
        u64::from_be_bytes(last.try_into().unwrap()),
        in_a.len() as u64 - 1
    );
    // Still writable after recovery.
    db.transaction(|tx| tx.insert(a, b"after", b"")).unwrap();
}

/// One fsync or fdatasync of a file under the database directory, or one
/// "synced" line written by the writer, in strace's order.
#[derive(Debug, PartialEq)]
enum Event {
    Sync,
    Ack(u64),
}

/// The pid, time and call of one strace line (strace pads the pid with
/// spaces to a fixed width, so the separator is not always one space).
fn strace_fields(line: &str) -> Option<(&str, &str, &str)> {
    let (pid, rest) = line.trim_start().split_once(' ')?;
    let (ts, call) = rest.trim_start().split_once(' ')?;
    Some((pid, ts, call))
}

fn events(trace: &str, dir: &Path) -> Vec<Event> {
    let inside = format!("<{}/", dir.display());
    let mut pending_sync = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in trace.lines() {
        let Some((pid, _ts, rest)) = strace_fields(line) else {
            continue;
        };
        if (rest.starts_with("fsync(") || rest.starts_with("fdatasync(")) && rest.contains(&inside)
        {
            if rest.ends_with("<unfinished ...>") {
                pending_sync.insert(pid.to_owned());
            } else if rest.contains(") = 0") {
                out.push(Event::Sync);
            }
        } else if (rest.starts_with("<... fsync resumed>")
            || rest.starts_with("<... fdatasync resumed>"))
            && pending_sync.remove(pid)
            && rest.contains(") = 0")
        {
            out.push(Event::Sync);
        } else if rest.starts_with("write(1")
            && let Some(i) = rest
                .split("synced ")
                .nth(1)
                .and_then(|s| s.split('\\').next())
                .and_then(|s| s.parse().ok())
        {
            out.push(Event::Ack(i));
        }
    }
    out
}

/// Every acknowledgement the writer prints comes after an fsync/fdatasync
/// of a database file that completed after the previous acknowledgement:
/// `sync` really syncs, every time.
pub(crate) fn sync_is_a_real_sync(open: Open, writer_test: &str) {
    if Command::new("strace").arg("-V").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "strace is not installed: .ci/run installs it, and this check needs it"
        );
        eprintln!("SKIPPED: strace is not installed (apt-get install strace)");
        return;
    }
    let _ = open;
    let dir = tempfile::tempdir().unwrap();
    let db_dir = std::fs::canonicalize(dir.path()).unwrap();
    let trace_path = db_dir.parent().unwrap().join(format!(
        "{}.strace",
        db_dir.file_name().unwrap().to_string_lossy()
    ));
    let (mut child, mut out) = spawn_writer(writer_test, &db_dir, Some(&trace_path));
    wait_for_syncs(&mut out, 20);
    // strace's pid is the child's; the writer is its child.
    let pid = child.id();
    let writer = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|c| c.split_whitespace().next().map(str::to_owned));
    if let Some(w) = writer {
        let _ = Command::new("kill").args(["-KILL", &w]).status();
    }
    // strace ends by itself once its tracee is gone, writing out what it
    // buffered; killing it too would lose the end of the trace.
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    kill9(&mut child);
    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let _ = std::fs::remove_file(&trace_path);
    let events = events(&trace, &db_dir);
    let acks: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Ack(_)))
        .map(|(i, _)| i)
        .collect();
    assert!(acks.len() >= 20, "{} acknowledgements seen", acks.len());
    let mut previous = 0;
    for at in acks {
        assert!(
            events[previous..at].contains(&Event::Sync),
            "{:?} was printed with no sync of a database file since the one before",
            events[at]
        );
        previous = at + 1;
    }
}

/// The engine `Db::open` uses, with small limits.
pub(crate) fn default_engine(dir: &Path) -> Db {
    Db::open(
        dir,
        &Options {
            cache_bytes: 8 << 20,
            write_buffer_bytes: 2 << 20,
        },
    )
    .unwrap()
}

mod default {
    use super::*;

    const WRITER: &str = "store::engine::conformance::default::child_writer";

    #[test]
    fn atomic_across_trees() {
        super::atomic_across_trees(default_engine);
    }
    #[test]
    fn read_your_writes() {
        super::read_your_writes(default_engine);
    }
    #[test]
    fn range_order() {
        super::range_order(default_engine);
    }
    #[test]
    fn idempotent_replays() {
        super::idempotent_replays(default_engine);
    }
    #[test]
    fn serialized_writers() {
        super::serialized_writers(default_engine);
    }
    #[test]
    fn reopen_keeps_everything() {
        super::reopen_keeps_everything(default_engine);
    }
    #[test]
    fn consistent_after_kill9() {
        super::consistent_after_kill9(default_engine, WRITER);
    }
    #[test]
    fn sync_is_a_real_sync() {
        super::sync_is_a_real_sync(default_engine, WRITER);
    }
    /// Not a test: the writer process the two tests above start.
    #[test]
    #[ignore = "the writer process of the crash checks; does nothing when run alone"]
    fn child_writer() {
        super::child_writer(default_engine);
    }
}

/// The default engine behind the sealing wrapper, every tree sealed under
/// the epoch in force: the KEK and the epoch keys beside the database.
pub(crate) fn sealed_engine(dir: &Path) -> Db {
    use crate::vault::{Epochs, FileKek, Kek};
    let kek_path = dir.join("kek.toml");
    let kek = if kek_path.exists() {
        FileKek::load(&kek_path)
    } else {
        std::fs::create_dir_all(dir).unwrap();
        FileKek::create(&kek_path)
    }
    .unwrap();
    let kek: std::sync::Arc<dyn Kek> = std::sync::Arc::new(kek);
    let epochs = Epochs::open(&dir.join("keys"), kek).unwrap();
    // Records whose key starts with an even byte have data keys of their
    // own, the others are sealed under the epoch: the suite covers both.
    let sealer = super::sealed::EpochSealer::new(
        epochs,
        |_| true,
        |_, key| key.first().filter(|b| *b % 2 == 0).map(|_| key.to_vec()),
    );
    Db::open_sealed(
        &dir.join("db"),
        &Options {
            cache_bytes: 8 << 20,
            write_buffer_bytes: 2 << 20,
        },
        std::sync::Arc::new(sealer),
    )
    .unwrap()
}

mod sealed {
    use super::*;

    const WRITER: &str = "store::engine::conformance::sealed::child_writer";

    #[test]
    fn atomic_across_trees() {
        super::atomic_across_trees(sealed_engine);
    }
    #[test]
    fn read_your_writes() {
        super::read_your_writes(sealed_engine);
    }
    #[test]
    fn range_order() {
        super::range_order(sealed_engine);
    }
    #[test]
    fn idempotent_replays() {
        super::idempotent_replays(sealed_engine);
    }
    #[test]
    fn serialized_writers() {
        super::serialized_writers(sealed_engine);
    }
    #[test]
    fn reopen_keeps_everything() {
        super::reopen_keeps_everything(sealed_engine);
    }
    #[test]
    fn consistent_after_kill9() {
        super::consistent_after_kill9(sealed_engine, WRITER);
    }
    #[test]
    fn sync_is_a_real_sync() {
        super::sync_is_a_real_sync(sealed_engine, WRITER);
    }
    /// Not a test: the writer process the two tests above start.
    #[test]
    #[ignore = "the writer process of the crash checks; does nothing when run alone"]
    fn child_writer() {
        super::child_writer(sealed_engine);
    }
}
