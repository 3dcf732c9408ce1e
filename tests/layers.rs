//! Tidy test: the top-level modules of `src/` form layers, and no module
//! uses one above its own layer or takes part in an import cycle (outside
//! test code). It reads the source text, as rust-analyzer's tidy tests do,
//! so a new upward `use` fails CI like any bug. ARCHITECTURE.md draws the
//! same layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom first. A module may use modules of its own layer and below; the
/// cycle check below keeps the uses inside one layer one-way.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "proto",
            "proto_strategies",
            "ids",
            "time",
            "violation",
            "paging",
            "secrets",
            "metrics",
            "ratelimit",
            "text",
        ],
    ),
    (
        "rules",
        &[
            "handling", "config", "pseudo", "matching", "policy", "validate",
        ],
    ),
    (
        "persistence and the audit chain",
        &["identity", "audit", "store", "server"],
    ),
    (
        "domain operations",
        &[
            "sharing",
            "disclosure",
            "exchange",
            "alert",
            "lookup",
            "review",
            "tokens",
        ],
    ),
    ("the node's core", &["core"]),
    (
        "channels and tools",
        &["api", "console", "client", "certs", "tabular", "keyservice"],
    ),
    ("wiring", &["node"]),
    ("command line", &["cli"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// Removes comments, string and char literals (so a `crate::x` inside them
/// is not a use), then every item marked `#[cfg(test)]`.
fn strip(src: &str) -> String {
    let code = without_literals(src);
    let mut out = String::with_capacity(code.len());
    let mut rest = code.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at + "#[cfg(test)]".len()..];
        rest = &item[item_len(item)..];
    }
    out.push_str(rest);
    out
}

fn without_literals(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].bytes().take_while(|&c| c == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            i += body
                + rest[body..]
                    .find(&close)
                    .map_or(rest.len() - body, |e| e + close.len());
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && is_char_literal(&src[i..]) {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `'x'` or `'\n'` rather than a lifetime such as `'a`.
fn is_char_literal(s: &str) -> bool {
    let mut chars = s.chars().skip(1);
    match chars.next() {
        Some('\\') => true,
        Some(_) => chars.next() == Some('\''),
        None => false,
    }
}

/// The length of the item that starts `s` (after an attribute, literals
/// already removed): up to its `;` if that comes before any `{`, else to
/// the brace matching the first.
fn item_len(s: &str) -> usize {
    let mut depth = 0usize;
    for (at, c) in s.char_indices() {
        match c {
            ';' if depth == 0 => return at + 1,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return at + 1;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// The top-level modules named by `crate::` paths in `code`, including the
/// heads of a grouped `use crate::{a, b::c}`.
fn uses(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let after = &code[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0;
            let mut head = true;
            let mut tok = String::new();
            for c in group.chars() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    if head {
                        tok.push(c);
                    }
                    continue;
                }
                if !tok.is_empty() {
                    found.insert(std::mem::take(&mut tok));
                    head = false;
                }
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => head = true,
                    _ => {}
                }
            }
        } else {
            let name = ident(after);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found.remove("self");
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// module → (used module → the files that use it), outside test code.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(src).expect("under src/");
        let rel_text = rel.to_string_lossy().replace('\\', "/");
        // Files that are test modules of their parent (`mod tests;` under
        // `#[cfg(test)]`) are test code as a whole.
        if rel.file_stem().is_some_and(|s| s == "tests") {
            continue;
        }
        let first = rel.components().next().expect("a path");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let code = strip(&std::fs::read_to_string(&path).expect("source is readable"));
        let entry = graph.entry(module.clone()).or_default();
        for used in uses(&code) {
            if used != module {
                entry.entry(used).or_default().insert(rel_text.clone());
            }
        }
    }
    graph
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_has_a_layer() {
    let graph = module_graph(&src_dir());
    let missing: Vec<_> = graph.keys().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "modules without a layer in tests/layers.rs (and ARCHITECTURE.md): {missing:?}"
    );
}

/// The web console is a channel over the node's own services: it never
/// reads or writes the store itself, neither by path nor through the
/// core's handle (ARCHITECTURE.md, invariants).
#[test]
fn the_console_never_reaches_the_store() {
    let graph = module_graph(&src_dir());
    let uses = graph.get("console").expect("the console module");
    assert!(
        !uses.contains_key("store"),
        "console uses crate::store in {:?}",
        uses.get("store")
    );
    let mut files = Vec::new();
    rust_files(&src_dir().join("console"), &mut files);
    assert!(!files.is_empty());
    for path in files {
        let code = strip(&std::fs::read_to_string(&path).unwrap());
        assert!(
            !code.contains(".store"),
            "{} reaches the store through the core",
            path.display()
        );
    }
}

#[test]
fn no_module_uses_one_above_its_layer() {
    let graph = module_graph(&src_dir());
    let mut problems = Vec::new();
    for (module, used) in &graph {
        let Some(own) = layer_of(module) else {
            continue;
        };
        for (target, files) in used {
            let Some(theirs) = layer_of(target) else {
                continue;
            };
            if theirs > own {
                problems.push(format!(
                    "`{module}` ({}) uses `{target}` ({}) in {}",
                    LAYERS[own].0,
                    LAYERS[theirs].0,
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "upward uses:\n{}", problems.join("\n"));
}

#[test]
fn no_import_cycle_between_modules() {
    let graph = module_graph(&src_dir());
    // Depth-first search; a back edge is a cycle, reported with its path.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(|m| m.keys()) {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = path.iter().position(|p| p == next).expect("on the path");
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    cycles.push(cycle.join(" -> "));
                }
                Some(_) => {}
                None => visit(next, graph, state, path, cycles),
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for module in graph.keys() {
        if !state.contains_key(module.as_str()) {
            visit(module, &graph, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// The reader itself: uses in comments, strings and test items do not
/// count, grouped uses do.
#[test]
fn the_reader_sees_uses_as_the_compiler_does() {
    let code = strip(
        r#"
use crate::{alpha::A, beta, gamma::{x, y::Z}};
// use crate::comment;
/* crate::block */
let s = "crate::string";
let c = '{';
fn f<'a>(x: &'a str) -> &'a str { crate::delta::g(x) }
#[cfg(test)]
mod tests { use crate::testonly; fn h() { let _ = '}'; } }
#[cfg(test)]
use crate::testuse;
fn after() { crate::epsilon::k(); }
"#,
    );
    let found: Vec<String> = uses(&code).into_iter().collect();
    assert_eq!(found, ["alpha", "beta", "delta", "epsilon", "gamma"]);
}
