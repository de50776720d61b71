//! The daemon behind the control socket: `control::Handler`.
use std::time::Instant;

use serde_json::{json, Value};
use tracing::{error, info, warn};

use super::confine::{Target, Via};
use super::{oci, Daemon};
use crate::control::{self, ConfineAnswer, ConfineRequest, ContainerInfo, EventHub, PeerCred, Refusal};
use crate::enforcer::{self, Maps};
use crate::policy;
use warden_common::cgroup_flags;

/// The confined root a cgroup belongs to (itself or as a descendant), if any. Two map
/// lookups whatever the number of confined containers: the control socket asks this for every
/// connection (issue 17: nothing per connection may scan every confined cgroup).
fn confined_root(maps: &Maps, id: u64) -> Option<u64> {
    let p = maps.cgroups.get(&id, 0).ok()?;
    if p.flags & cgroup_flags::INHERITED == 0 {
        return Some(id);
    }
    // An inherited entry whose root was released is nobody's any more.
    let root = maps.cgroups.get(&p.root_cgroup, 0).ok()?;
    (root.flags & cgroup_flags::INHERITED == 0).then_some(p.root_cgroup)
}

impl Daemon {
    /// The confined containers with their pinned state (version, counters), for `status`.
    pub fn container_infos(&self) -> Vec<ContainerInfo> {
        let recs = self.registry.all();
        let pinned = enforcer::list(self.enforcer.lock().unwrap().maps());
        let pinned: std::collections::HashMap<u64, &enforcer::PinnedCgroup> =
            pinned.iter().map(|p| (p.cgroup_id, p)).collect();
        let mut out: Vec<ContainerInfo> = recs
            .into_iter()
            .map(|(id, r)| {
                let p = pinned.get(&r.cgroup_id).copied();
                ContainerInfo {
                    id,
                    namespace: r.namespace,
                    pod: r.pod,
                    container: r.container,
                    profile: r.profile,
                    version: p.map(|p| p.version.clone()).unwrap_or_default(),
                    mode: r.mode.as_str().into(),
                    cgroup_id: r.cgroup_id,
                    cgroup_path: r.cgroup_path,
                    via: r.via.as_str().into(),
                    rule: r.rule,
                    baseline: r.baseline,
                    violations: p
                        .map(|p| p.violations.iter().map(|(k, v)| (k.to_string(), *v)).collect())
                        .unwrap_or_default(),
                    events_sent: p.map(|p| p.events_sent).unwrap_or(0),
                    events_dropped: p.map(|p| p.events_dropped).unwrap_or(0),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.namespace, &a.pod, &a.container, &a.id).cmp(&(&b.namespace, &b.pod, &b.container, &b.id))
        });
        out
    }
}

impl control::Handler for Daemon {
    fn confined_root_of(&self, id: u64) -> Option<u64> {
        confined_root(self.enforcer.lock().unwrap().maps(), id)
    }

    fn cgroup2_mount(&self) -> &std::path::Path {
        &self.cgroup2
    }

    fn status(&self) -> Value {
        let mut v = {
            let enf = self.enforcer.lock().unwrap();
            control::pin_status(enf.maps(), enf.pin_dir())
        };
        v["daemon"] = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "pin_dir": self.cfg.pin_dir,
            "nri": self.cfg.nri.enabled,
            "subscribers": self.hub.subscribers(),
        });
        v["kernel"] = serde_json::to_value(&self.probe).unwrap_or(Value::Null);
        v["containers"] = serde_json::to_value(self.container_infos()).unwrap_or(Value::Null);
        v["deny_lists"] = serde_json::to_value(self.deny_list_status()).unwrap_or(Value::Null);
        v
    }

    fn containers(&self) -> Vec<ContainerInfo> {
        self.container_infos()
    }

    fn hub(&self) -> &EventHub {
        &self.hub
    }

    fn on_confine(&self, r: &ConfineRequest, peer: PeerCred) -> Result<ConfineAnswer, Refusal> {
        let t = Instant::now();
        let confined = if r.backstop {
            self.backstop_confine(r)
        } else {
            Target::oci(r).and_then(|target| match target {
                Some(target) => self.confine(&target, Via::OciHook),
                None => Ok(None),
            })
        };
        match confined {
            Ok(Some(c)) => {
                // The backstop logs its own line (backstop.rs).
                if !r.backstop {
                    info!(namespace = %c.namespace, pod = %c.pod, container = %c.container, container_id = %r.id, profile = %c.profile,
                      mode = c.mode.as_str(), cgroup_id = c.cgroup_id, peer_pid = peer.pid, micros = t.elapsed().as_micros() as u64, "confined (oci-hook)");
                }
                Ok(ConfineAnswer::Confined { profile: c.profile, mode: c.mode.as_str().into(), cgroup_id: c.cgroup_id })
            }
            Ok(None) => Ok(ConfineAnswer::NotConfined),
            Err(e) => {
                let msg = match e.downcast_ref::<policy::PolicyError>() {
                    Some(pe) => format!("warden: {pe}"),
                    // The backstop's errors name pod and container (backstop.rs).
                    None if r.backstop => format!("warden: {e:#}"),
                    None => format!("warden: container {}: {e:#}", r.id),
                };
                if self.cfg.fail_open && !policy::is_violation(&e) {
                    warn!(container_id = %r.id, error = %msg, "FAIL-OPEN: policy refused but the container starts UNCONFINED (fail_open = true)");
                    Ok(ConfineAnswer::FailOpen(msg))
                } else {
                    error!(container_id = %r.id, error = %msg, "container start refused (oci-hook)");
                    Err(Refusal { message: msg, violation: policy::is_violation(&e) })
                }
            }
        }
    }

    fn on_release(&self, id: &str, peer: PeerCred) -> bool {
        let released = self.release_id(id);
        oci::remove_record(&self.oci_dir(), id);
        if released {
            info!(container_id = %id, peer_pid = peer.pid, "released (control socket)");
        }
        released
    }
}

impl Daemon {
    /// Each deny list: entries and version in force, refusal, hits.
    pub fn deny_list_status(&self) -> Vec<crate::denylist::ListStatus> {
        let deny = self.deny.lock().unwrap();
        let enf = self.enforcer.lock().unwrap();
        deny.status(|id| enf.maps().deny_hits_of(id))
    }
}
