//! The map of the code stays complete: every top-level module of `src/`
//! is listed in `lib.rs`'s Layout section and has a row in
//! ARCHITECTURE.md's code map, so a new module cannot land unexplained.

use std::path::Path;

/// The top-level modules `lib.rs` declares (`pub mod x;`).
fn modules() -> Vec<String> {
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect()
}

#[test]
fn every_module_is_in_the_layout_and_the_code_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let layout: String = lib
        .lines()
        .skip_while(|l| !l.contains("# Layout"))
        .take_while(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let map: Vec<&str> = map
        .lines()
        .skip_while(|l| !l.starts_with("## Code map"))
        .take_while(|l| !l.starts_with("## Invariants"))
        .filter(|l| l.starts_with("| "))
        .collect();
    let modules = modules();
    assert!(modules.len() > 20, "{modules:?}");
    let mut missing = Vec::new();
    for m in &modules {
        if !layout.contains(&format!("[`{m}`]")) {
            missing.push(format!("{m}: not in lib.rs's Layout"));
        }
        let in_map = map.iter().any(|row| {
            let first = row.split('|').nth(1).unwrap_or_default();
            first.contains(&format!("`{m}`")) || first.contains(&format!("`src/{m}.rs`"))
        });
        if !in_map {
            missing.push(format!("{m}: no row in ARCHITECTURE.md's code map"));
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}
