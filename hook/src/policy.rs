//! Which profile and mode a container gets, from its pod's annotations and the operator's
//! configuration. Pure logic, no I/O: every rule here is unit-tested.
//!
//! Annotations (prefix configurable, default `warden.io`):
//! - `warden.io/profile: NAME` for every container of the pod; `warden.io/profile.CONTAINER`
//!   for one container (wins).
//! - `warden.io/mode: enforce|complain|learn`, and `warden.io/mode.CONTAINER` (wins).
//!
//! Fail closed: a bad name, a bad mode, or an unknown key under the prefix (a typo such as
//! `warden.io/profle` would otherwise leave the pod silently unconfined) is an error that keeps
//! the container from starting, unless the operator configured fail-open.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::enforcer::Mode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Annotation prefix, without the trailing `/`.
    pub annotation_prefix: String,
    /// Profile for pods without a profile annotation (none when empty).
    pub default_profile: Option<String>,
    pub default_mode: Mode,
    /// Namespaces whose pods are never confined (warden's own namespace is always one).
    pub excluded_namespaces: Vec<String>,
    /// The namespace warden itself runs in: never confined.
    pub own_namespace: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            annotation_prefix: "warden.io".into(),
            default_profile: None,
            default_mode: Mode::Enforce,
            excluded_namespaces: Vec::new(),
            own_namespace: "warden-system".into(),
        }
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
    /// Confined. `profile` is None only in learn mode without a profile (record everything).
    Confine { profile: Option<String>, mode: Mode, source: String },
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

/// Selects the policy of container `container` of `pod`.
pub fn select(cfg: &PolicyConfig, pod: &Pod, container: &str) -> Result<Selection, PolicyError> {
    if pod.namespace == cfg.own_namespace {
        return Ok(Selection::Unconfined(format!("namespace {} is warden's own", pod.namespace)));
    }
    if cfg.excluded_namespaces.contains(&pod.namespace) {
        return Ok(Selection::Unconfined(format!("namespace {} is excluded by configuration", pod.namespace)));
    }
    let err = |annotation: String, reason: String| PolicyError {
        namespace: pod.namespace.clone(),
        pod: pod.name.clone(),
        container: container.to_string(),
        annotation,
        reason,
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
            ));
        }
    }

    let pick = |what: &str| -> Option<(String, String)> {
        let specific = format!("{prefix}{what}.{container}");
        let general = format!("{prefix}{what}");
        pod.annotations
            .get(&specific)
            .map(|v| (specific.clone(), v.clone()))
            .or_else(|| pod.annotations.get(&general).map(|v| (general.clone(), v.clone())))
    };

    let mode = match pick("mode") {
        Some((k, v)) => (parse_mode(v.trim()).map_err(|r| err(format!("{k}={v:?}"), r))?, Some(k)),
        None => (cfg.default_mode, None),
    };
    let profile = match pick("profile") {
        Some((k, v)) => {
            let name = v.trim().to_string();
            valid_profile_name(&name).map_err(|r| err(format!("{k}={v:?}"), r))?;
            Some((name, k))
        }
        None => cfg.default_profile.clone().map(|p| (p, "default_profile (config)".to_string())),
    };

    match (profile, mode) {
        (Some((name, source)), (mode, _)) => Ok(Selection::Confine { profile: Some(name), mode, source }),
        (None, (Mode::Learn, Some(source))) => Ok(Selection::Confine { profile: None, mode: Mode::Learn, source }),
        (None, (mode, Some(source))) => Err(err(
            source,
            format!(
                "mode {} needs a profile: add {prefix}profile (or .{container}), or set default_profile",
                mode.as_str()
            ),
        )),
        (None, (_, None)) => Ok(Selection::Unconfined("no profile annotation and no default profile".into())),
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
}
