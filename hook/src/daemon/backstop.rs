//! The fail-closed backstop of NRI confinement (issue 17).
//!
//! containerd drops an NRI plugin that answers too slowly or whose connection breaks, and then
//! starts containers WITHOUT it. So warden does not rely on NRI's StartContainer alone:
//!
//! 1. At **CreateContainer** (NRI) the daemon selects the container's policy. For a container
//!    it will confine, it stores a *pending* start (the pod, the container, its cgroups path)
//!    and answers with an adjustment adding an OCI `createRuntime` hook:
//!    `warden --socket SOCK oci-hook --backstop`.
//! 2. containerd's StartContainer then runs `runc create`, which makes the cgroup, puts the
//!    container's init in it and runs the hook **before** the entrypoint can run. The hook
//!    sends `confine {backstop: true, id, pid, cgroup}` over the control socket; the daemon
//!    confines the cgroup NRI named (which must be the one the hook found the init in) from
//!    the pending start ([`Daemon::backstop_confine`]) and answers. The hook exits non-zero,
//!    and `runc create` fails the start, when the daemon cannot be reached, refuses, or holds
//!    no pending start for the id (it restarted in between).
//! 3. The policy is written *waiting for the exec* (cgroup_flags::ARM_AT_EXEC): runc init still
//!    has its own set-up to do in the cgroup (pivot_root, mounts, hostname, capabilities,
//!    setuid), which no workload profile allows and which must not be judged or learned. NRI's
//!    **StartContainer** follows, when runc init waits at its exec fifo: the daemon arms the
//!    policy then ([`Daemon::confined_by_backstop`]), so the entrypoint's exec is judged too.
//!    Should StartContainer never reach warden (it crashed, containerd dropped it), the kernel
//!    arms the policy itself at the first exec in the cgroup (`warden_exec_arm`,
//!    sched_process_exec), before the entrypoint runs an instruction; its exec alone is then
//!    not judged by the exec rules.
//!
//! So a warden that is down, crashed, restarting or dropped by containerd between
//! CreateContainer and the start means "does not start" or "starts confined", never "runs
//! unconfined"; kubelet retries a refused container. What the backstop cannot cover: a warden
//! that is not connected at CreateContainer adds no hook (docs/operations.md has the whole
//! table). Exempt from the hook are exactly the containers warden does not confine (its own
//! namespace, `excluded_namespaces`, no profile); `[nri] backstop = false` turns it off.
//!
//! The profile is compiled at CreateContainer (so a refusal carries its reason even under crun,
//! which drops a hook's output) and cached by content: the hook's request finds it compiled.
//! The compile is bounded (the per-profile limits are checked on the counts before any per-rule
//! work: 18 ms for a profile at every limit, oversize ones refused in ~0.2 s, release build), so
//! it cannot make containerd drop warden at its NRI timeout.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use tracing::{debug, info};

use super::confine::{CgroupOf, Target, Via};
use super::{ConfinedContainer, Daemon};
use crate::cgroup;
use crate::control::ConfineRequest;
use crate::nri::{self, Container, PodSandbox};
use crate::policy::{self, Selection};

/// A created container warden will confine at its createRuntime hook.
#[derive(Debug, Clone)]
pub struct PendingStart {
    pub target: Target,
    pub created: Instant,
}

/// Pending starts by container id. Bounded: containers created and never started (kubelet gave
/// up, the pod was deleted while warden was away) are dropped after [`PENDING_TTL`], and at
/// most [`MAX_PENDING`] are kept (the oldest goes first). A dropped entry only means that
/// container's start is refused (fail closed) if it ever comes.
#[derive(Default)]
pub struct Pending {
    by_id: Mutex<HashMap<String, PendingStart>>,
}

pub const PENDING_TTL: Duration = Duration::from_secs(30 * 60);
pub const MAX_PENDING: usize = 4096;

impl Pending {
    pub fn insert(&self, id: String, target: Target) {
        let mut m = self.by_id.lock().unwrap();
        let now = Instant::now();
        m.retain(|_, p| now.duration_since(p.created) < PENDING_TTL);
        while m.len() >= MAX_PENDING {
            let Some(oldest) = m.iter().min_by_key(|(_, p)| p.created).map(|(k, _)| k.clone()) else { break };
            m.remove(&oldest);
        }
        m.insert(id, PendingStart { target, created: now });
    }

    pub fn take(&self, id: &str) -> Option<PendingStart> {
        self.by_id.lock().unwrap().remove(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The hook's timeout (seconds) as given to the runtime: the hook's own request waits 30 s.
const HOOK_TIMEOUT_SECONDS: i64 = 35;

impl Daemon {
    /// The path the runtime executes for the hook: `[nri] hook_binary`, else this executable.
    /// A binary replaced by an upgrade while the daemon runs reads as "PATH (deleted)"; the
    /// new file at PATH is the one to run.
    pub fn hook_binary(&self) -> Result<PathBuf> {
        if let Some(b) = &self.cfg.nri.hook_binary {
            return Ok(b.clone());
        }
        let exe = std::env::current_exe().map_err(|e| anyhow!("finding the daemon's executable for the hook: {e}"))?;
        let s = exe.to_string_lossy();
        Ok(PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s)))
    }

    /// CreateContainer: the backstop hook for a container warden will confine, none otherwise.
    /// A policy refusal is answered here already (the container is not created); fail_open
    /// covers what it covers at StartContainer.
    pub(crate) fn on_create(
        &self,
        pod: &PodSandbox,
        c: &Container,
    ) -> Result<Option<nri::ContainerAdjustment>, String> {
        if !self.cfg.nri.backstop {
            return Ok(None);
        }
        let t = Target::nri(pod, c);
        let (profile, mode, source, rule, baseline) = match policy::select(&self.cfg.policy, &t.pod, &t.container) {
            Ok(Selection::Unconfined(_)) => return Ok(None),
            Ok(Selection::Confine { profile, mode, source, rule, baseline }) => (profile, mode, source, rule, baseline),
            Err(e) if self.cfg.fail_open && !e.violation => return Ok(None),
            Err(e) => return Err(format!("warden: {e}")),
        };
        // The policy itself is checked here too (unknown or invalid profile, a layer the kernel
        // lacks), so a refusal reaches the user as containerd's NRI error, with its reason. At
        // the hook it would only be an exit status under crun, which discards a hook's output
        // ("error executing hook ... (exit code: 1)"); runc passes it on. The compile is cached
        // by content (a profile at every limit: 18 ms): the hook's request reads and hashes the
        // file again but finds it compiled, and the CreateContainer answer stays far inside
        // containerd's NRI timeout.
        {
            let _gate = self.ops.profiles_read();
            if let Err(e) =
                self.compile_selected(profile.as_deref(), baseline.as_deref(), mode, &source, &rule, "create")
            {
                if self.cfg.fail_open {
                    // StartContainer meets the same error and says FAIL-OPEN loudly.
                    return Ok(None);
                }
                return Err(format!(
                    "warden: pod {}/{}, container {}: {e:#}",
                    t.pod.namespace, t.pod.name, t.container
                ));
            }
        }
        let binary = self.hook_binary().map_err(|e| format!("warden: {e:#}"))?;
        let socket = self.cfg.control_socket.to_string_lossy().into_owned();
        let hook = nri::Hook {
            path: binary.to_string_lossy().into_owned(),
            args: vec!["warden".into(), "--socket".into(), socket, "oci-hook".into(), "--backstop".into()],
            env: vec![],
            timeout: Some(nri::OptionalInt { value: HOOK_TIMEOUT_SECONDS }),
        };
        debug!(namespace = %pod.namespace, pod = %pod.name, container = %c.name, container_id = %c.id, "backstop hook added");
        self.pending.insert(c.id.clone(), t);
        Ok(Some(nri::ContainerAdjustment {
            annotations: HashMap::new(),
            hooks: Some(nri::Hooks { prestart: vec![], create_runtime: vec![hook] }),
        }))
    }

    /// The backstop hook's request: confine the pid's cgroup from the pending start, or say
    /// that it is confined already; refuse otherwise.
    pub(crate) fn backstop_confine(&self, r: &ConfineRequest) -> Result<Option<ConfinedContainer>> {
        super::oci::valid_container_id(&r.id)?;
        if let Some(rec) = self.registry.get(&r.id) {
            // A second run of the hook (a runtime retry) for the same cgroup is fine.
            if r.cgroup.as_ref() != Some(&rec.cgroup_path) {
                anyhow::bail!(
                    "container {} is confined at {}, but the hook found its init (pid {}) in {:?}",
                    r.id,
                    rec.cgroup_path.display(),
                    r.pid,
                    r.cgroup
                );
            }
            return Ok(Some(rec));
        }
        let Some(p) = self.pending.take(&r.id) else {
            anyhow::bail!(
                "container {}: warden has no pending start for it (the daemon restarted, or was not \
                 connected, between the container's CreateContainer and its start): refused, fail \
                 closed; the kubelet creates it again",
                r.id
            );
        };
        let mut t = p.target;
        t.arm_at_exec = true;
        let who = format!("pod {}/{}, container {}", t.pod.namespace, t.pod.name, t.container);
        self.backstop_apply(&mut t, r, p.created).with_context(|| who)
    }

    fn backstop_apply(
        &self,
        t: &mut Target,
        r: &ConfineRequest,
        created: Instant,
    ) -> Result<Option<ConfinedContainer>> {
        // The cgroup confined is the one NRI named at CreateContainer, which runc has made by
        // now; the hook (in the runtime's namespaces) read where the container's init really is
        // and the two must agree. The daemon does not read /proc/PID itself here: in the
        // DaemonSet it runs in its own pid namespace, where the runtime's pid means nothing.
        // A runtime that sent no cgroups path is refused: the pid alone cannot be trusted
        // from a peer the daemon may not see (control/peer.rs, Access::Tighten).
        match &t.cgroup {
            CgroupOf::CgroupsPath(s) if !s.is_empty() => {
                let named = cgroup::resolve_cgroups_path(&self.cgroup2, s)?;
                if r.cgroup.as_ref() != Some(&named) {
                    anyhow::bail!(
                        "the hook found the container's init (pid {}) in {:?}, not in the cgroup NRI named, {}",
                        r.pid,
                        r.cgroup,
                        named.display()
                    );
                }
            }
            _ => anyhow::bail!("NRI named no cgroups path for this container at CreateContainer"),
        }
        let rec = self.confine(t, Via::Nri)?;
        if let Some(rec) = &rec {
            info!(namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, container_id = %r.id,
                  profile = %rec.profile, mode = rec.mode.as_str(), cgroup_id = rec.cgroup_id,
                  waited_ms = created.elapsed().as_millis() as u64, "confined (createRuntime backstop)");
        }
        Ok(rec)
    }

    /// StartContainer of a container the backstop confined: arms its policy now (the runtime's
    /// init is done with its set-up and waits to exec the entrypoint, which the exec rules then
    /// judge too) and returns true; false when the backstop did not confine it; an error when
    /// it is confined at another cgroup than NRI names.
    pub(crate) fn confined_by_backstop(&self, c: &Container) -> Result<bool> {
        self.pending.take(&c.id);
        let Some(rec) = self.registry.get(&c.id) else { return Ok(false) };
        let dir = cgroup::resolve_cgroups_path(&self.cgroup2, c.cgroups_path())?;
        if dir != rec.cgroup_path {
            anyhow::bail!(
                "container {} was confined at {} by its createRuntime hook, but NRI names cgroup {}",
                c.id,
                rec.cgroup_path.display(),
                dir.display()
            );
        }
        self.enforcer.lock().unwrap().arm(rec.cgroup_id)?;
        Ok(true)
    }
}
