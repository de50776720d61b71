//! The profile search path, `extends` resolution and merging.
//!
//! A name is looked up as `<name>.json` in each directory of the search path, first match
//! wins. The profile being loaded from a file has its own directory searched first, so a set of
//! profiles kept together resolves the same wherever it is.
//!
//! Merging adds rules: a section is restricted in the result if any profile of the chain has
//! it, and its rules are the union of theirs. `syscalls.default` and `description` are the
//! extending profile's own when it states them (for `default`: when it has a `syscalls`
//! section), else the last base's that does.
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::Hash;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{
    check, compile::check_name, compile::exceeds_limits, Diagnostic, Invalid, Network, Profile, Syscalls, SyscallsSpec,
};

/// Most levels of `extends` below a profile (a extends b extends c: 2). Deeper chains are
/// refused before their next file is read: each level is a file to read and a recursion step,
/// and no sensible set of profiles stacks anywhere near this many.
pub const MAX_EXTENDS_DEPTH: usize = 32;

/// Directories searched for profile names, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath {
    pub dirs: Vec<PathBuf>,
}

impl Default for SearchPath {
    /// `./profiles`, `/etc/warden/profiles`, `/usr/share/warden/profiles`.
    fn default() -> Self {
        Self { dirs: vec!["profiles".into(), "/etc/warden/profiles".into(), "/usr/share/warden/profiles".into()] }
    }
}

impl SearchPath {
    /// The given directories, or the default ones if none.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        if dirs.is_empty() {
            Self::default()
        } else {
            Self { dirs }
        }
    }

    /// This path with `dir` searched first.
    pub fn with_first(&self, dir: &Path) -> Self {
        let mut dirs = vec![dir.to_path_buf()];
        dirs.extend(self.dirs.iter().filter(|d| d.as_path() != dir).cloned());
        Self { dirs }
    }

    /// The file of profile `name`; Err(reason naming the directories searched).
    pub fn find(&self, name: &str) -> Result<PathBuf, String> {
        check_name(name)?;
        for d in &self.dirs {
            let f = d.join(format!("{name}.json"));
            if f.is_file() {
                return Ok(f);
            }
        }
        Err(format!(
            "no profile `{name}` in the search path ({})",
            self.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    }
}

/// A profile with its `extends` resolved.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged profile (`extends` empty), ready for [`super::compile`].
    pub profile: Profile,
    /// The profile as written.
    pub own: Profile,
    pub file: Option<PathBuf>,
    /// The profiles merged in, bases before the profiles extending them (the top one excluded).
    pub chain: Vec<(String, PathBuf)>,
    /// Errors, warnings and notes of every file involved, each naming its file.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    /// The merged profile, or every error.
    pub fn into_profile(self) -> Result<Profile> {
        let errors: Vec<Diagnostic> = self.errors().cloned().collect();
        if errors.is_empty() {
            Ok(self.profile)
        } else {
            Err(Invalid { profile: Some(self.own.name.clone()), errors }.into())
        }
    }
}

/// Loads a profile file and resolves its `extends` (the file's directory searched first).
/// Fails only when the file cannot be read or parsed; other problems are in `diagnostics`.
pub fn load_file(path: &Path, search: &SearchPath) -> Result<Loaded> {
    let own = Profile::parse_file(path)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut loaded = resolve(own, Some(path), &search.with_first(dir));
    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
        if stem != loaded.own.name {
            loaded.diagnostics.push(
                Diagnostic::warning("name", format!("`{}` differs from the file name `{stem}.json`: `extends` and `show` find profiles by file name", loaded.own.name))
                    .in_file(Some(path)),
            );
        }
    }
    Ok(loaded)
}

/// Loads `spec`: a file if it names one (contains `/`, ends in `.json`, or exists), else a
/// profile name looked up in `search`.
pub fn load_spec(spec: &str, search: &SearchPath) -> Result<Loaded> {
    let p = Path::new(spec);
    if spec.contains('/') || spec.ends_with(".json") || p.is_file() {
        return load_file(p, search);
    }
    let file = search.find(spec).map_err(anyhow::Error::msg)?;
    load_file(&file, search)
}

/// Resolves the `extends` of `own` (from `file`, if any) with `search`.
pub fn resolve(own: Profile, file: Option<&Path>, search: &SearchPath) -> Loaded {
    let mut r = Resolver { search, done: BTreeMap::new(), chain: Vec::new(), diagnostics: Vec::new() };
    r.diagnostics.extend(check(&own).into_iter().map(|d| d.in_file(file)));
    if exceeds_limits(&own) {
        // Refused on its size (check() said which limit): its bases are neither read nor
        // merged, which is work for nothing; `profile` is the own rules, `extends` dropped.
        return Loaded {
            profile: Profile { extends: Vec::new(), ..own.clone() },
            chain: Vec::new(),
            own,
            file: file.map(Path::to_path_buf),
            diagnostics: r.diagnostics,
        };
    }
    let mut stack = vec![own.name.clone()];
    r.visit_extends(&own, file, &mut stack);
    let bases: Vec<&Profile> = r.chain.iter().map(|(n, _)| &r.done[n].0).collect();
    let profile = merge(&bases, &own);
    Loaded {
        profile,
        chain: r.chain.iter().map(|(n, f)| (n.clone(), f.clone())).collect(),
        own,
        file: file.map(Path::to_path_buf),
        diagnostics: r.diagnostics,
    }
}

struct Resolver<'a> {
    search: &'a SearchPath,
    /// Loaded bases by name, with their file.
    done: BTreeMap<String, (Profile, PathBuf)>,
    chain: Vec<(String, PathBuf)>,
    diagnostics: Vec<Diagnostic>,
}

impl Resolver<'_> {
    fn visit_extends(&mut self, p: &Profile, file: Option<&Path>, stack: &mut Vec<String>) {
        for (i, name) in p.extends.iter().enumerate() {
            let at = |msg: String| Diagnostic::error(format!("extends[{i}]"), msg).in_file(file);
            if let Some(pos) = stack.iter().position(|s| s == name) {
                let mut cycle: Vec<&str> = stack[pos..].iter().map(String::as_str).collect();
                cycle.push(name);
                self.diagnostics.push(at(format!("extends cycle: {}", cycle.join(" -> "))));
                continue;
            }
            if self.done.contains_key(name) || check_name(name).is_err() {
                continue; // already merged (diamond), or reported by check()
            }
            // `stack` holds the profile being loaded and the bases above it: `name` is level
            // stack.len() below the top one.
            if stack.len() > MAX_EXTENDS_DEPTH {
                self.diagnostics.push(at(format!(
                    "`{}` -> ... -> `{name}`: {} levels of extends; the limit is {MAX_EXTENDS_DEPTH}",
                    stack[0],
                    stack.len()
                )));
                continue;
            }
            let path = match self.search.find(name) {
                Ok(f) => f,
                Err(e) => {
                    self.diagnostics.push(at(e));
                    continue;
                }
            };
            let base = match Profile::parse_file(&path) {
                Ok(b) => b,
                Err(e) => {
                    match e.downcast::<Invalid>() {
                        Ok(inv) => self.diagnostics.extend(inv.errors),
                        Err(e) => self.diagnostics.push(at(format!("{e:#}"))),
                    }
                    continue;
                }
            };
            self.diagnostics.extend(check(&base).into_iter().map(|d| d.in_file(Some(&path))));
            if base.name != *name {
                self.diagnostics.push(
                    Diagnostic::warning("name", format!("`{}` differs from the file name `{name}.json`", base.name))
                        .in_file(Some(&path)),
                );
            }
            stack.push(name.clone());
            self.visit_extends(&base, Some(&path), stack);
            stack.pop();
            self.chain.push((name.clone(), path.clone()));
            self.done.insert(name.clone(), (base, path));
        }
    }
}

/// Merges `bases` (in order) and then `own`, as described in the module doc.
pub fn merge(bases: &[&Profile], own: &Profile) -> Profile {
    let all: Vec<&Profile> = bases.iter().copied().chain(std::iter::once(own)).collect();

    let mut syscalls: Option<Syscalls> = None;
    let mut names = BTreeSet::new();
    for p in &all {
        if let Some(spec) = &p.syscalls {
            let (sc, _) = spec.to_allow();
            let s = syscalls.get_or_insert_with(Syscalls::default);
            s.default = sc.default;
            names.extend(sc.allow);
        }
    }
    if let Some(s) = &mut syscalls {
        s.allow = names.into_iter().collect();
    }

    let mut files: Option<Vec<super::FileRuleSpec>> = None;
    let mut seen = HashSet::new();
    for p in &all {
        if let Some(f) = &p.files {
            let v = files.get_or_insert_with(Vec::new);
            v.extend(f.iter().filter(|r| seen.insert(*r)).cloned());
        }
    }

    let mut network: Option<Network> = None;
    for p in &all {
        if let Some(n) = &p.network {
            let m = network.get_or_insert_with(Network::default);
            extend_opt(&mut m.connect, &n.connect);
            extend_opt(&mut m.bind, &n.bind);
            extend_opt(&mut m.families, &n.families);
            m.raw_sockets |= n.raw_sockets;
            for proto in &n.protocols {
                if !m.protocols.contains(proto) {
                    m.protocols.push(proto.clone());
                }
            }
        }
    }

    Profile {
        name: own.name.clone(),
        description: own.description.clone().or_else(|| bases.iter().rev().find_map(|b| b.description.clone())),
        extends: Vec::new(),
        syscalls: syscalls.map(SyscallsSpec::Allow),
        files,
        network,
    }
}

/// Union of two optional lists: Some if either is (a present list restricts), no duplicates,
/// first occurrences in order. Linear (a set of what `into` holds), so a list far over a limit
/// costs no more than reading it.
fn extend_opt<T: Clone + Eq + Hash>(into: &mut Option<Vec<T>>, from: &Option<Vec<T>>) {
    if let Some(from) = from {
        let v = into.get_or_insert_with(Vec::new);
        let mut seen: HashSet<&T> = v.iter().collect();
        let new: Vec<T> = from.iter().filter(|x| seen.insert(*x)).cloned().collect();
        v.extend(new);
    }
}
