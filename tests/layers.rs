//! Tidy test: the top-level modules of `src/` form layers, and no module
//! uses one above its own layer or takes part in an import cycle (outside
//! test code); inside modules, no two files depend on each other either
//! (`no_import_cycle_between_files`). It reads the source text, as
//! rust-analyzer's tidy tests do, so a new upward `use` fails CI like any
//! bug. ARCHITECTURE.md draws the same layers.

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
            "release",
            "ed25519",
            "vault",
        ],
    ),
    (
        "rules",
        &[
            "handling",
            "config",
            "pseudo",
            "matching",
            "policy",
            "validate",
            "stats",
            "directory",
            "intake",
        ],
    ),
    (
        "persistence and the audit chain",
        &["identity", "audit", "store", "server"],
    ),
    (
        "domain operations",
        &[
            "analytics",
            "sharing",
            "disclosure",
            "exchange",
            "federation",
            "alert",
            "lookup",
            "review",
            "network",
            "tokens",
            "reports",
        ],
    ),
    ("the node's core", &["core"]),
    (
        "channels and tools",
        &[
            "api",
            "console",
            "client",
            "certs",
            "tabular",
            "keyservice",
            "intake_web",
        ],
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

// ---------------------------------------------------------------------
// Files: no import cycle between the files of `src/` either.

/// One token of stripped source: an identifier, `::`, or any other
/// character (whitespace dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

fn tokens(code: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut ident = c.to_string();
            while let Some(&n) = chars.peek().filter(|n| n.is_alphanumeric() || **n == '_') {
                ident.push(n);
                chars.next();
            }
            out.push(Tok::Ident(ident));
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.push(Tok::PathSep);
        } else if !c.is_whitespace() {
            out.push(Tok::Punct(c));
        }
    }
    out
}

fn is_ident(t: Option<&Tok>, name: &str) -> bool {
    matches!(t, Some(Tok::Ident(s)) if s == name)
}

/// One leaf of a `use` tree: the path as written (a leading `::` kept as
/// an empty segment), the name it binds (`None` for a glob or `as _`).
#[derive(Clone, Debug)]
struct UseLeaf {
    path: Vec<String>,
    binds: Option<String>,
    public: bool,
}

/// Parses the use tree starting at `toks[i]` under `prefix`; returns the
/// index after it.
fn use_tree(
    toks: &[Tok],
    mut i: usize,
    prefix: Vec<String>,
    public: bool,
    out: &mut Vec<UseLeaf>,
) -> usize {
    let mut path = prefix;
    if toks.get(i) == Some(&Tok::PathSep) {
        path.push(String::new());
        i += 1;
    }
    loop {
        match toks.get(i) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                i += 1;
                if toks.get(i) == Some(&Tok::PathSep) {
                    i += 1;
                    continue;
                }
                break;
            }
            Some(Tok::Punct('*')) => {
                out.push(UseLeaf {
                    path,
                    binds: None,
                    public,
                });
                return i + 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                while i < toks.len() && toks[i] != Tok::Punct('}') {
                    i = use_tree(toks, i, path.clone(), public, out);
                    if toks.get(i) == Some(&Tok::Punct(',')) {
                        i += 1;
                    }
                }
                return i + 1;
            }
            _ => return i,
        }
    }
    if path.last().is_some_and(|s| s == "self") {
        path.pop();
    }
    let mut binds = path.last().cloned();
    if is_ident(toks.get(i), "as") {
        binds = match toks.get(i + 1) {
            Some(Tok::Ident(s)) => Some(s.clone()),
            _ => None,
        };
        i += 2;
    }
    out.push(UseLeaf {
        path,
        binds,
        public,
    });
    i
}

/// A file's `use` declarations (leaves) and the rest of its tokens (its
/// code with every `use` and `mod x;` declaration taken out).
fn split_uses(toks: &[Tok]) -> (Vec<UseLeaf>, Vec<Tok>) {
    let mut leaves = Vec::new();
    let mut body: Vec<Tok> = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        // `mod x;` declares a file: no use of it (its visibility, if any,
        // stays in the body, where it names nothing).
        if is_ident(toks.get(i), "mod") && toks.get(i + 2) == Some(&Tok::Punct(';')) {
            i += 3;
            continue;
        }
        let starts_use = is_ident(toks.get(i), "use")
            && i.checked_sub(1).and_then(|p| toks.get(p)) != Some(&Tok::PathSep);
        if !starts_use {
            body.push(toks[i].clone());
            i += 1;
            continue;
        }
        // `pub`, `pub(crate)`, `pub(super)`, `pub(in path)` before `use`.
        let mut public = false;
        if is_ident(body.last(), "pub") {
            body.pop();
            public = true;
        } else if body.last() == Some(&Tok::Punct(')'))
            && let Some(open) = body.iter().rposition(|t| *t == Tok::Punct('('))
            && is_ident(open.checked_sub(1).and_then(|p| body.get(p)), "pub")
        {
            body.truncate(open - 1);
            public = true;
        }
        i = use_tree(toks, i + 1, Vec::new(), public, &mut leaves);
        while i < toks.len() && toks[i] != Tok::Punct(';') {
            i += 1;
        }
        i += 1;
    }
    (leaves, body)
}

/// Inside a module written inline (`mod x { … }`, outside test code),
/// `super::` names the file's own module: rewritten as `self::`, which
/// resolves to the same file.
fn inline_modules_flattened(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("mod ") {
        let boundary = at == 0 || !rest[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let after = &rest[at + 4..];
        let name_len = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let opens = after[name_len..].trim_start().starts_with('{');
        if !(boundary && name_len > 0 && opens) {
            out.push_str(&rest[..at + 4]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let len = item_len(item);
        out.push_str(&item[..len].replace("super::", "self::"));
        rest = &item[len..];
    }
    out.push_str(rest);
    out
}

/// A file of `src/` as the file check reads it.
struct SrcFile {
    /// Its path under `src/`.
    rel: String,
    /// The module it holds (`store::engine` for `store/engine/mod.rs`).
    module: Vec<String>,
    leaves: Vec<UseLeaf>,
    body: Vec<Tok>,
}

/// The module a file under `src/` holds: `lib.rs` the crate root,
/// `a/mod.rs` and `a.rs` the module `a`.
fn module_of(rel: &str) -> Vec<String> {
    let rel = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Reads the files (`src/`-relative path, text) that hold modules of the
/// library outside test code: the crate root and every file whose `mod`
/// declaration survives [`strip`] (so `#[cfg(test)] mod tests;` and the
/// like are test code as a whole, and `main.rs` is no module of it).
fn src_files(texts: &[(String, String)]) -> Vec<SrcFile> {
    let stripped: BTreeMap<Vec<String>, (String, String)> = texts
        .iter()
        .filter(|(rel, _)| rel != "main.rs")
        .map(|(rel, text)| (module_of(rel), (rel.clone(), strip(text))))
        .collect();
    let declared = |module: &Vec<String>| -> bool {
        let Some((name, parent)) = module.split_last() else {
            return true;
        };
        stripped.get(parent).is_some_and(|(_, code)| {
            let toks = tokens(code);
            toks.windows(3).any(|w| {
                is_ident(Some(&w[0]), "mod")
                    && is_ident(Some(&w[1]), name)
                    && w[2] == Tok::Punct(';')
            })
        })
    };
    let mut files = Vec::new();
    for (module, (rel, code)) in &stripped {
        // A module counts when it and every module above it are declared.
        if !(0..=module.len()).all(|n| declared(&module[..n].to_vec())) {
            continue;
        }
        let (leaves, body) = split_uses(&tokens(&inline_modules_flattened(code)));
        files.push(SrcFile {
            rel: rel.clone(),
            module: module.clone(),
            leaves,
            body,
        });
    }
    files
}

/// What a path names in `src/`: the file that holds its item (or the
/// module it names), and the item's name (`None`: the module itself;
/// `*`: a glob).
#[derive(Debug)]
struct Named {
    file: usize,
    item: Option<String>,
}

struct Resolver<'a> {
    files: &'a [SrcFile],
    by_module: BTreeMap<&'a [String], usize>,
}

impl<'a> Resolver<'a> {
    fn new(files: &'a [SrcFile]) -> Self {
        let by_module = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.module.as_slice(), i))
            .collect();
        Self { files, by_module }
    }

    /// The module a file's path starts from, with the segments it took:
    /// `crate`, `self`, `super` (repeated), a child module of the file's
    /// module, or a module the file's own `use` brought in by name.
    /// `None`: another crate (or a name that is no module).
    fn start(&self, from: usize, path: &[String], depth: usize) -> Option<(Vec<String>, usize)> {
        let module = &self.files[from].module;
        let first = path.first()?;
        let (mut at, mut used) = match first.as_str() {
            "crate" => (Vec::new(), 1),
            "self" => (module.clone(), 1),
            "super" => (module[..module.len().checked_sub(1)?].to_vec(), 1),
            _ => {
                let mut child = module.clone();
                child.push(first.clone());
                if self.by_module.contains_key(child.as_slice()) {
                    (child, 1)
                } else {
                    let leaf = self.files[from]
                        .leaves
                        .iter()
                        .find(|l| l.binds.as_deref() == Some(first) && l.path.len() > 1)?;
                    if depth > 8 {
                        return None;
                    }
                    match self.resolve(from, &leaf.path, depth + 1)? {
                        Named { file, item: None } => (self.files[file].module.clone(), 1),
                        _ => return None,
                    }
                }
            }
        };
        while path.get(used).is_some_and(|s| s == "super") {
            at.pop()?;
            used += 1;
        }
        Some((at, used))
    }

    /// Resolves `path`, written in file `from`, to the file that defines
    /// what it names. A name a file binds by `use` is followed to where
    /// that `use` leads (so `crate::store::LocalWrite`, re-exported by
    /// `store/mod.rs`, names `store/alerts.rs`).
    fn resolve(&self, from: usize, path: &[String], depth: usize) -> Option<Named> {
        let (mut at, mut used) = self.start(from, path, depth)?;
        while let Some(seg) = path.get(used) {
            at.push(seg.clone());
            if self.by_module.contains_key(at.as_slice()) {
                used += 1;
            } else {
                at.pop();
                break;
            }
        }
        let file = *self.by_module.get(at.as_slice())?;
        let Some(item) = path.get(used) else {
            return Some(Named { file, item: None });
        };
        if depth < 8
            && let Some(leaf) = self.files[file]
                .leaves
                .iter()
                .find(|l| l.binds.as_deref() == Some(item.as_str()))
        {
            // The item is only brought in here: where does it come from?
            // (Another crate's: then this path names nothing of `src/`.)
            let mut through = leaf.path.clone();
            through.extend(path[used + 1..].iter().cloned());
            return self.resolve(file, &through, depth + 1);
        }
        Some(Named {
            file,
            item: Some(item.clone()),
        })
    }

    /// Whether file `file` holds a module below file `of`'s module.
    fn below(&self, file: usize, of: usize) -> bool {
        let (m, parent) = (&self.files[file].module, &self.files[of].module);
        m.len() > parent.len() && m.starts_with(parent)
    }
}

/// Whether `name` is used in `body` as a name of its own (not as the
/// tail of a path, a field or a method).
fn names_bare(body: &[Tok], name: &str) -> bool {
    body.iter().enumerate().any(|(i, t)| {
        is_ident(Some(t), name)
            && !matches!(
                i.checked_sub(1).and_then(|p| body.get(p)),
                Some(Tok::PathSep | Tok::Punct('.'))
            )
    })
}

/// file → (file it depends on → the names it takes from it).
type FileGraph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The dependencies between the files of `src/`, outside test code.
///
/// A file depends on another when it names an item the other defines:
/// through a `use`, or through a path in its code (`crate::a::b::Item`,
/// `super::x::f`, `self::x::T`, or `m::T` where `m` is a child module or a
/// module the file brought in with `use`). A path resolves to the file of
/// the deepest module it names (`a/b.rs` or `a/b/mod.rs`; an item defined
/// in `a/mod.rs` is that file's), and a name that file only brings in by
/// `use` is followed to where it is defined. `mod x;` is no dependency,
/// nor is a `use` that only names a module (what the file then takes
/// from it is).
///
/// Re-exports: a `pub use` (any `pub(…)` too) of an item of a module
/// below the file's own is the facade handing its children's names on,
/// not a use by the facade's code, so it is no dependency of the facade —
/// unless the facade's own code also names that item (it then really
/// uses the child). Those who name the item through the facade depend on
/// the child that defines it, not on the facade. So a `mod.rs` that only
/// re-exports its children makes no cycle with them, and one whose code
/// uses a child that uses it back does.
fn file_graph(texts: &[(String, String)]) -> FileGraph {
    let files = src_files(texts);
    let resolver = Resolver::new(&files);
    let mut graph = FileGraph::new();
    for (from, file) in files.iter().enumerate() {
        let mut add = |named: Named| {
            let to = &files[named.file].rel;
            if *to != file.rel {
                graph
                    .entry(file.rel.clone())
                    .or_default()
                    .entry(to.clone())
                    .or_default()
                    .insert(named.item.unwrap_or_default());
            }
        };
        for leaf in &file.leaves {
            let Some(mut named) = resolver.resolve(from, &leaf.path, 0) else {
                continue;
            };
            if leaf.binds.is_none() && named.item.is_none() {
                named.item = Some("*".to_owned());
            }
            if named.item.is_none() {
                continue; // a module brought in by name: see its uses below
            }
            let hands_on = leaf.public && resolver.below(named.file, from);
            if hands_on
                && !leaf
                    .binds
                    .as_ref()
                    .is_some_and(|b| names_bare(&file.body, b))
            {
                continue;
            }
            add(named);
        }
        let body = &file.body;
        for (i, t) in body.iter().enumerate() {
            let Tok::Ident(first) = t else { continue };
            let before = i.checked_sub(1).and_then(|p| body.get(p));
            if matches!(before, Some(Tok::PathSep | Tok::Punct('\'')))
                || body.get(i + 1) != Some(&Tok::PathSep)
            {
                continue;
            }
            let mut path = vec![first.clone()];
            let mut j = i + 1;
            while body.get(j) == Some(&Tok::PathSep)
                && let Some(Tok::Ident(seg)) = body.get(j + 1)
            {
                path.push(seg.clone());
                j += 2;
            }
            if let Some(named) = resolver.resolve(from, &path, 0)
                && named.item.is_some()
            {
                add(named);
            }
        }
    }
    graph
}

fn src_texts() -> Vec<(String, String)> {
    let src = src_dir();
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).expect("under src/");
            (
                rel.to_string_lossy().replace('\\', "/"),
                std::fs::read_to_string(p).expect("source is readable"),
            )
        })
        .collect()
}

/// The strongly connected components of more than one file (Tarjan).
fn file_cycles(graph: &FileGraph) -> Vec<BTreeSet<String>> {
    struct Walk<'g> {
        graph: &'g FileGraph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<BTreeSet<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, node: &'g str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flat_map(|m| m.keys()) {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = BTreeSet::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.insert(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}

/// A cycle as a report: each of its files' dependencies inside it, with
/// the names taken.
fn describe(cycle: &BTreeSet<String>, graph: &FileGraph) -> String {
    let mut lines = vec![format!(
        "cycle of {}:",
        cycle
            .iter()
            .map(|f| format!("src/{f}"))
            .collect::<Vec<_>>()
            .join(", ")
    )];
    for from in cycle {
        for (to, names) in graph.get(from).into_iter().flatten() {
            if cycle.contains(to) {
                let names: Vec<_> = names.iter().map(String::as_str).collect();
                lines.push(format!("  src/{from} -> src/{to}: {}", names.join(", ")));
            }
        }
    }
    lines.join("\n")
}

/// No two files of `src/` depend on each other, directly or around a
/// loop (outside test code); see [`file_graph`] for what a dependency is.
/// The module check above cannot see these: they lie inside a module.
#[test]
fn no_import_cycle_between_files() {
    let graph = file_graph(&src_texts());
    assert!(
        graph.len() > 100,
        "the reader found too few files: {}",
        graph.len()
    );
    let cycles: Vec<String> = file_cycles(&graph)
        .iter()
        .map(|c| describe(c, &graph))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between files (move what both need into the lower file; \
         see `file_graph` in tests/layers.rs for what counts):\n{}",
        cycles.join("\n")
    );
}

/// The file reader on a small crate: what makes a dependency, what does
/// not, and how re-exports count.
#[test]
fn the_file_reader_sees_dependencies_as_described() {
    let files = [
        ("lib.rs", "pub mod a;\npub mod b;\n#[cfg(test)]\nmod t;"),
        (
            "a/mod.rs",
            "mod one;\nmod two;\npub use one::{One, Shown};\npub use two::Two;\n\
             pub struct Base;\nfn f(_: Shown) {}",
        ),
        (
            "a/one.rs",
            "use super::Base;\npub struct One;\npub struct Shown;",
        ),
        (
            "a/two.rs",
            "use super::One;\npub struct Two;\nfn g() { let _ = \"crate::b::X\"; }\n\
             #[cfg(test)]\nmod tests { use crate::b::Y; }",
        ),
        (
            "b.rs",
            "mod c;\nuse crate::a;\npub struct X;\nfn h() -> a::Two { self::c::k() }",
        ),
        (
            "b/c.rs",
            "pub fn k() -> crate::a::Two { crate::a::Two }\nmod inner { fn z() -> super::Q {} }\npub struct Q;",
        ),
        ("t.rs", "use crate::a::Base;"),
    ];
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
        .collect();
    let graph = file_graph(&texts);
    let edges: Vec<String> = graph
        .iter()
        .flat_map(|(from, to)| {
            to.iter().map(move |(to, names)| {
                let names: Vec<_> = names.iter().map(String::as_str).collect();
                format!("{from} -> {to}: {}", names.join(","))
            })
        })
        .collect();
    assert_eq!(
        edges,
        [
            // `Shown` is handed on and used by the facade's own code;
            // `One` and `Two` are only handed on.
            "a/mod.rs -> a/one.rs: Shown",
            "a/one.rs -> a/mod.rs: Base",
            // `super::One` names the child that defines it, not the facade.
            "a/two.rs -> a/one.rs: One",
            // `use crate::a;` alone is no dependency; `a::Two` is.
            "b.rs -> a/two.rs: Two",
            "b.rs -> b/c.rs: k",
            "b/c.rs -> a/two.rs: Two",
        ]
    );
    assert_eq!(
        file_cycles(&graph),
        [BTreeSet::from([
            "a/mod.rs".to_owned(),
            "a/one.rs".to_owned()
        ])]
    );
}
