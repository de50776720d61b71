//! The daemon (`warden run`): what it holds and what it does with it.
//!
//! - [`confine`]: the one confine path ([`Daemon::confine`]), for NRI StartContainer, NRI
//!   Synchronize and the OCI hook alike ([`Via`]).
//! - [`nri`]: the NRI plugin (`nri::Handler`): StartContainer, Synchronize, Stop/Remove.
//! - [`control`]: the control socket's handler (`control::Handler`): status, events, the OCI
//!   hook's confine and release.
//! - [`backstop`]: the createRuntime hook added at CreateContainer, so that a warden dropped
//!   by containerd means a refused start, not an unconfined one.
//! - [`registry`]: the containers confined now; [`oci`]: the OCI hook's records on disk.
//! - [`reload`]: profile hot reload; [`run`]: the threads and tasks of `warden run`.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _, Result};
use tracing::{error, info, warn};

use crate::{
    cgroup,
    config::Config,
    control::EventHub,
    enforcer::{Enforcer, Maps, Mode},
    events,
    kernel::probe::Probe,
    ops::Ops,
    profile::{self, CompiledProfile},
};

pub mod backstop;
pub mod confine;
pub mod control;
pub mod nri;
pub mod oci;
pub mod pod_keys;
pub mod registry;
pub mod reload;
pub mod run;

pub use confine::{CgroupOf, Target, Via};
pub use registry::{ConfinedContainer, Registry};
pub use reload::Reloaded;
pub use run::run;

#[cfg(test)]
mod tests;

pub struct Daemon {
    pub(crate) cfg: Config,
    pub(crate) probe: Probe,
    pub(crate) cgroup2: PathBuf,
    pub(crate) enforcer: Mutex<Enforcer>,
    /// The containers confined now.
    pub registry: Registry,
    /// Subscribers of the control socket's `events`.
    pub(crate) hub: EventHub,
    /// Denial logs, metrics, the reload gate (hook/src/ops).
    pub ops: Ops,
    /// Per-container annotation keys waiting for their container (pod_keys.rs).
    pub(crate) pod_keys: pod_keys::PodKeys,
    /// Containers created with the backstop hook, not started yet (backstop.rs).
    pub(crate) pending: backstop::Pending,
    /// Compiled profiles by content (config_check::CompileCache).
    pub(crate) compiled: crate::config_check::CompileCache,
    /// The node-wide deny lists in force (crate::denylist). Lock order: this, then `enforcer`.
    pub(crate) deny: Mutex<crate::denylist::DenyLists>,
}

impl Daemon {
    pub fn new(cfg: Config) -> Result<Daemon> {
        let probe = Probe::run();
        for l in &probe.layers {
            if l.available {
                info!(layer = l.name, "enforcement layer available");
            } else {
                warn!(layer = l.name, missing = %l.missing.join("; "), "enforcement layer UNAVAILABLE: profiles needing it are refused");
            }
        }
        let cgroup2 = cgroup::cgroup2_mount()?;
        let mut enforcer = Enforcer::open(&cfg.pin_dir)?;
        // Verify the BPF-LSM programs now, not inside the runtime's StartContainer timeout.
        enforcer.preload_lsm();
        // Node-wide hooks outlive their last user by this grace (enforcer::attach::SharedHook says why).
        enforcer.set_idle_grace(std::time::Duration::from_secs(cfg.hook_idle_detach_seconds));
        let ops = Ops::new(&cfg);
        // Deny lists: the node-wide programs where the operator asked for them (a cgroup that
        // cannot be attached refuses the start: the operator asked for every container), then
        // the lists themselves. Files that do not parse are refused and reported (below); a
        // folder that cannot be read, or a kernel that refuses the entries, refuses the start.
        enforcer.reset_deny_hits();
        let node_cgroup = cfg.deny_lists.node_cgroup.as_ref().map(|c| cgroup2.join(c.strip_prefix("/").unwrap_or(c)));
        enforcer.attach_deny_node_wide(node_cgroup.as_deref()).context("deny_lists.node_cgroup")?;
        if node_cgroup.is_some() {
            // The daemon itself (a DaemonSet pod is below the pods' cgroup): its own namespace
            // is exempt, its containers when they start (confine.rs).
            let own = cgroup::cgroup_of_pid(&cgroup2, std::process::id() as i32)?;
            enforcer.exempt_from_deny_lists(cgroup::cgroup_id(&own)?)?;
        }
        let mut deny = crate::denylist::DenyLists::new(&cfg.deny_lists.dir);
        let r = deny.reload(&mut enforcer).context("loading the deny lists")?;
        crate::daemon::reload::log_deny_reload(&ops, &r, "start");
        Ok(Daemon {
            cfg,
            probe,
            cgroup2,
            enforcer: Mutex::new(enforcer),
            registry: Registry::default(),
            hub: Default::default(),
            ops,
            pod_keys: Default::default(),
            pending: Default::default(),
            compiled: Default::default(),
            deny: Mutex::new(deny),
        })
    }

    /// The confined containers, by container id.
    pub fn confined(&self) -> Vec<(String, ConfinedContainer)> {
        self.registry.all()
    }

    /// Finds `<name>.json` in the profile folders (first wins), resolves `extends` with the
    /// same folders, and compiles it. `PROFILE&BASELINE` is the intersection of the two (the
    /// name reload finds it by again).
    pub fn load_profile(&self, name: &str) -> Result<CompiledProfile> {
        let c = crate::config_check::compile_named_cached(&self.cfg.profile_dirs, name, Some(&self.compiled))?;
        self.probe.check_profile(&c)?;
        self.ops.note_profile(name, &c.name);
        Ok(c)
    }

    /// Writes the profile learned for `rec` into `learn_dir` (learn mode only).
    pub fn write_learned(&self, enf: &Enforcer, rec: &ConfinedContainer) -> Result<PathBuf> {
        let learned = crate::learn::Learned::read(enf.maps(), &self.cfg.pin_dir, rec.cgroup_id)?;
        let name = crate::learn::container_profile_name(&rec.namespace, &rec.pod, &rec.container);
        let source = format!("container {} of pod {}/{}", rec.container, rec.namespace, rec.pod);
        let g = crate::learn::generate(
            &learned,
            &crate::learn::GenerateOptions {
                name: name.clone(),
                extends: Vec::new(),
                source,
                collapse_dir_files: self.cfg.learn_collapse_dir_files,
            },
        );
        let errors: Vec<_> = profile::check(&g.profile).into_iter().filter(|d| d.is_error()).collect();
        if !errors.is_empty() {
            return Err(anyhow!(profile::Invalid { profile: Some(name), errors }));
        }
        profile::compile(&g.profile)?;
        std::fs::create_dir_all(&self.cfg.learn_dir)
            .with_context(|| format!("creating {}", self.cfg.learn_dir.display()))?;
        let path = self.cfg.learn_dir.join(format!("{name}.json"));
        // Each learning run of the container is folded into what the earlier runs wrote, with
        // what it added and whether the record is stable (issue 23). An unreadable earlier file
        // is replaced, loudly (it is the daemon's own output; an operator edit that broke it
        // must not stop learning).
        let mut profile_out =
            crate::learn::stability::with_verdict(g.profile.clone(), crate::learn::stability::ONE_RUN);
        if path.exists() {
            match profile::Profile::parse_file(&path)
                .and_then(|prev| crate::learn::stability::fold_into(prev, g.profile.clone()))
            {
                Ok((merged, notes)) => {
                    info!(namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, file = %path.display(),
                          stability = %notes.join(" | "), "learning run folded into the earlier runs");
                    profile_out = merged;
                }
                Err(e) => {
                    warn!(file = %path.display(), error = %format!("{e:#}"), "the earlier learned profile cannot be read: replaced by this run's")
                }
            }
        }
        // Write then rename: a reader never sees half a profile.
        let tmp = self.cfg.learn_dir.join(format!(".{name}.json.tmp"));
        std::fs::write(&tmp, serde_json::to_string_pretty(&profile_out)? + "\n")
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        if g.truncated > 0 {
            warn!(namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, truncated = g.truncated, file = %path.display(),
                  "learned profile is INCOMPLETE: the per-container bound was reached");
        }
        Ok(path)
    }

    /// Releases the container `id` (NRI stop/remove, or the OCI hook's poststop); false when
    /// it was not confined. A pending backstop start of `id` goes too: a container released or refused is never
    /// confined by a late hook.
    pub fn release_id(&self, id: &str) -> bool {
        self.pending.take(id);
        let Some(rec) = self.registry.remove(id) else { return false };
        self.hub.remember_released(rec.cgroup_id, rec.names(id));
        let mut enf = self.enforcer.lock().unwrap();
        if rec.mode == Mode::Learn {
            // Before the release drops the record.
            match self.write_learned(&enf, &rec) {
                Ok(p) => {
                    info!(namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, file = %p.display(), "learned profile written")
                }
                Err(e) => {
                    error!(namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, error = %format!("{e:#}"), "writing the learned profile failed")
                }
            }
        }
        self.ops.metrics.released(enf.maps(), &rec.labels());
        match enf.release(rec.cgroup_id) {
            Ok(_) => info!(namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, "released"),
            Err(e) => {
                error!(namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, error = %format!("{e:#}"), "release failed")
            }
        }
        true
    }

    pub fn release_all(&self) {
        let recs = self.registry.drain();
        let mut enf = self.enforcer.lock().unwrap();
        for rec in recs {
            if rec.mode == Mode::Learn {
                if let Err(e) = self.write_learned(&enf, &rec) {
                    error!(namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, error = %format!("{e:#}"), "writing the learned profile failed");
                }
            }
            let _ = enf.release(rec.cgroup_id);
        }
    }

    /// Reports per-container keys that named no container (once per pod; see pod_keys.rs).
    pub fn check_pod_keys(&self, removed_pod: Option<&str>) {
        for _ in self.pod_keys.check(std::time::Instant::now(), removed_pod) {
            self.ops.metrics.unmatched_container_key();
        }
    }

    /// Logs every kernel event with the pod and container it belongs to (structured, rate
    /// limited per container: ops::report).
    fn log_events(self: Arc<Self>, pin_dir: PathBuf) {
        let r = events::read(&pin_dir, true, None, |ev| {
            let who = self.registry.by_cgroup(ev.root_cgroup);
            // The daemon is the ring's only consumer: control-socket subscribers get a copy.
            self.hub.publish(who.as_ref().map(|(id, r)| r.names(id)).as_ref(), &ev);
            self.ops.report.event(&ev, who.as_ref().map(|(_, r)| r.labels()).as_ref());
            true
        });
        if let Err(e) = r {
            error!("event reader stopped: {e:#}");
        }
    }
}

/// For tests and `warden status`: the pinned roots of a pin folder.
pub fn pinned_roots(pin_dir: &Path) -> Result<Vec<u64>> {
    Ok(Maps::open(pin_dir)?.roots().into_iter().map(|(id, _)| id).collect())
}
