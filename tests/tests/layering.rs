//! The layout rule, checked: within each crate, no two modules import each
//! other (directly or in a longer circle) except a parent and its own
//! children — counted both between files and between the top-level modules
//! of a crate (a directory counts as one). Cargo already refuses cycles
//! between crates.
//!
//! A reference is a `crate::a::b` or `super::x` path in code (comments and
//! `#[cfg(test)]` modules are not counted), resolved to the longest module
//! it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's modules by path (`""` is the crate root), with their code.
type Modules = BTreeMap<String, String>;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its test module.
fn code_of(text: &str) -> String {
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or_default();
    before_tests.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

fn modules_of(src: &Path) -> Modules {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules = Modules::new();
    for f in files {
        let rel = f.strip_prefix(src).expect("under src").with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|p| p == "mod" || p == "lib" || p == "main") {
            parts.pop();
        }
        if parts.first().is_some_and(|p| p == "bin") {
            continue;
        }
        modules.insert(parts.join("::"), code_of(&std::fs::read_to_string(&f).expect("readable file")));
    }
    modules
}

/// The longest module of `modules` that the path `segments` names.
fn resolve(modules: &Modules, segments: &[&str]) -> Option<String> {
    (1..=segments.len()).rev().map(|n| segments[..n].join("::")).find(|m| modules.contains_key(m))
}

/// Identifier-like segments of a path starting at `at` in `code`, through
/// `::` separators and into one level of `{...}` groups.
fn paths_at(code: &str, at: usize) -> Vec<Vec<&str>> {
    let rest = &code[at..];
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
    let head: Vec<&str> = rest[..end].split("::").filter(|s| !s.is_empty()).collect();
    if rest[end..].starts_with('{') {
        let group = &rest[end + 1..rest[end..].find('}').map_or(rest.len(), |i| end + i)];
        return group
            .split(',')
            .map(|item| {
                let mut p = head.clone();
                p.extend(item.trim().split("::").map(|s| s.split_whitespace().next().unwrap_or_default()));
                p
            })
            .collect();
    }
    vec![head]
}

/// Edges between modules of one crate, parent/child references left out.
fn edges(modules: &Modules) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (module, code) in modules {
        let parent: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
        for (at, _) in code.match_indices("crate::") {
            for path in paths_at(code, at + "crate::".len()) {
                if let Some(target) = resolve(modules, &path) {
                    out.insert((module.clone(), target));
                }
            }
        }
        for (at, _) in code.match_indices("super::") {
            let base = &parent[..parent.len().saturating_sub(1)];
            for path in paths_at(code, at + "super::".len()) {
                let full: Vec<&str> = base.iter().copied().chain(path).collect();
                if let Some(target) = resolve(modules, &full) {
                    out.insert((module.clone(), target));
                }
            }
        }
    }
    let related = |a: &str, b: &str| {
        a == b || a.is_empty() || b.is_empty() || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
    };
    out.retain(|(a, b)| !related(a, b));
    out
}

/// Every node on a cycle of `edges`, as one circle each (a found circle's
/// nodes are not searched again).
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    let mut found: Vec<Vec<String>> = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for &start in next.keys() {
        // Depth-first from `start`, looking for a way back to it.
        let mut stack = vec![(start, vec![start])];
        let mut visited = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for &n in next.get(node).into_iter().flatten() {
                if n == start && !seen.contains(start) {
                    seen.extend(path.iter().copied());
                    found.push(path.iter().map(|s| s.to_string()).collect());
                } else if visited.insert(n) {
                    let mut p = path.clone();
                    p.push(n);
                    stack.push((n, p));
                }
            }
        }
    }
    found
}

fn top_level(module: &str) -> String {
    module.split("::").next().unwrap_or_default().to_string()
}

#[test]
fn no_two_modules_import_each_other() {
    let mut problems = Vec::new();
    let root = workspace_root();
    for entry in std::fs::read_dir(&root).expect("workspace root") {
        let src = entry.expect("dir entry").path().join("src");
        if !src.join("lib.rs").exists() && !src.join("main.rs").exists() {
            continue;
        }
        let krate =
            src.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let modules = modules_of(&src);
        let file_edges = edges(&modules);
        for c in cycles(&file_edges) {
            problems.push(format!("{krate}: files import each other: {}", c.join(" -> ")));
        }
        let top: BTreeSet<(String, String)> =
            file_edges.iter().map(|(a, b)| (top_level(a), top_level(b))).filter(|(a, b)| a != b).collect();
        for c in cycles(&top) {
            problems.push(format!("{krate}: top-level modules import each other: {}", c.join(" -> ")));
        }
    }
    assert!(problems.is_empty(), "module cycles:\n{}", problems.join("\n"));
}

#[test]
fn the_check_finds_a_planted_cycle() {
    let mut modules = Modules::new();
    modules.insert("a".into(), "use crate::b::thing;".into());
    modules.insert("b".into(), "fn f() { crate::a::g() }".into());
    modules.insert("c".into(), "use crate::{a, b};".into());
    modules.insert("p".into(), "use crate::p::child::x;".into());
    modules.insert("p::child".into(), "use super::y;".into());
    let e = edges(&modules);
    assert!(e.contains(&("c".into(), "a".into())) && e.contains(&("c".into(), "b".into())), "{e:?}");
    assert!(!e.iter().any(|(a, _)| a.starts_with('p')), "parent and child are allowed: {e:?}");
    assert_eq!(cycles(&e).len(), 1, "{e:?}");
}
