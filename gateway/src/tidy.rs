//! Tidy tests: the layering of `gateway`'s modules, computed from the sources, so that it stays
//! as ARCHITECTURE.md describes it. A module is a file or folder directly under `gateway/src`;
//! an edge is a `crate::x` path (also in `use crate::{x, y}` groups and through `super::`) in
//! code outside `#[cfg(test)]` modules. Comments and string literals are not code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lines of code (not blank, not only a comment) a file may have before its tests.
const MAX_FILE_LINES: usize = 800;
/// Lines a function may span outside tests.
const MAX_FN_LINES: usize = 150;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every source file of the crate but this one, by path relative to `src/`.
fn sources() -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src()).unwrap().to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap();
            (rel, text)
        })
        .filter(|(rel, _)| rel != "tidy.rs")
        .collect()
}

/// The top-level module a file belongs to (`intake/xta.rs` → `intake`, `ctx.rs` → `ctx`).
fn module_of(rel: &str) -> String {
    match rel.split_once('/') {
        Some((dir, _)) => dir.to_owned(),
        None => rel.trim_end_matches(".rs").to_owned(),
    }
}

/// The code of a file before its first `#[cfg(test)]` item, with comments, string and char
/// literals blanked (so a path in a doc comment or a message is no edge).
fn code(text: &str) -> String {
    let before_tests = match text.find("\n#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let b = before_tests.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'r' && matches!(b.get(i + 1), Some(b'"' | b'#')) && !prev_ident(b, i) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            j += 1;
            while j < b.len() && !b[j..].starts_with(&close) {
                if b[j] == b'\n' {
                    out.push('\n');
                }
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if b.get(i) == Some(&b'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal ('x'); lifetimes ('a) are left alone.
            i += 3;
            out.push_str("' '");
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            let mut j = i + 2;
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            i = j + 1;
            out.push_str("' '");
        } else {
            let ch = before_tests[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn prev_ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segments of the paths a `{…}` group names (`{a::b, c, d::{e}}` → a, c, d).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && (c.is_ascii_alphabetic() || c == '_') && depth == 0 => {
                heads.push(ident_at(&group[i..]).to_owned());
                start = false;
            }
            c if !c.is_whitespace() => start = false,
            _ => {}
        }
    }
    heads
}

/// The span of the `{…}` group starting at `s[0] == '{'`, without the braces.
fn group(s: &str) -> &str {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &s[1..i];
                }
            }
            _ => {}
        }
    }
    &s[1..]
}

/// The top-level modules a file's code names, other than its own.
fn edges(rel: &str, code: &str) -> BTreeSet<String> {
    let own = module_of(rel);
    // What `super::` is from this file: the file's own top-level module, or the crate root
    // (a top-level file, or the `mod.rs` of a top-level folder).
    let depth = rel.matches('/').count();
    let super_is_root = depth == 0 || (depth == 1 && rel.ends_with("/mod.rs"));
    let mut out = BTreeSet::new();
    let mut names = Vec::new();
    for (prefix, root) in [("crate::", true), ("super::", super_is_root)] {
        if !root {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let before = &rest[..i];
            let after = &rest[i + prefix.len()..];
            rest = after;
            if before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            if after.starts_with('{') {
                names.extend(group_heads(group(after)));
            } else {
                names.push(ident_at(after).to_owned());
            }
        }
    }
    for name in names {
        // Exported macros live at the crate root; `failpoint!` is defined in `failpoints.rs`.
        let name = if name == "failpoint" {
            "failpoints".to_owned()
        } else {
            name
        };
        if !name.is_empty() && name != own && name != "self" {
            out.insert(name);
        }
    }
    out
}

/// The module graph: module → the modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let modules: BTreeSet<String> = files.keys().map(|f| module_of(f)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (rel, text) in &files {
        let from = module_of(rel);
        for to in edges(rel, &code(text)) {
            if modules.contains(&to) {
                g.get_mut(&from).unwrap().insert(to);
            }
        }
    }
    g
}

/// A cycle in the graph, if there is one (depth-first search with colours).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in &g[node] {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(g, next, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in g.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(g, node, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_parser_finds_edges_in_every_form() {
    let text = "use crate::{a::b, c as d, e::{f, g}};\nuse super::h;\nfn x() { crate::i::j(); crate::failpoint!(\"k\"); }\n// crate::comment\nconst S: &str = \"crate::string\";\n";
    let found = edges("lib2.rs", &code(text));
    let expect: BTreeSet<String> = ["a", "c", "e", "h", "i", "failpoints"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, expect);
    // From a file inside a folder, super:: is the folder's own module.
    assert!(edges("intake/http.rs", &code("use super::Submitted;")).is_empty());
    // Test modules are not code.
    assert!(edges("x.rs", &code("fn a() {}\n#[cfg(test)]\nmod tests { use crate::y; }")).is_empty());
    let cyclic: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .iter()
        .map(|(f, t)| (f.to_string(), BTreeSet::from([t.to_string()])))
        .collect();
    assert_eq!(find_cycle(&cyclic).map(|c| c.len()), Some(4));
}

#[test]
fn no_import_cycle_among_top_level_modules() {
    let g = graph();
    assert!(g.len() > 20, "the module graph is too small to be the crate's: {g:?}");
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle among gateway's modules: {}", cycle.join(" → "));
    }
}

/// Which modules a layer may not name (ARCHITECTURE.md, "Invariants").
#[test]
fn layers_keep_their_invariants() {
    let g = graph();
    let forbid = |module: &str, forbidden: &[&str], why: &str| {
        let names = &g[module];
        let bad: Vec<&&str> = forbidden.iter().filter(|f| names.contains(**f)).collect();
        assert!(bad.is_empty(), "{module} names {bad:?}: {why}");
    };
    let wiring = ["node", "cli", "demo", "bench", "ops", "network"];
    let listeners = ["intake", "partner", "admin"];
    // The lowest layers: XML, XML security, the store.
    let allowed_below = |module: &str, allowed: &[&str]| {
        let extra: Vec<&String> = g[module].iter().filter(|m| !allowed.contains(&m.as_str())).collect();
        assert!(
            extra.is_empty(),
            "{module} may name only {allowed:?}, but names {extra:?}"
        );
    };
    allowed_below("xml", &["problem"]);
    allowed_below("xmlsec", &["xml", "problem"]);
    allowed_below("store", &["problem", "failpoints"]);
    allowed_below("problem", &[]);
    // Ctx names no listener or worker, so that everything may use it.
    let mut above_ctx: Vec<&str> = wiring.to_vec();
    above_ctx.extend(listeners);
    above_ctx.extend(["pipeline", "wire", "actions"]);
    forbid("ctx", &above_ctx, "Ctx names no listener or worker module");
    for low in [
        "amqp",
        "health",
        "certs",
        "tls",
        "audit",
        "config",
        "envelope",
        "telemetry",
    ] {
        forbid(low, &["ctx"], "what Ctx holds lives below it");
    }
    // The message path knows no client wire format and no listener.
    forbid(
        "pipeline",
        &["intake", "admin", "wire", "node"],
        "pipeline/ knows no wire format",
    );
    forbid(
        "partner",
        &["intake", "pipeline", "admin", "node"],
        "partner/ knows nothing of clients",
    );
    forbid(
        "intake",
        &["partner", "admin", "node"],
        "intake/ knows nothing of partners",
    );
    forbid(
        "admin",
        &["intake", "partner", "pipeline", "node"],
        "admin/ only reads and calls actions",
    );
    // Only partner/ talks to partner nodes: the relay HTTPS client and broker calls are used
    // nowhere else.
    for (rel, text) in sources() {
        let c = code(&text);
        let module = module_of(&rel);
        if ["relay_client", "call_partner("].iter().any(|n| c.contains(n)) {
            assert!(
                ["partner", "ctx", "node", "tls", "amqp", "reload"].contains(&module.as_str()),
                "{rel} talks to partner nodes; only partner/ may"
            );
        }
        let uses_http = ["axum::", "hyper::", "reqwest::"].iter().any(|n| c.contains(n));
        assert!(
            !(uses_http && ["store", "xml", "xmlsec", "envelope"].contains(&module.as_str())),
            "{rel} uses an HTTP crate; store/, xml/, xmlsec/ and envelope/ know no HTTP"
        );
    }
}

/// `anyhow` stops at the command line: the commands (`cli` and what it runs for `demo`, `bench`,
/// the operators' and network tools) may use it; the node and its libraries return typed errors.
#[test]
fn anyhow_only_at_the_command_line() {
    let edge = ["cli", "demo", "bench", "ops", "network", "pki", "xta_client", "main"];
    for (rel, text) in sources() {
        if code(&text).contains("anyhow") {
            assert!(
                edge.contains(&module_of(&rel).as_str()),
                "{rel} uses anyhow; only the command line ({edge:?}) may"
            );
        }
    }
}

/// The number of lines of code (not blank, not only a comment) before the tests.
fn lines_of_code(text: &str) -> usize {
    let before = match text.find("\n#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    before
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count()
}

#[test]
fn no_file_is_too_long() {
    let long: Vec<String> = sources()
        .iter()
        .map(|(rel, text)| (rel, lines_of_code(text)))
        .filter(|(_, n)| *n > MAX_FILE_LINES)
        .map(|(rel, n)| format!("{rel}: {n} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines of code before their tests: {long:?}"
    );
}

/// Functions and their lengths in lines: from a line declaring `fn name` to the line that
/// closes it at the same indentation.
fn functions(text: &str) -> Vec<(String, usize)> {
    let c = code(text);
    let lines: Vec<&str> = c.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let Some(at) = trimmed.find("fn ") else { continue };
        let head = &trimmed[..at];
        let is_decl = head
            .split_whitespace()
            .all(|w| ["pub", "pub(crate)", "pub(super)", "async", "const", "unsafe", "extern"].contains(&w));
        if !is_decl {
            continue;
        }
        let name = ident_at(&trimmed[at + 3..]).to_owned();
        let close = " ".repeat(indent) + "}";
        // A declaration without a body (a trait's required method) ends with `;` before `{`.
        let Some(sig_end) = lines[i..].iter().position(|l| {
            let l = l.trim_end();
            l.ends_with('{') || l.ends_with(';') || l.ends_with('}')
        }) else {
            continue;
        };
        if lines[i + sig_end].trim_end().ends_with(';') {
            continue;
        }
        let Some(end) = lines[i..].iter().position(|l| {
            l.trim_end() == close
                || (l.trim_start().starts_with("fn ")
                    && l.trim_end().ends_with('}')
                    && l.len() - l.trim_start().len() == indent
                    && l.contains('{'))
        }) else {
            continue;
        };
        out.push((name, end + 1));
    }
    out
}

#[test]
fn no_function_is_too_long() {
    let long: Vec<String> = sources()
        .iter()
        .flat_map(|(rel, text)| {
            functions(text)
                .into_iter()
                .filter(|(_, n)| *n > MAX_FN_LINES)
                .map(move |(name, n)| format!("{rel}: {name} ({n} lines)"))
        })
        .collect();
    assert!(long.is_empty(), "functions over {MAX_FN_LINES} lines: {long:?}");
}
