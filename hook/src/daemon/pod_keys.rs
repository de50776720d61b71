//! Per-container annotation keys that name no container of their pod (issue 16): with
//! `warden.io/profile.sidecra` (a typo) the real `sidecar` silently gets the pod-wide profile or
//! none. NRI never tells a plugin which containers a pod will have, so this cannot be refused
//! at the first start; instead, once a pod's containers have had `GRACE` to start (or when the
//! pod is removed, if sooner), each key whose container was never seen is logged as a warning
//! and counted in `warden_unmatched_container_keys_total`.
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::policy::{self, Pod, PolicyConfig};

/// How long after a pod's first container start its keys are checked: init containers,
/// sidecars and the main containers of a pod start within seconds of each other.
pub const GRACE: Duration = Duration::from_secs(60);

struct Watch {
    namespace: String,
    pod: String,
    /// (key, container name it names).
    keys: Vec<(String, String)>,
    seen: BTreeSet<String>,
    first: Instant,
    reported: bool,
}

/// The pods with per-container keys, by pod uid.
#[derive(Default)]
pub struct PodKeys {
    pods: Mutex<HashMap<String, Watch>>,
}

/// A key that named no container: (namespace, pod, key, container, containers seen).
pub type Unmatched = (String, String, String, String, Vec<String>);

impl PodKeys {
    /// Container `container` of `pod` started (or runs, at Synchronize).
    pub fn started(&self, cfg: &PolicyConfig, pod: &Pod, container: &str) {
        let keys = policy::per_container_keys(cfg, pod);
        if keys.is_empty() {
            return;
        }
        let mut pods = self.pods.lock().unwrap();
        let w = pods.entry(pod.uid.clone()).or_insert_with(|| Watch {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            keys: keys.iter().map(|(k, c)| (k.to_string(), c.to_string())).collect(),
            seen: BTreeSet::new(),
            first: Instant::now(),
            reported: false,
        });
        w.seen.insert(container.to_string());
    }

    /// Reports pods whose grace has passed (`now`), or the pod `removed` (uid) at once.
    pub fn check(&self, now: Instant, removed: Option<&str>) -> Vec<Unmatched> {
        let mut out = Vec::new();
        let mut pods = self.pods.lock().unwrap();
        for (uid, w) in pods.iter_mut() {
            let due = removed == Some(uid.as_str()) || now.duration_since(w.first) >= GRACE;
            if w.reported || !due {
                continue;
            }
            w.reported = true;
            for (k, c) in &w.keys {
                if !w.seen.contains(c) {
                    let seen: Vec<String> = w.seen.iter().cloned().collect();
                    warn!(namespace = %w.namespace, pod = %w.pod, key = %k, container = %c, containers = %seen.join(","),
                          "annotation {k} names no container of this pod: that container (if it exists under another name) did not get this setting");
                    out.push((w.namespace.clone(), w.pod.clone(), k.clone(), c.clone(), seen));
                }
            }
        }
        if let Some(uid) = removed {
            pods.remove(uid);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ann: &[(&str, &str)]) -> Pod {
        Pod {
            name: "web-1".into(),
            namespace: "shop".into(),
            uid: "u1".into(),
            annotations: ann.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn a_key_naming_no_started_container_is_reported_once() {
        let cfg = PolicyConfig::default();
        let k = PodKeys::default();
        let p = pod(&[
            ("warden.io/profile", "web"),
            ("warden.io/profile.sidecra", "proxy"),
            ("warden.io/mode.app", "learn"),
        ]);
        k.started(&cfg, &p, "app");
        k.started(&cfg, &p, "sidecar");
        let t0 = Instant::now();
        assert!(k.check(t0, None).is_empty(), "within the grace nothing is reported");
        let got = k.check(t0 + GRACE + Duration::from_secs(1), None);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].2.as_str(), got[0].3.as_str()), ("warden.io/profile.sidecra", "sidecra"));
        assert_eq!(got[0].4, ["app", "sidecar"]);
        assert!(k.check(t0 + GRACE * 2, None).is_empty(), "reported once");
        // Pods without per-container keys are not tracked; a removed pod is checked at once.
        let q = Pod { uid: "u2".into(), ..pod(&[("warden.io/profile.db", "x")]) };
        k.started(&cfg, &q, "app");
        assert_eq!(k.check(Instant::now(), Some("u2")).len(), 1);
        k.started(&cfg, &pod(&[("warden.io/profile", "web")]), "app");
        assert!(k.pods.lock().unwrap().get("u2").is_none());
    }
}
