//! The map of the code stays complete and short: every top-level module
//! of `src/` is listed in `lib.rs`'s Layout section and has a row in
//! ARCHITECTURE.md's code map, so a new module cannot land unexplained,
//! and no row of that map grows into a paragraph.

use std::path::Path;

/// The top-level modules `lib.rs` declares (`pub mod x;`).
fn modules() -> Vec<String> {
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect()
}

/// The rows of ARCHITECTURE.md's code map table (its header row too).
fn code_map_rows() -> Vec<String> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ARCHITECTURE.md")).unwrap();
    text.lines()
        .skip_while(|l| !l.starts_with("## Code map"))
        .take_while(|l| !l.starts_with("## Invariants"))
        .filter(|l| l.starts_with("| "))
        .map(str::to_owned)
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
    let map = code_map_rows();
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

/// The most words a row of the code map may have. A row says what a
/// module is for and names its main parts in a line or two (35 words is
/// the aim; this leaves slack, not room for a paragraph).
const MAX_CODE_MAP_ROW_WORDS: usize = 45;

/// The code map stays a map: no row grows into a paragraph. What a module
/// holds in detail belongs in its own documentation (`//!` at the top of
/// `src/<module>.rs` or `src/<module>/mod.rs`), beside the code it
/// describes and checked by `cargo doc`.
#[test]
fn every_code_map_row_is_short() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rows = code_map_rows();
    assert!(rows.len() > 20, "{rows:?}");
    let long: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let words = row.split('|').flat_map(str::split_whitespace).count();
            (words > MAX_CODE_MAP_ROW_WORDS).then(|| {
                let cell = row.split('|').nth(1).unwrap_or_default().trim();
                let module = cell.split('`').nth(1).unwrap_or(cell);
                let home = if root.join(format!("src/{module}/mod.rs")).exists() {
                    format!("src/{module}/mod.rs")
                } else {
                    format!("src/{module}.rs")
                };
                format!(
                    "{cell}: {words} words (at most {MAX_CODE_MAP_ROW_WORDS}); keep the \
                     module's job and its main parts, and move the detail into the `//!` \
                     documentation at the top of {home}"
                )
            })
        })
        .collect();
    assert!(
        long.is_empty(),
        "ARCHITECTURE.md's code map rows that grew into paragraphs:\n{}",
        long.join("\n")
    );
}

/// The functions of `src/` that may be longer than 100 lines: tables of
/// sample data, nothing that does several things.
const LONG_ALLOWED: [&str; 1] = ["src/cli/demo.rs:samples"];

/// No function in `src/` is longer than 100 lines (from its `fn` line to
/// its closing brace at the same indentation, as rustfmt writes them).
#[test]
fn no_function_is_longer_than_a_hundred_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut long = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                long.extend(long_functions(
                    &std::fs::read_to_string(&path).unwrap(),
                    &rel,
                ));
            }
        }
    }
    long.retain(|(at, _)| !LONG_ALLOWED.contains(&at.as_str()));
    assert!(long.is_empty(), "functions over 100 lines: {long:#?}");
}

/// `file:name` and length of each function of `text` over 100 lines.
fn long_functions(text: &str, file: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let head = trimmed
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("async ");
        let Some(rest) = head.strip_prefix("fn ") else {
            continue;
        };
        // A declaration without a body (a trait's) ends in `;` first.
        let body_opens = lines[i..].iter().find_map(|l| {
            l.contains('{')
                .then_some(true)
                .or(l.ends_with(';').then_some(false))
        });
        if body_opens != Some(true) {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{indent}}}");
        if let Some(len) = lines[i + 1..].iter().position(|l| *l == close)
            && len + 2 > 100
        {
            out.push((format!("{file}:{name}"), len + 2));
        }
    }
    out
}

/// The console's section pages (one a route group) use shared components
/// (`common`, `form`, `people`, `release_offer`, `request_form`), never
/// each other: a change to one section cannot break another.
#[test]
fn no_console_section_uses_another() {
    const SECTIONS: [&str; 10] = [
        "admin", "alerts", "audit", "hits", "import", "lookup", "overview", "policy", "releases",
        "requests",
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console/pages");
    let mut found = Vec::new();
    for section in SECTIONS {
        let text = std::fs::read_to_string(dir.join(format!("{section}.rs"))).unwrap();
        for other in SECTIONS.iter().filter(|o| **o != section) {
            let uses = [format!("super::{other}::"), format!("use super::{other};")];
            if uses.iter().any(|u| text.contains(u.as_str())) {
                found.push(format!("{section} uses {other}"));
            }
        }
    }
    assert!(found.is_empty(), "{found:?}");
}
