//! The one way a container gets confined, whoever asks: NRI's StartContainer, NRI's
//! Synchronize, or `warden oci-hook` over the control socket. A new rule for starting
//! containers belongs here, once.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use tracing::{debug, info, warn};

use super::oci::{self, OciRecord};
use super::{ConfinedContainer, Daemon};
use crate::cgroup;
use crate::control::ConfineRequest;
use crate::enforcer::{Arming, Mode};
use crate::nri::{Container, PodSandbox};
use crate::policy::{self, Pod, Selection};
use crate::profile::{self, CompiledProfile, Profile};

/// Who asks for a container's confinement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// NRI StartContainer: the runtime waits for the answer before the entrypoint runs.
    Nri,
    /// NRI Synchronize: the container already runs (daemon start, reconnection).
    Synchronize,
    /// `warden oci-hook` at createRuntime, over the control socket.
    OciHook,
}

impl Via {
    /// How the container reached warden, as `status` shows it: `nri` or `oci-hook`.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Nri | Via::Synchronize => "nri",
            Via::OciHook => "oci-hook",
        }
    }
}

/// Where a container's cgroup is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupOf {
    /// The runtime's cgroups path (NRI), resolved under the cgroup2 mount.
    CgroupsPath(String),
    /// The cgroup the container's init process is in (OCI hook), read by the daemon itself;
    /// `claimed` is the one the hook found, which must agree.
    Process { pid: i32, claimed: Option<PathBuf> },
}

/// A container to confine.
#[derive(Debug, Clone)]
pub struct Target {
    /// The runtime's container id.
    pub id: String,
    /// Its pod (names, annotations) as the policy sees it.
    pub pod: Pod,
    /// The container's name in its pod.
    pub container: String,
    pub cgroup: CgroupOf,
    /// The runtime's init is still setting the container up (createRuntime): the policy takes
    /// effect at the cgroup's first exec or at StartContainer (cgroup_flags::ARM_AT_EXEC).
    pub arm_at_exec: bool,
}

impl Target {
    pub fn nri(pod: &PodSandbox, c: &Container) -> Target {
        Target {
            id: c.id.clone(),
            pod: Pod {
                name: pod.name.clone(),
                namespace: pod.namespace.clone(),
                uid: pod.uid.clone(),
                annotations: pod.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            },
            container: c.name.clone(),
            cgroup: CgroupOf::CgroupsPath(c.cgroups_path().to_string()),
            arm_at_exec: false,
        }
    }

    /// The OCI hook's container: the same annotations and validation as NRI's, names from the
    /// OCI annotations. `None`: a pod's sandbox (pause) container, never confined.
    pub fn oci(r: &ConfineRequest) -> Result<Option<Target>> {
        oci::valid_container_id(&r.id)?;
        let meta = oci::oci_meta(&r.annotations, &r.id);
        if meta.sandbox {
            return Ok(None);
        }
        Ok(Some(Target {
            id: r.id.clone(),
            pod: Pod {
                name: meta.pod,
                namespace: meta.namespace,
                uid: meta.pod_uid,
                annotations: r.annotations.clone(),
            },
            container: meta.container,
            cgroup: CgroupOf::Process { pid: r.pid, claimed: r.cgroup.clone() },
            arm_at_exec: false,
        }))
    }
}

impl Daemon {
    /// Confines `t`, or says why not. In order:
    /// 1. policy: the operator's rules and the pod's annotations select profile and mode, or
    ///    no confinement (`Ok(None)`);
    /// 2. the reload gate is taken (read) until the container is recorded, so a reload waits:
    ///    no container starts with a profile version older than the last reload;
    /// 3. the profile is found, compiled and checked against the kernel's layers (a failure is
    ///    counted in `warden_profile_errors_total{stage="start"}`);
    /// 4. the cgroup is located and checked;
    /// 5. under the registry's lock: an OCI-hook id already confined is refused, the compiled
    ///    profile is applied to the cgroup (pinned maps), an OCI-hook container gets its record
    ///    file (undone if that fails), and the container is recorded.
    ///
    /// Errors name what was wrong; logging, metrics of the request and fail-open are the
    /// caller's (they differ: a refused start, a running container, a hook's answer).
    pub fn confine(&self, t: &Target, via: Via) -> Result<Option<ConfinedContainer>> {
        self.pod_keys.started(&self.cfg.policy, &t.pod, &t.container);
        let (profile, mode, source, rule, baseline) = match policy::select(&self.cfg.policy, &t.pod, &t.container)? {
            Selection::Unconfined(why) => {
                if t.pod.namespace == self.cfg.policy.own_namespace && self.cfg.deny_lists.node_cgroup.is_some() {
                    self.exempt_own(t);
                }
                debug!(namespace = %t.pod.namespace, pod = %t.pod.name, container = %t.container, container_id = %t.id,
                       via = via.as_str(), why, "not confined");
                return Ok(None);
            }
            Selection::Confine { profile, mode, source, rule, baseline } => (profile, mode, source, rule, baseline),
        };
        let _gate = self.ops.profiles_read();
        let compiled = self.compile_selected(profile.as_deref(), baseline.as_deref(), mode, &source, &rule, "start")?;
        // Learning inside a baseline: the kernel records everything and still enforces the
        // baseline (cgroup_flags::FLOOR).
        let floor = baseline.is_some() && mode == Mode::Learn;
        let dir = self.locate(&t.cgroup)?;
        let mut registry = self.registry.lock();
        // A runtime's live container ids are unique: a second createRuntime for a confined id is
        // a mistake or a replay. (NRI's Synchronize re-applies running containers on purpose.)
        if via == Via::OciHook && registry.contains_key(&t.id) {
            bail!("container id {} is already confined", t.id);
        }
        let arming = Arming { floor, at_exec: t.arm_at_exec };
        let cgroup_id = self.enforcer.lock().unwrap().apply_policy(&dir, &compiled, mode, arming)?;
        let rec = ConfinedContainer {
            cgroup_id,
            namespace: t.pod.namespace.clone(),
            pod: t.pod.name.clone(),
            container: t.container.clone(),
            profile: compiled.name.clone(),
            mode,
            cgroup_path: dir,
            via,
            rule,
            baseline,
        };
        if via == Via::OciHook {
            // Without the record a restarted daemon could not release this container at
            // poststop: undo and refuse rather than confine something nobody can find again.
            if let Err(e) = oci::write_record(&self.oci_dir(), &OciRecord::of(&t.id, &rec)) {
                let _ = self.enforcer.lock().unwrap().release(cgroup_id);
                return Err(e.context("recording the container for daemon restarts"));
            }
        }
        registry.insert(t.id.clone(), rec.clone());
        Ok(Some(rec))
    }

    /// [`Self::compile_policy`] for a selection, its errors naming the setting and rule that
    /// chose it and counted in `warden_profile_errors_total{stage}` (CreateContainer's check,
    /// or the confine at a start).
    pub fn compile_selected(
        &self,
        profile: Option<&str>,
        baseline: Option<&str>,
        mode: Mode,
        source: &str,
        rule: &str,
        stage: &str,
    ) -> Result<CompiledProfile> {
        self.compile_policy(profile, baseline, mode)
            .inspect_err(|_| self.ops.metrics.profile_error(stage))
            .with_context(|| format!("{source}, rule {rule:?}"))
    }

    /// The kernel form of a selection: the pod's profile, intersected with the rule's baseline
    /// in enforce; the baseline alone (kept enforced while the kernel records) in learn.
    pub fn compile_policy(&self, profile: Option<&str>, baseline: Option<&str>, mode: Mode) -> Result<CompiledProfile> {
        match (profile, baseline, mode) {
            (_, Some(b), Mode::Learn) => self.load_profile(b).with_context(|| format!("baseline {b}")),
            (_, Some(b), Mode::Complain) => {
                bail!("complain cannot be combined with baseline {b} (refused by config check; the kernel judges one profile per container)")
            }
            (Some(p), Some(b), Mode::Enforce) => self.load_profile(&format!("{p}&{b}")),
            (None, Some(b), Mode::Enforce) => self.load_profile(b).with_context(|| format!("baseline {b}")),
            (Some(p), None, _) => self.load_profile(p),
            // Learn mode without a profile: an empty one; learn allows and records everything.
            (None, None, Mode::Learn) => profile::compile(&Profile::from_json(r#"{"name":"learning"}"#)?),
            (None, None, m) => bail!("mode {} needs a profile", m.as_str()),
        }
    }

    /// The cgroup2 directory of a container, checked.
    /// A container of warden's own namespace is exempt from the node-wide deny lists (it is
    /// not confined either). A failure is logged: the lists then apply to it, which is safe.
    fn exempt_own(&self, t: &Target) {
        let r = self
            .locate(&t.cgroup)
            .and_then(|dir| cgroup::cgroup_id(&dir))
            .and_then(|id| self.enforcer.lock().unwrap().exempt_from_deny_lists(id));
        match r {
            Ok(()) => info!(namespace = %t.pod.namespace, pod = %t.pod.name, container = %t.container,
                            "exempt from the node-wide deny lists (warden's own namespace)"),
            Err(e) => {
                warn!(namespace = %t.pod.namespace, pod = %t.pod.name, container = %t.container, error = %format!("{e:#}"),
                            "could not exempt a container of warden's own namespace from the node-wide deny lists")
            }
        }
    }

    fn locate(&self, c: &CgroupOf) -> Result<PathBuf> {
        match c {
            CgroupOf::CgroupsPath(p) => {
                let dir = cgroup::resolve_cgroups_path(&self.cgroup2, p)?;
                if !dir.is_dir() {
                    return Err(anyhow!("cgroup directory {} does not exist (cgroups path {p:?})", dir.display()));
                }
                Ok(dir)
            }
            CgroupOf::Process { pid, claimed } => {
                if *pid <= 0 {
                    bail!("invalid pid {pid} in the container state");
                }
                let dir = cgroup::cgroup_of_pid(&self.cgroup2, *pid)?;
                if let Some(claimed) = claimed {
                    if *claimed != dir {
                        bail!(
                            "the hook's cgroup {} is not process {pid}'s cgroup {}",
                            claimed.display(),
                            dir.display()
                        );
                    }
                }
                // The root cgroup would be the whole machine.
                if dir == Path::new(&self.cgroup2) {
                    bail!("process {pid} is in the root cgroup: refusing to confine the whole machine (no per-container cgroup; check the runtime's cgroupsPath)");
                }
                Ok(dir)
            }
        }
    }
}
