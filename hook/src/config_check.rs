//! `warden config check [FILE]` (like `nginx -t`), and the same check at daemon start and
//! profile reload: the config parses (unknown keys are errors), every profile in the profile
//! folders compiles, every rule's default profile and baseline compile, each profile a rule
//! lets annotations pick compiles within its baseline, and what each namespace gets is
//! printed.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, Context as _, Result};

use crate::config::Config;
use crate::escape::escape;
use crate::policy::{self, glob_match, NamespaceRule};
use crate::profile::{self, intersect, CompiledProfile};

/// Compiles a profile by name from `dirs` (first folder holding `<name>.json` wins, `extends`
/// resolved in the same folders); `PROFILE&BASELINE` is the intersection of the two.
pub fn compile_named(dirs: &[PathBuf], name: &str) -> Result<CompiledProfile> {
    compile_named_cached(dirs, name, None)
}

/// Compiled profiles by the content they were compiled from (the resolved profile, `extends`
/// merged in: SHA-256 of its JSON form). The files are still read and parsed at every look-up,
/// so an edited file is never served stale; only the compile, the part that grows with the
/// rules, is skipped when the content is the same (issue 17: nothing slow on the start path).
#[derive(Default)]
pub struct CompileCache {
    by_content: std::sync::Mutex<std::collections::HashMap<[u8; 32], CompiledProfile>>,
}

/// Entries kept; when full the cache starts over (profiles in use come back at their next
/// look-up). Each entry is one compiled profile version.
const CACHE_ENTRIES: usize = 256;

impl CompileCache {
    fn get_or(&self, key: [u8; 32], compile: impl FnOnce() -> Result<CompiledProfile>) -> Result<CompiledProfile> {
        if let Some(c) = self.by_content.lock().unwrap().get(&key) {
            return Ok(c.clone());
        }
        let c = compile()?;
        let mut m = self.by_content.lock().unwrap();
        if m.len() >= CACHE_ENTRIES {
            m.clear();
        }
        m.insert(key, c.clone());
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.by_content.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// [`compile_named`], compiling only what `cache` does not hold yet.
pub fn compile_named_cached(dirs: &[PathBuf], name: &str, cache: Option<&CompileCache>) -> Result<CompiledProfile> {
    match name.split_once('&') {
        Some((p, b)) => {
            let (kp, pp, fp) = load_named(dirs, p)?;
            let (kb, pb, fb) = load_named(dirs, b).with_context(|| format!("baseline {b}"))?;
            let both = {
                use sha2::Digest as _;
                let mut h = sha2::Sha256::new();
                h.update(kp);
                h.update(kb);
                h.finalize().into()
            };
            let run = || {
                let cp = compile_loaded(p, &pp, &fp)?;
                let cb = compile_loaded(b, &pb, &fb).with_context(|| format!("baseline {b}"))?;
                intersect::intersect(&intersect::combined_name(p, b), &cp, &cb)
                    .with_context(|| format!("profile {p} within baseline {b}"))
            };
            match cache {
                Some(c) => c.get_or(both, run),
                None => run(),
            }
        }
        None => {
            let (k, p, f) = load_named(dirs, name)?;
            match cache {
                Some(c) => c.get_or(k, || compile_loaded(name, &p, &f)),
                None => compile_loaded(name, &p, &f),
            }
        }
    }
}

/// The resolved profile `name` from `dirs`, its file, and the hash of its content.
fn load_named(dirs: &[PathBuf], name: &str) -> Result<([u8; 32], profile::Profile, PathBuf)> {
    policy::valid_profile_name(name).map_err(|e| anyhow!(e))?;
    let search = profile::resolve::SearchPath { dirs: dirs.to_vec() };
    let path = search.find(name).map_err(|e| anyhow!("unknown profile: {e}"))?;
    let p = profile::resolve::load_file(&path, &search)?.into_profile()?;
    let key = {
        use sha2::Digest as _;
        sha2::Sha256::digest(serde_json::to_vec(&p).context("hashing the profile")?).into()
    };
    Ok((key, p, path))
}

fn compile_loaded(name: &str, p: &profile::Profile, path: &std::path::Path) -> Result<CompiledProfile> {
    profile::compile(p).with_context(|| format!("profile {name} ({})", path.display()))
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Human-readable report (namespaces -> what they get).
    pub report: String,
    /// Problems that make the config unusable as written: a rule's default profile or baseline
    /// (or a profile within its baseline) does not compile. The daemon refuses to start on
    /// these.
    pub rule_errors: Vec<String>,
    /// Profiles in the folders that do not compile (pods naming them are refused at start).
    pub profile_errors: Vec<String>,
}

impl Checked {
    pub fn ok(&self) -> bool {
        self.rule_errors.is_empty() && self.profile_errors.is_empty()
    }
}

/// Profile names in the folders, first folder wins (as the search path resolves them).
fn profile_names(dirs: &[PathBuf]) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else { continue };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = n.strip_suffix(".json") {
                if policy::valid_profile_name(stem).is_ok() {
                    names.insert(stem.to_string());
                }
            }
        }
    }
    names.into_iter().collect()
}

/// Checks `cfg` (already parsed and validated) against its profile folders.
pub fn check(cfg: &Config) -> Checked {
    let dirs = &cfg.profile_dirs;
    let mut out = Checked::default();
    let names = profile_names(dirs);
    let mut compiled: BTreeMap<String, Result<CompiledProfile, String>> = BTreeMap::new();
    for n in &names {
        let r = compile_named(dirs, n).map_err(|e| format!("{e:#}"));
        if let Err(e) = &r {
            out.profile_errors.push(format!("profile {n}: {e}"));
        }
        compiled.insert(n.clone(), r);
    }
    let r = &mut out.report;
    let _ = writeln!(
        r,
        "profile folders: {} ({} profiles, {} compile)",
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        names.len(),
        compiled.values().filter(|c| c.is_ok()).count()
    );
    let p = &cfg.policy;
    let mut never: Vec<String> = vec![format!("{} (warden's own)", p.own_namespace)];
    never.extend(p.excluded_namespaces.iter().cloned());
    let _ = writeln!(r, "never confined: {}", never.join(", "));
    let _ = writeln!(r, "annotations: {0}/profile[.CONTAINER], {0}/mode[.CONTAINER]", p.annotation_prefix);
    if p.rules.is_empty() {
        let _ = writeln!(r, "no [[policy.rules]]: one implicit rule \"default\" from [policy]");
    }
    for rule in p.effective_rules() {
        check_rule(&rule, dirs, &names, &mut out);
    }
    out
}

fn check_rule(rule: &NamespaceRule, dirs: &[PathBuf], names: &[String], out: &mut Checked) {
    let mut err = |what: String| out.rule_errors.push(format!("rule {:?}: {what}", rule.name));
    for (what, p) in [("default_profile", &rule.default_profile), ("baseline", &rule.baseline)] {
        if let Some(p) = p {
            if let Err(e) = compile_named(dirs, p) {
                err(format!("{what} {p}: {e:#}"));
            }
        }
    }
    let selectable: Vec<&String> = names.iter().filter(|n| rule.profiles.iter().any(|g| glob_match(g, n))).collect();
    if let Some(b) = &rule.baseline {
        for n in names.iter().filter(|n| selectable.contains(n) || rule.default_profile.as_ref() == Some(*n)) {
            if let Err(e) = compile_named(dirs, &format!("{n}&{b}")) {
                err(format!("profile {n} within baseline {b}: {e:#}"));
            }
        }
    }
    let r = &mut out.report;
    let _ = writeln!(r, "rule {:?}: namespaces {}", rule.name, rule.namespaces.join(", "));
    if rule.annotations {
        let modes: Vec<&str> = rule.modes.iter().map(|m| m.as_str()).collect();
        let _ = writeln!(
            r,
            "  annotations may pick: profiles {} ({} found: {}); modes {}",
            rule.profiles.join(", "),
            selectable.len(),
            if selectable.is_empty() {
                "-".to_string()
            } else {
                selectable.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            },
            if modes.is_empty() { "none".to_string() } else { modes.join(", ") }
        );
    } else {
        let _ = writeln!(r, "  annotations: not honoured (a pod carrying one is refused)");
    }
    let _ = writeln!(
        r,
        "  a pod naming nothing gets: {} in {}",
        match (&rule.default_profile, &rule.baseline) {
            (Some(p), _) => p.clone(),
            (None, Some(b)) => format!("the baseline {b} alone"),
            (None, None) if rule.default_mode == crate::enforcer::Mode::Learn => "nothing (learns everything)".into(),
            (None, None) => "nothing: UNCONFINED".into(),
        },
        rule.default_mode.as_str()
    );
    match &rule.baseline {
        Some(b) => {
            let _ = writeln!(r, "  baseline (always in force, in learn too): {b}");
        }
        None => {
            let _ = writeln!(r, "  baseline: none");
        }
    }
}

/// `warden config check [FILE]`: prints the report and problems; Err when any.
pub fn run(path: &std::path::Path) -> Result<()> {
    let cfg = Config::load(path)?;
    let c = check(&cfg);
    // Names come from files and the config: printed inert (escape.rs).
    for l in c.report.lines() {
        println!("{}", escape(l));
    }
    for e in c.rule_errors.iter().chain(c.profile_errors.iter()) {
        println!("ERROR {}", escape(e));
    }
    if !c.ok() {
        anyhow::bail!(
            "{}: {} problem(s) ({} in rules, {} in profiles)",
            path.display(),
            c.rule_errors.len() + c.profile_errors.len(),
            c.rule_errors.len(),
            c.profile_errors.len()
        );
    }
    println!("{}: ok", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(profiles: &[(&str, &str)], rules: &str) -> (tempfile::TempDir, Config) {
        let d = tempfile::tempdir().unwrap();
        for (n, j) in profiles {
            std::fs::write(d.path().join(format!("{n}.json")), j).unwrap();
        }
        let cfg =
            Config::from_toml(&format!("profile_dirs = [{:?}]\n{rules}", d.path().display().to_string())).unwrap();
        (d, cfg)
    }

    const RULES: &str = "[[policy.rules]]\nname = \"lab\"\nnamespaces = [\"lab-*\"]\nmodes = [\"enforce\", \"learn\"]\nbaseline = \"floor\"\n[[policy.rules]]\nname = \"rest\"\nnamespaces = [\"*\"]\n";

    /// The compile cache serves the same content once compiled, never a stale version: an
    /// edited file (or an edited profile it extends) is compiled again, and a cached answer is
    /// the same compiled profile as a fresh compile.
    #[test]
    fn the_compile_cache_is_keyed_by_content() {
        let (d, cfg) = setup(
            &[
                ("base", r#"{"name":"base","syscalls":{"allow":["read"]}}"#),
                ("web", r#"{"name":"web","extends":["base"],"network":{"connect":[]}}"#),
                ("floor", r#"{"name":"floor","network":{"connect":[]}}"#),
            ],
            "",
        );
        let dirs = &cfg.profile_dirs;
        let cache = CompileCache::default();
        let first = compile_named_cached(dirs, "web", Some(&cache)).unwrap();
        assert_eq!(cache.len(), 1);
        let again = compile_named_cached(dirs, "web", Some(&cache)).unwrap();
        assert_eq!(cache.len(), 1, "served from the cache");
        assert_eq!(again.version(), first.version());
        assert_eq!(again.version(), compile_named(dirs, "web").unwrap().version(), "same as a fresh compile");
        // The profile it extends changes: a new version, compiled.
        std::fs::write(d.path().join("base.json"), r#"{"name":"base","syscalls":{"allow":["read","write"]}}"#).unwrap();
        let edited = compile_named_cached(dirs, "web", Some(&cache)).unwrap();
        assert_ne!(edited.version(), first.version());
        assert_eq!(edited.version(), compile_named(dirs, "web").unwrap().version());
        assert_eq!(cache.len(), 2);
        // Intersections are cached by both contents.
        let both = compile_named_cached(dirs, "web&floor", Some(&cache)).unwrap();
        assert_eq!(both.version(), compile_named(dirs, "web&floor").unwrap().version());
        assert_eq!(cache.len(), 3);
        // Errors are not cached.
        assert!(compile_named_cached(dirs, "nope", Some(&cache)).is_err());
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_good_config_says_what_each_namespace_gets() {
        let (_d, cfg) = setup(
            &[
                ("floor", r#"{"name":"floor","network":{"connect":[]}}"#),
                ("web", r#"{"name":"web","syscalls":{"allow":["read"]}}"#),
            ],
            RULES,
        );
        let c = check(&cfg);
        assert!(c.ok(), "{:?} {:?}", c.rule_errors, c.profile_errors);
        assert!(c.report.contains("rule \"lab\": namespaces lab-*"), "{}", c.report);
        assert!(c.report.contains("modes enforce, learn"), "{}", c.report);
        assert!(c.report.contains("the baseline floor alone in enforce"), "{}", c.report);
        assert!(
            c.report.contains("rule \"rest\": namespaces *") && c.report.contains("nothing: UNCONFINED"),
            "{}",
            c.report
        );
    }

    #[test]
    fn a_rule_whose_baseline_is_missing_or_broken_is_an_error() {
        let (_d, cfg) = setup(&[("web", r#"{"name":"web","syscalls":{"allow":["opnat"]}}"#)], RULES);
        let c = check(&cfg);
        assert!(
            c.rule_errors.iter().any(|e| e.contains("rule \"lab\": baseline floor") && e.contains("unknown profile")),
            "{:?}",
            c.rule_errors
        );
        assert!(
            c.profile_errors.iter().any(|e| e.contains("profile web") && e.contains("opnat")),
            "{:?}",
            c.profile_errors
        );
        assert!(!c.ok());
    }
}
