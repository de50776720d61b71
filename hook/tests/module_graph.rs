//! The top-level modules of the `warden` library (hook/src/lib.rs) must not import each other
//! in a cycle: each file says what it builds on, and the layers stay layers (e.g. `control` and
//! `ops` know no daemon type; the daemon implements their traits). Read from the sources: every
//! `crate::x` path (also inside `use crate::{x, y::z}` groups, and `super::` paths that climb to
//! the crate root) in the files of module `m` is an edge m -> x.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Module names declared in lib.rs (`pub mod x;` or `mod x;`).
fn top_modules(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    strip_comments(&lib)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?.trim();
            Some(name.to_string())
        })
        .collect()
}

/// Every .rs file of module `m` with its depth below the crate root (`m.rs`, `m/mod.rs`: 1;
/// `m/x.rs`: 2; ...).
fn files_of(src: &Path, m: &str) -> Vec<(PathBuf, usize)> {
    let mut out = Vec::new();
    let single = src.join(format!("{m}.rs"));
    if single.is_file() {
        out.push((single, 1));
    }
    let mut stack = vec![(src.join(m), 1usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push((p, depth + 1));
            } else if p.extension().is_some_and(|x| x == "rs") {
                let d = if p.file_name().is_some_and(|n| n == "mod.rs") { depth } else { depth + 1 };
                out.push((p, d));
            }
        }
    }
    out
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else {
            // Whole UTF-8 sequences: copy up to the next ASCII byte.
            let start = i;
            i += 1;
            while i < b.len() && b[i] >= 0x80 {
                i += 1;
            }
            out.push_str(&text[start..i]);
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The first path segments of what follows a crate-root prefix: `x` of `x::y`, or each
/// top-level name of a `{x, y::{..}, z as w}` group.
fn names_after(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident_at(rest).to_string()];
    };
    let (mut depth, mut names, mut at_item_start) = (0usize, Vec::new(), true);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if c.is_whitespace() => {}
            _ if at_item_start && depth == 0 => {
                names.push(ident_at(&group[i..]).to_string());
                at_item_start = false;
            }
            _ => {}
        }
    }
    names
}

/// The crate-root references of one file at `depth` below the root.
fn root_refs(text: &str, depth: usize) -> Vec<String> {
    let text = strip_comments(text);
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let prev = text[..i].chars().next_back();
        if prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        out.extend(names_after(&text[i + "crate::".len()..]));
    }
    for (i, _) in text.match_indices("super::") {
        let prev = text[..i].chars().next_back();
        // Count each run of `super::` once, from its first one.
        if prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut rest = &text[i..];
        let mut n = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            n += 1;
        }
        if n >= depth {
            out.extend(names_after(rest));
        }
    }
    out
}

fn graph(src: &Path) -> Graph {
    let mods = top_modules(src);
    let mut g = Graph::new();
    for m in &mods {
        let deps = g.entry(m.clone()).or_default();
        for (f, depth) in files_of(src, m) {
            let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            for r in root_refs(&text, depth) {
                if r != *m && mods.contains(&r) {
                    deps.insert(r);
                }
            }
        }
    }
    g
}

/// A cycle, as the modules along it (first one repeated at the end), if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    // 0: not visited, 1: on the current path, 2: done.
    fn visit(g: &Graph, m: &str, state: &mut BTreeMap<String, u8>, path: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            match state.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| p == d).unwrap();
                    let mut c = path[start..].to_vec();
                    c.push(d.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(g, d, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(g, m, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn show(g: &Graph) -> String {
    g.iter().map(|(m, d)| format!("  {m} -> {}\n", d.iter().cloned().collect::<Vec<_>>().join(", "))).collect()
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(g.len() >= 10, "lib.rs lists the modules:\n{}", show(&g));
    // The edges this layering is about, so that a parser regression cannot pass vacuously.
    for (from, to) in [("daemon", "control"), ("daemon", "ops"), ("daemon", "nri"), ("oci_hook", "control")] {
        assert!(g[from].contains(to), "{from} -> {to} not found:\n{}", show(&g));
    }
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle between top-level modules: {}\nthe graph:\n{}", c.join(" -> "), show(&g));
    }
}

#[test]
fn the_check_finds_cycles_through_groups_and_super_paths() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |p: &str, t: &str| {
        let p = src.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\nmod c;\n");
    write("a.rs", "use crate::{c, x::y};\n// use crate::b; (a comment is no import)\n");
    write("b/mod.rs", "pub mod inner;\n");
    write("b/inner.rs", "use super::super::c::Thing;\n");
    write("c.rs", "fn f() { let _ = my_crate::a::X; }\n");
    let g = graph(src);
    assert_eq!(show(&g), "  a -> c\n  b -> c\n  c -> \n");
    assert_eq!(find_cycle(&g), None);
    // c -> b -> c: b's nested file climbs to c, c names b inside a group.
    write("c.rs", "use crate::{\n    b::inner::{self, Y},\n};\n");
    let g = graph(src);
    assert_eq!(find_cycle(&g), Some(vec!["c".to_string(), "b".to_string(), "c".to_string()]), "{}", show(&g));
}
