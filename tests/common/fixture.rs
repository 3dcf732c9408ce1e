//! Federations written by earlier code, kept as fixtures: unpacked into a
//! test's directory with their loopback ports moved to free ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Unpacks a federation fixture (`fed/` with `police/` and `ngo/`) into `dir` and moves every loopback port in its
/// configuration files to a free one (the same new port everywhere an old
/// one appears), so the nodes can start on this machine now.
pub fn unpack_fixture(archive: &str, dir: &Path) -> PathBuf {
    let ok = Command::new("tar")
        .args(["-xzf", archive, "-C"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(ok.success(), "tar could not unpack {archive}");
    let fed = dir.join("fed");
    let configs: Vec<PathBuf> = ["police", "ngo", "keyservice"]
        .iter()
        .filter(|a| fed.join(a).is_dir())
        .flat_map(|a| {
            std::fs::read_dir(fed.join(a))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        })
        .collect();
    let mut ports: BTreeMap<String, String> = BTreeMap::new();
    let mut held = Vec::new();
    for path in &configs {
        let text = std::fs::read_to_string(path).unwrap();
        for part in text.split("127.0.0.1:").skip(1) {
            let old: String = part.chars().take_while(char::is_ascii_digit).collect();
            ports.entry(old).or_insert_with(|| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let new = l.local_addr().unwrap().port().to_string();
                held.push(l);
                new
            });
        }
    }
    drop(held);
    for path in &configs {
        let mut text = std::fs::read_to_string(path).unwrap();
        for (old, new) in &ports {
            text = text.replace(&format!("127.0.0.1:{old}\""), &format!("127.0.0.1:{new}\""));
        }
        std::fs::write(path, text).unwrap();
    }
    fed
}
