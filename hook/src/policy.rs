//! Which profile and mode a container gets, from its pod's annotations and the operator's
//! configuration. Pure logic, no I/O: every rule here is unit-tested.
//!
//! Annotations (prefix configurable, default `warden.io`):
//! - `warden.io/profile: NAME` for every container of the pod; `warden.io/profile.CONTAINER`
//!   for one container (wins).
//! - `warden.io/mode: enforce|complain|learn`, and `warden.io/mode.CONTAINER` (wins).
//!
//! Who decides (issue 16): pod authors write annotations, operators write the daemon's config.
//! The config's `[[policy.rules]]` (first match by namespace wins, a catch-all last) say what
//! annotations may choose in a namespace: which profiles, which modes, whether annotations are
//! honoured at all, the profile of a pod that names none, and a **baseline** that is always in
//! force as well (the kernel holds the intersection; in learn mode the baseline stays
//! enforced). An annotation outside its rule fails the start, naming the rule; `fail_open`
//! does not apply to that. Without rules, the `[policy]` keys make one implicit catch-all rule
//! named `default`, whose baseline is `default_profile` (when its mode is enforce): a node-wide
//! default is then a floor a pod cannot go below.
//!
//! Fail closed: a bad name, a bad mode, or an unknown key under the prefix (a typo such as
//! `warden.io/profle` would otherwise leave the pod silently unconfined) is an error that keeps
//! the container from starting, unless the operator configured fail-open (policy violations
//! never fail open).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::enforcer::Mode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Annotation prefix, without the trailing `/`.
    pub annotation_prefix: String,
    /// Profile for pods without a profile annotation (none when empty). Only without `rules`:
    /// it then is the implicit rule's default and (in enforce) its baseline.
    pub default_profile: Option<String>,
    /// Only without `rules` (the implicit rule's default mode).
    pub default_mode: Mode,
    /// Namespaces whose pods are never confined (warden's own namespace is always one).
    pub excluded_namespaces: Vec<String>,
    /// The namespace warden itself runs in: never confined.
    pub own_namespace: String,
    /// Namespace rules, first match wins; the last must match every namespace (`"*"`).
    pub rules: Vec<NamespaceRule>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            annotation_prefix: "warden.io".into(),
            default_profile: None,
            default_mode: Mode::Enforce,
            excluded_namespaces: Vec::new(),
            own_namespace: "warden-system".into(),
            rules: Vec::new(),
        }
    }
}

/// What pods of some namespaces may choose, and what they get when they choose nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceRule {
    /// Named in refusals, `warden status` and denial logs.
    pub name: String,
    /// Namespace names or globs (`*`, `?`, `[a-z]`): `team-*`, `*` for every namespace.
    pub namespaces: Vec<String>,
    /// Whether warden annotations are honoured. false: a pod carrying one is refused (it would
    /// otherwise silently get something else than it asked for).
    pub annotations: bool,
    /// Profiles an annotation may select (names or globs). Default: any.
    pub profiles: Vec<String>,
    /// Modes an annotation may select. Default: `enforce` only, so switching enforcement off
    /// (complain, learn) is something the operator opens per namespace.
    pub modes: Vec<Mode>,
    /// Profile of a container whose pod names none.
    pub default_profile: Option<String>,
    /// Mode of a container whose pod names none.
    pub default_mode: Mode,
    /// Always in force as well: an action must be allowed by the baseline and by the pod's
    /// profile. In learn mode the baseline stays enforced. Complain cannot be combined with a
    /// baseline (the kernel judges one profile per container; see docs/operations.md).
    pub baseline: Option<String>,
}

impl Default for NamespaceRule {
    fn default() -> Self {
        NamespaceRule {
            name: String::new(),
            namespaces: Vec::new(),
            annotations: true,
            profiles: vec!["*".into()],
            modes: vec![Mode::Enforce],
            default_profile: None,
            default_mode: Mode::Enforce,
            baseline: None,
        }
    }
}

impl NamespaceRule {
    pub fn matches_namespace(&self, ns: &str) -> bool {
        self.namespaces.iter().any(|g| glob_match(g, ns))
    }

    fn is_catch_all(&self) -> bool {
        self.namespaces.iter().any(|g| g == "*")
    }

    fn allows_profile(&self, name: &str) -> bool {
        self.profiles.iter().any(|g| glob_match(g, name))
    }
}

/// Shell-style glob match of a whole name (`*`, `?`, `[...]`); names here have no `/`.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    glob::Pattern::new(pattern).map(|p| p.matches(name)).unwrap_or(false)
}

impl PolicyConfig {
    /// The rules in force: the configured ones, or the implicit catch-all made from the
    /// `[policy]` keys.
    pub fn effective_rules(&self) -> Vec<NamespaceRule> {
        if !self.rules.is_empty() {
            return self.rules.clone();
        }
        // A node-wide default profile in enforce mode is also a floor: a pod choosing another
        // profile gets the intersection, and learn keeps it enforced. Complain cannot keep a
        // floor, so it is not offered then. Without a default there is nothing to weaken.
        let floor = self.default_profile.clone().filter(|_| self.default_mode == Mode::Enforce);
        let modes = if floor.is_some() {
            vec![Mode::Enforce, Mode::Learn]
        } else {
            vec![Mode::Enforce, Mode::Complain, Mode::Learn]
        };
        vec![NamespaceRule {
            name: "default".into(),
            namespaces: vec!["*".into()],
            annotations: true,
            profiles: vec!["*".into()],
            modes,
            default_profile: self.default_profile.clone(),
            default_mode: self.default_mode,
            baseline: floor,
        }]
    }

    /// Checks the rules; every message names the rule (`policy.rules[i] (name)`).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = &self.default_profile {
            valid_profile_name(p).map_err(|e| format!("policy.default_profile: {e}"))?;
        }
        if !self.rules.is_empty() && (self.default_profile.is_some() || self.default_mode != Mode::Enforce) {
            return Err("policy.default_profile and policy.default_mode are for configs without rules; with [[policy.rules]] set default_profile/default_mode in the rules".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("policy.rules[{i}] ({})", r.name);
            if r.name.is_empty() {
                return Err(format!("policy.rules[{i}]: `name` is required (refusals and status name the rule)"));
            }
            if !names.insert(r.name.as_str()) {
                return Err(format!("{at}: the name is used by an earlier rule"));
            }
            if r.namespaces.is_empty() {
                return Err(format!("{at}: `namespaces` is empty (use [\"*\"] for every namespace)"));
            }
            for g in r.namespaces.iter().chain(r.profiles.iter()) {
                glob::Pattern::new(g).map_err(|e| format!("{at}: bad glob {g:?}: {e}"))?;
            }
            for p in r.default_profile.iter().chain(r.baseline.iter()) {
                valid_profile_name(p).map_err(|e| format!("{at}: {p:?}: {e}"))?;
            }
            if r.baseline.is_some() && (r.modes.contains(&Mode::Complain) || r.default_mode == Mode::Complain) {
                return Err(format!(
                    "{at}: complain cannot be combined with a baseline: the kernel judges one profile per container, so complain would leave the baseline unenforced; allow learn instead (it keeps the baseline enforced)"
                ));
            }
            if i + 1 == self.rules.len() && !r.is_catch_all() {
                return Err(format!("{at}: the last rule must match every namespace (namespaces = [\"*\"]); otherwise a namespace nobody thought of has no rule"));
            }
        }
        Ok(())
    }
}

/// What warden knows of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Not confined, and why.
    Unconfined(String),
    /// Confined. `profile` is None in learn mode without a profile (record everything), or
    /// when only the baseline applies.
    Confine {
        profile: Option<String>,
        mode: Mode,
        /// The annotation or setting that chose the profile (or mode).
        source: String,
        /// The rule that decided (its name).
        rule: String,
        /// The rule's baseline, in force as well.
        baseline: Option<String>,
    },
}

/// A refusal, with everything an operator needs to find and fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pod {namespace}/{pod}, container {container}: {annotation}: {reason}")]
pub struct PolicyError {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The annotation (key="value") or config setting at fault.
    pub annotation: String,
    pub reason: String,
    /// A violation of the operator's rules (never subject to `fail_open`), not a malformed
    /// annotation.
    pub violation: bool,
}

/// Whether `e` is a violation of the operator's rules (never subject to `fail_open`).
pub fn is_violation(e: &anyhow::Error) -> bool {
    e.downcast_ref::<PolicyError>().is_some_and(|pe| pe.violation)
}

/// Profile names: `[a-z0-9][a-z0-9._-]{0,62}`, and never `..` inside (no path tricks even if a
/// future store resolves names differently).
pub fn valid_profile_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Err("profile name is empty".into());
    }
    if b.len() > 63 {
        return Err(format!("profile name is {} characters, at most 63", b.len()));
    }
    if !(b[0].is_ascii_lowercase() || b[0].is_ascii_digit()) {
        return Err("profile name must start with a-z or 0-9".into());
    }
    if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("profile name contains {c:?}; allowed: a-z 0-9 . _ -"));
    }
    if name.contains("..") {
        return Err("profile name contains `..`".into());
    }
    Ok(())
}

pub fn parse_mode(v: &str) -> Result<Mode, String> {
    match v {
        "enforce" => Ok(Mode::Enforce),
        "complain" => Ok(Mode::Complain),
        "learn" => Ok(Mode::Learn),
        other => Err(format!("unknown mode {other:?}; expected enforce, complain or learn")),
    }
}

/// The per-container keys (`PREFIX/profile.NAME`, `PREFIX/mode.NAME`) of a pod's annotations,
/// as (key, container name).
pub fn per_container_keys<'a>(cfg: &PolicyConfig, pod: &'a Pod) -> Vec<(&'a str, &'a str)> {
    let prefix = format!("{}/", cfg.annotation_prefix);
    pod.annotations
        .keys()
        .filter_map(|k| {
            let rest = k.strip_prefix(&prefix)?;
            let (base, name) = rest.split_once('.')?;
            matches!(base, "profile" | "mode").then_some((k.as_str(), name))
        })
        .collect()
}

/// Selects the policy of container `container` of `pod`.
// A refusal carries every name an operator needs (namespace, pod, container, annotation,
// reason): large, but made once per refused start, never on a hot path.
#[allow(clippy::result_large_err)]
pub fn select(cfg: &PolicyConfig, pod: &Pod, container: &str) -> Result<Selection, PolicyError> {
    if pod.namespace == cfg.own_namespace {
        return Ok(Selection::Unconfined(format!("namespace {} is warden's own", pod.namespace)));
    }
    if cfg.excluded_namespaces.contains(&pod.namespace) {
        return Ok(Selection::Unconfined(format!("namespace {} is excluded by configuration", pod.namespace)));
    }
    let err = |annotation: String, reason: String, violation: bool| PolicyError {
        namespace: pod.namespace.clone(),
        pod: pod.name.clone(),
        container: container.to_string(),
        annotation,
        reason,
        violation,
    };
    let prefix = format!("{}/", cfg.annotation_prefix);

    // Every key under our prefix must be one we understand.
    for (k, v) in &pod.annotations {
        let Some(rest) = k.strip_prefix(&prefix) else { continue };
        let base = rest.split_once('.').map(|(b, _)| b).unwrap_or(rest);
        if base != "profile" && base != "mode" {
            return Err(err(
                format!("{k}={v:?}"),
                format!("unknown warden annotation; known: {prefix}profile[.CONTAINER], {prefix}mode[.CONTAINER]"),
                false,
            ));
        }
    }

    let rules = cfg.effective_rules();
    // validate() guarantees a catch-all last; an empty match here would be a bug: fail closed.
    let Some(rule) = rules.iter().find(|r| r.matches_namespace(&pod.namespace)) else {
        return Err(err(
            "policy.rules".into(),
            format!("no rule matches namespace {:?} (the last rule must be a catch-all)", pod.namespace),
            true,
        ));
    };
    let by_rule = |what: String| format!("{what} (rule {:?})", rule.name);

    let pick = |what: &str| -> Option<(String, String)> {
        let specific = format!("{prefix}{what}.{container}");
        let general = format!("{prefix}{what}");
        pod.annotations
            .get(&specific)
            .map(|v| (specific.clone(), v.clone()))
            .or_else(|| pod.annotations.get(&general).map(|v| (general.clone(), v.clone())))
    };
    let (mode_ann, profile_ann) = (pick("mode"), pick("profile"));
    if !rule.annotations {
        if let Some((k, v)) = profile_ann.as_ref().or(mode_ann.as_ref()) {
            return Err(err(
                format!("{k}={v:?}"),
                by_rule(format!("namespace {} does not honour warden annotations", pod.namespace)),
                true,
            ));
        }
    }

    let mode = match mode_ann {
        Some((k, v)) => {
            let m = parse_mode(v.trim()).map_err(|r| err(format!("{k}={v:?}"), r, false))?;
            if !rule.modes.contains(&m) {
                let allowed: Vec<&str> = rule.modes.iter().map(|m| m.as_str()).collect();
                return Err(err(
                    format!("{k}={v:?}"),
                    by_rule(format!(
                        "mode {} is not allowed in namespace {} (allowed: {})",
                        m.as_str(),
                        pod.namespace,
                        if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }
                    )),
                    true,
                ));
            }
            (m, Some(k))
        }
        None => (rule.default_mode, None),
    };
    let profile = match profile_ann {
        Some((k, v)) => {
            let name = v.trim().to_string();
            valid_profile_name(&name).map_err(|r| err(format!("{k}={v:?}"), r, false))?;
            if !rule.allows_profile(&name) {
                return Err(err(
                    format!("{k}={v:?}"),
                    by_rule(format!(
                        "profile {name} is not allowed in namespace {} (allowed: {})",
                        pod.namespace,
                        rule.profiles.join(", ")
                    )),
                    true,
                ));
            }
            Some((name, k))
        }
        None => rule.default_profile.clone().map(|p| (p, format!("default_profile (rule {:?})", rule.name))),
    };

    let confine = |profile: Option<String>, mode: Mode, source: String| Selection::Confine {
        profile,
        mode,
        source,
        rule: rule.name.clone(),
        baseline: rule.baseline.clone(),
    };
    match (profile, mode) {
        (Some((name, source)), (mode, _)) => Ok(confine(Some(name), mode, source)),
        (None, (Mode::Learn, Some(source))) => Ok(confine(None, Mode::Learn, source)),
        // The operator's default is learn: record everything (inside the baseline, if any).
        (None, (Mode::Learn, None)) => {
            Ok(confine(None, Mode::Learn, format!("default_mode learn (rule {:?})", rule.name)))
        }
        // Only the baseline: it alone is enforced (or kept while learning).
        (None, (mode, source)) if rule.baseline.is_some() => {
            Ok(confine(None, mode, source.unwrap_or_else(|| format!("baseline (rule {:?})", rule.name))))
        }
        (None, (mode, Some(source))) => Err(err(
            source,
            format!(
                "mode {} needs a profile: add {prefix}profile (or .{container}), or set the rule's default_profile",
                mode.as_str()
            ),
            false,
        )),
        (None, (_, None)) => Ok(Selection::Unconfined(by_rule("no profile annotation and no default profile".into()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ann: &[(&str, &str)]) -> Pod {
        Pod {
            name: "web-1".into(),
            namespace: "shop".into(),
            uid: "u".into(),
            annotations: ann.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn confine(p: &str, m: Mode) -> (Option<String>, Mode) {
        (Some(p.to_string()), m)
    }

    fn got(s: Selection) -> (Option<String>, Mode) {
        match s {
            Selection::Confine { profile, mode, .. } => (profile, mode),
            Selection::Unconfined(why) => panic!("unconfined: {why}"),
        }
    }

    #[test]
    fn pod_wide_and_per_container() {
        let c = PolicyConfig::default();
        let p = pod(&[
            ("warden.io/profile", "web"),
            ("warden.io/profile.sidecar", "proxy"),
            ("warden.io/mode.sidecar", "complain"),
        ]);
        assert_eq!(got(select(&c, &p, "app").unwrap()), confine("web", Mode::Enforce));
        assert_eq!(got(select(&c, &p, "sidecar").unwrap()), confine("proxy", Mode::Complain));
    }

    #[test]
    fn unannotated_gets_default_or_nothing() {
        let mut c = PolicyConfig::default();
        assert!(matches!(select(&c, &pod(&[]), "app").unwrap(), Selection::Unconfined(_)));
        c.default_profile = Some("runtime-default".into());
        assert_eq!(got(select(&c, &pod(&[]), "app").unwrap()), confine("runtime-default", Mode::Enforce));
    }

    #[test]
    fn excluded_and_own_namespaces() {
        let mut c = PolicyConfig { excluded_namespaces: vec!["shop".into()], ..Default::default() };
        assert!(matches!(select(&c, &pod(&[("warden.io/profile", "web")]), "a").unwrap(), Selection::Unconfined(_)));
        c.excluded_namespaces.clear();
        let mut p = pod(&[("warden.io/profile", "web")]);
        p.namespace = "warden-system".into();
        assert!(matches!(select(&c, &p, "a").unwrap(), Selection::Unconfined(_)));
    }

    #[test]
    fn path_tricks_and_bad_names_are_refused() {
        let c = PolicyConfig::default();
        for bad in
            ["../etc/passwd", "/etc/x", "Web", "a/b", "..", "a..b", "", &"x".repeat(64), "web\0", ".hidden", "we b"]
        {
            let e = select(&c, &pod(&[("warden.io/profile", bad)]), "app").unwrap_err();
            assert_eq!(e.namespace, "shop");
            assert_eq!(e.pod, "web-1");
            assert_eq!(e.container, "app");
            assert!(e.annotation.starts_with("warden.io/profile="), "{e}");
            assert!(e.to_string().contains("profile name"), "{e}");
        }
        assert!(select(&c, &pod(&[("warden.io/profile", "web-2.v1_x")]), "app").is_ok());
    }

    #[test]
    fn bad_mode_and_typos_fail_closed() {
        let c = PolicyConfig::default();
        let e = select(&c, &pod(&[("warden.io/profile", "web"), ("warden.io/mode", "audit")]), "app").unwrap_err();
        assert!(e.reason.contains("unknown mode \"audit\""), "{e}");
        let e = select(&c, &pod(&[("warden.io/profle", "web")]), "app").unwrap_err();
        assert!(e.reason.contains("unknown warden annotation"), "{e}");
        // Other prefixes are none of our business.
        assert!(select(&c, &pod(&[("example.com/profle", "x")]), "app").is_ok());
    }

    #[test]
    fn learn_without_profile_records_everything_other_modes_need_one() {
        let c = PolicyConfig::default();
        assert_eq!(got(select(&c, &pod(&[("warden.io/mode", "learn")]), "app").unwrap()), (None, Mode::Learn));
        let e = select(&c, &pod(&[("warden.io/mode", "complain")]), "app").unwrap_err();
        assert!(e.reason.contains("needs a profile"), "{e}");
    }

    #[test]
    fn prefix_is_configurable() {
        let c = PolicyConfig { annotation_prefix: "sec.example.com".into(), ..Default::default() };
        assert_eq!(
            got(select(&c, &pod(&[("sec.example.com/profile", "web")]), "a").unwrap()),
            confine("web", Mode::Enforce)
        );
        assert!(matches!(select(&c, &pod(&[("warden.io/profile", "web")]), "a").unwrap(), Selection::Unconfined(_)));
    }

    /// `[policy]` and `[[policy.rules]]` of a config, validated (as config.rs does; not
    /// through it: config depends on this module).
    fn parse(text: &str) -> Result<PolicyConfig, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            #[serde(default)]
            policy: PolicyConfig,
        }
        let d: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        d.policy.validate()?;
        Ok(d.policy)
    }

    fn rules(toml_rules: &str) -> PolicyConfig {
        parse(toml_rules).unwrap()
    }

    fn confined(s: Selection) -> (Option<String>, Mode, String, Option<String>) {
        match s {
            Selection::Confine { profile, mode, rule, baseline, .. } => (profile, mode, rule, baseline),
            Selection::Unconfined(why) => panic!("unconfined: {why}"),
        }
    }

    fn in_ns(ns: &str, ann: &[(&str, &str)]) -> Pod {
        Pod { namespace: ns.into(), ..pod(ann) }
    }

    const RULES: &str = r#"
        [[policy.rules]]
        name = "teams-learn"
        namespaces = ["team-*", "dev"]
        modes = ["enforce", "learn"]
        profiles = ["web", "team-*"]
        baseline = "node-floor"

        [[policy.rules]]
        name = "locked"
        namespaces = ["payments"]
        annotations = false
        default_profile = "payments"

        [[policy.rules]]
        name = "everyone"
        namespaces = ["*"]
        default_profile = "runtime-default"
        "#;

    #[test]
    fn first_matching_rule_decides() {
        let c = rules(RULES);
        let got = confined(select(&c, &in_ns("team-a", &[("warden.io/profile", "team-a-api")]), "app").unwrap());
        assert_eq!(got, (Some("team-a-api".into()), Mode::Enforce, "teams-learn".into(), Some("node-floor".into())));
        // Learn is open there, inside the baseline.
        let got = confined(select(&c, &in_ns("dev", &[("warden.io/mode", "learn")]), "app").unwrap());
        assert_eq!(got, (None, Mode::Learn, "teams-learn".into(), Some("node-floor".into())));
        // Nothing named: the baseline alone.
        let got = confined(select(&c, &in_ns("team-b", &[]), "app").unwrap());
        assert_eq!(got, (None, Mode::Enforce, "teams-learn".into(), Some("node-floor".into())));
        let got = confined(select(&c, &in_ns("payments", &[]), "app").unwrap());
        assert_eq!(got, (Some("payments".into()), Mode::Enforce, "locked".into(), None));
        let got = confined(select(&c, &in_ns("shop", &[("warden.io/profile", "web")]), "app").unwrap());
        assert_eq!(got, (Some("web".into()), Mode::Enforce, "everyone".into(), None));
    }

    #[test]
    fn annotations_outside_the_rule_are_refused_naming_it() {
        let c = rules(RULES);
        let e = select(&c, &in_ns("shop", &[("warden.io/mode", "learn")]), "app").unwrap_err();
        assert!(
            e.violation && e.reason.contains("mode learn is not allowed") && e.reason.contains("\"everyone\""),
            "{e}"
        );
        let e = select(&c, &in_ns("team-a", &[("warden.io/profile", "privileged")]), "app").unwrap_err();
        assert!(
            e.violation && e.reason.contains("profile privileged is not allowed") && e.reason.contains("teams-learn"),
            "{e}"
        );
        let e = select(&c, &in_ns("team-a", &[("warden.io/mode.app", "complain")]), "app").unwrap_err();
        assert!(e.reason.contains("mode complain is not allowed"), "{e}");
        let e = select(&c, &in_ns("payments", &[("warden.io/profile", "payments")]), "app").unwrap_err();
        assert!(
            e.violation && e.reason.contains("does not honour warden annotations") && e.reason.contains("locked"),
            "{e}"
        );
        // A malformed annotation is not a violation (fail_open may apply to it).
        let e = select(&c, &in_ns("shop", &[("warden.io/mode", "audit")]), "app").unwrap_err();
        assert!(!e.violation, "{e}");
    }

    #[test]
    fn a_node_wide_default_is_a_floor_learn_cannot_leave() {
        // The measured bypass: default_profile set, the pod says only `mode: learn`.
        let c = PolicyConfig { default_profile: Some("no-net".into()), ..Default::default() };
        let got = confined(select(&c, &pod(&[("warden.io/mode", "learn")]), "app").unwrap());
        assert_eq!(got, (Some("no-net".into()), Mode::Learn, "default".into(), Some("no-net".into())));
        let got = confined(select(&c, &pod(&[("warden.io/profile", "wide-open")]), "app").unwrap());
        assert_eq!(got.3.as_deref(), Some("no-net"), "another profile is intersected with the default");
        let e = select(&c, &pod(&[("warden.io/mode", "complain")]), "app").unwrap_err();
        assert!(e.violation && e.reason.contains("mode complain is not allowed"), "{e}");
        // Without a default there is no floor and every mode stays open.
        let c = PolicyConfig::default();
        assert_eq!(
            confined(select(&c, &pod(&[("warden.io/profile", "web"), ("warden.io/mode", "complain")]), "a").unwrap()).3,
            None
        );
    }

    #[test]
    fn rule_mistakes_are_config_errors() {
        let bad = |t: &str| parse(t).unwrap_err();
        let e = bad("[[policy.rules]]\nname = \"a\"\nnamespaces = [\"shop\"]\n");
        assert!(e.contains("policy.rules[0] (a)") && e.contains("last rule must match every namespace"), "{e}");
        let e = bad("[[policy.rules]]\nname = \"a\"\nnamespaces = [\"*\"]\nbaseline = \"f\"\nmodes = [\"complain\"]\n");
        assert!(e.contains("complain cannot be combined with a baseline"), "{e}");
        let e = bad("[[policy.rules]]\nname = \"a\"\nnamespaces = [\"x\"]\n[[policy.rules]]\nname = \"a\"\nnamespaces = [\"*\"]\n");
        assert!(e.contains("used by an earlier rule"), "{e}");
        let e = bad("[[policy.rules]]\nnamespaces = [\"*\"]\n");
        assert!(e.contains("`name` is required"), "{e}");
        let e = bad("[[policy.rules]]\nname = \"a\"\nnamespaces = [\"*\"]\nbaseline = \"../x\"\n");
        assert!(e.contains("policy.rules[0] (a)"), "{e}");
        let e = bad("[policy]\ndefault_profile = \"x\"\n[[policy.rules]]\nname = \"a\"\nnamespaces = [\"*\"]\n");
        assert!(e.contains("for configs without rules"), "{e}");
        let e = bad("[[policy.rules]]\nname = \"a\"\nnamespaces = [\"*\"]\nmodez = [\"learn\"]\n");
        assert!(e.contains("modez"), "{e}");
    }
}
