//! The federation operator's directory tooling, through the real binary:
//! three operators, two of whom must sign; a version built, passed
//! around and signed one key at a time; mistakes refused with the field
//! named and nothing written; rollbacks, short signatures and strangers'
//! keys refused by `verify`; a signer rotation accepted only with the old
//! set's threshold and the new one's.

mod common;

use std::path::Path;

use common::cli;

struct Operators {
    dir: tempfile::TempDir,
}

impl Operators {
    fn new(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for i in 1..=n {
            let key = dir.path().join(format!("op{i}.key"));
            let (code, out, err) = cli(&["directory", "keygen", "--out", key.to_str().unwrap()]);
            assert_eq!(code, 0, "{err}");
            assert!(out.contains("key id "), "{out}");
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let owned: Vec<String> = args
            .iter()
            .map(|a| {
                a.strip_prefix('@')
                    .map_or_else(|| a.to_string(), |f| self.path(f))
            })
            .collect();
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        cli(&refs)
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        out
    }

    #[track_caller]
    fn fails(&self, args: &[&str], exit: i32) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, exit, "{args:?}: {out}{err}");
        err
    }

    fn sign(&self, file: &str, ops: &[usize]) {
        for i in ops {
            self.ok(&[
                "directory",
                "sign",
                &format!("@{file}"),
                "--key",
                &format!("@op{i}.key"),
            ]);
        }
    }
}

fn signers(set: &[usize]) -> Vec<String> {
    set.iter()
        .flat_map(|i| {
            [
                "--signer".to_owned(),
                format!("operator-{i}=@op{i}.key.pub"),
            ]
        })
        .collect()
}

fn args<'a>(fixed: &[&'a str], more: &'a [String]) -> Vec<&'a str> {
    fixed
        .iter()
        .copied()
        .chain(more.iter().map(String::as_str))
        .collect()
}

/// `--signer NAME=@op1.key.pub`: the `@` sits inside the value, so the
/// helper's substitution does not see it; spell the path out instead.
fn resolve(ops: &Operators, list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .map(|a| match a.split_once("=@") {
            Some((name, file)) => format!("{name}={}", ops.path(file)),
            None => a,
        })
        .collect()
}

#[test]
fn operators_build_sign_and_verify_versions_and_mistakes_are_named() {
    let ops = Operators::new(4);
    let three = resolve(&ops, signers(&[1, 2, 3]));
    let out = ops.ok(&args(
        &[
            "directory",
            "new",
            "--federation",
            "test.casebridge",
            "--threshold",
            "2",
            "--out",
            "@v1.json",
        ],
        &three,
    ));
    assert!(out.contains("wrote version 1 of test.casebridge"), "{out}");
    // Unsigned, a first directory is not trusted; two of three sign it.
    let err = ops.fails(&["directory", "verify", "@v1.json"], 1);
    assert!(
        err.contains("0 valid signature(s) of the new signer set; 2 needed"),
        "{err}"
    );
    ops.sign("v1.json", &[1, 2]);
    let out = ops.ok(&["directory", "verify", "@v1.json"]);
    assert!(out.contains("own signers: 2 of 2 needed"), "{out}");
    assert!(
        out.contains("[x] operator-1") && out.contains("[ ] operator-3"),
        "{out}"
    );

    let member = |agency: &str, endpoint: &str, out: &str| {
        vec![
            "directory".to_owned(),
            "add".into(),
            "@v1.json".into(),
            "--agency".into(),
            agency.into(),
            "--name".into(),
            format!("The {agency}"),
            "--kind".into(),
            "ngo".into(),
            "--group".into(),
            "ngo".into(),
            "--endpoint".into(),
            endpoint.into(),
            "--out".into(),
            out.into(),
        ]
    };
    let v2 = member("ngo", "ngo.example.org:7001", "@v2.json");
    ops.ok(&v2.iter().map(String::as_str).collect::<Vec<_>>());
    // One signature is short of the threshold; a stranger's key counts
    // for nothing; the second operator's completes it.
    ops.sign("v2.json", &[1, 4]);
    let err = ops.fails(
        &["directory", "verify", "@v2.json", "--trusted", "@v1.json"],
        1,
    );
    assert!(
        err.contains("1 valid signature(s) of the trusted signer set; 2 needed"),
        "{err}"
    );
    ops.sign("v2.json", &[3]);
    let out = ops.ok(&["directory", "verify", "@v2.json", "--trusted", "@v1.json"]);
    assert!(out.contains("a node would adopt it"), "{out}");
    // A rollback to version 1, though validly signed, is refused.
    let err = ops.fails(
        &["directory", "verify", "@v1.json", "--trusted", "@v2.json"],
        1,
    );
    assert!(err.contains("version 1 is not above version 2"), "{err}");

    // Mistakes: each named, nothing written.
    let v2_text = std::fs::read_to_string(ops.path("v2.json")).unwrap();
    let dup = member("ngo", "ngo2.example.org:7001", "@bad.json");
    let dup = dup
        .iter()
        .map(|s| s.replace("@v1.json", "@v2.json"))
        .collect::<Vec<_>>();
    let err = ops.fails(&dup.iter().map(String::as_str).collect::<Vec<_>>(), 65);
    assert!(err.contains("--agency: ngo is already a member"), "{err}");
    let overlap = member("labour", "ngo.example.org:7001", "@bad.json");
    let overlap = overlap
        .iter()
        .map(|s| s.replace("@v1.json", "@v2.json"))
        .collect::<Vec<_>>();
    let err = ops.fails(&overlap.iter().map(String::as_str).collect::<Vec<_>>(), 65);
    assert!(
        err.contains("members[1].endpoints[0]: ngo.example.org:7001 is also labour's endpoint"),
        "{err}"
    );
    let err = ops.fails(
        &[
            "directory",
            "remove",
            "@v2.json",
            "--agency",
            "police",
            "--out",
            "@bad.json",
        ],
        65,
    );
    assert!(
        err.contains("--agency: `police` is not a member of version 2"),
        "{err}"
    );
    assert!(
        !Path::new(&ops.path("bad.json")).exists(),
        "nothing written"
    );
    assert_eq!(
        std::fs::read_to_string(ops.path("v2.json")).unwrap(),
        v2_text
    );
    std::fs::write(ops.path("broken.json"), "{\n  \"payloadType\": 3\n}\n").unwrap();
    let err = ops.fails(&["directory", "show", "@broken.json"], 65);
    assert!(
        err.contains(&format!("{}:2:", ops.path("broken.json"))),
        "{err}"
    );

    // Rotation: operators 2, 3, 4 from version 3 on. The new keys alone,
    // or the old threshold without the new, are refused; both pass.
    let new_set = resolve(&ops, signers(&[2, 3, 4]));
    ops.ok(&args(
        &[
            "directory",
            "set-signers",
            "@v2.json",
            "--threshold",
            "2",
            "--out",
            "@v3.json",
        ],
        &new_set,
    ));
    ops.sign("v3.json", &[4, 3]);
    let err = ops.fails(
        &["directory", "verify", "@v3.json", "--trusted", "@v2.json"],
        1,
    );
    assert!(err.contains("of the trusted signer set"), "{err}");
    ops.sign("v3.json", &[1]);
    let out = ops.ok(&["directory", "verify", "@v3.json", "--trusted", "@v2.json"]);
    assert!(
        out.contains("trusted signers: 2 of 2 needed")
            && out.contains("new signers: 2 of 2 needed"),
        "{out}"
    );
    let shown = ops.ok(&["directory", "show", "@v3.json"]);
    assert!(
        shown.contains("version 3")
            && shown
                .contains("member ngo (The ngo), ngo: groups ngo; endpoints ngo.example.org:7001"),
        "{shown}"
    );
}
