//! The daemon as containerd's NRI plugin: `nri::Handler`. containerd calls it at each
//! container's StartContainer, when the cgroup exists and the entrypoint has not run yet, and
//! waits for the answer: the policy is in the kernel before the workload's first instruction.
//! An error fails the start.
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use tracing::{error, info, warn};

use super::confine::{Target, Via};
use super::Daemon;
use crate::cgroup;
use crate::nri::{self, Container, Event, EventMask, PodSandbox};
use crate::policy;

impl Daemon {
    /// StartContainer: confine or refuse (or, fail-open, warn and let it start).
    fn start(&self, pod: &PodSandbox, c: &Container) -> Result<(), String> {
        let t = Instant::now();
        // Tests only (debug builds): a StartContainer slower than the runtime's timeout.
        #[cfg(debug_assertions)]
        if let Some(ms) = std::env::var("WARDEN_TEST_START_DELAY_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        // Tests only (debug builds): warden dies at StartContainer, after the backstop hook.
        #[cfg(debug_assertions)]
        if std::env::var_os("WARDEN_TEST_EXIT_AT_START").is_some() {
            error!(container_id = %c.id, "WARDEN_TEST_EXIT_AT_START: exiting at StartContainer");
            std::process::exit(70);
        }
        let r = self.start_inner(pod, c, t);
        self.ops.metrics.nri_request("start_container", t.elapsed());
        r
    }

    fn start_inner(&self, pod: &PodSandbox, c: &Container, t: Instant) -> Result<(), String> {
        // Usually the createRuntime backstop hook confined it a moment ago (backstop.rs).
        let confined = match self.confined_by_backstop(c) {
            Ok(true) => {
                // `micros`: warden's own StartContainer handling (scripts/bench.sh reads it).
                info!(namespace = %pod.namespace, pod = %pod.name, container = %c.name, container_id = %c.id,
                      micros = t.elapsed().as_micros() as u64, "confined by its createRuntime hook already: armed");
                return Ok(());
            }
            Ok(false) => self.confine(&Target::nri(pod, c), Via::Nri),
            Err(e) => Err(e),
        };
        match confined {
            Ok(Some(r)) => {
                info!(namespace = %r.namespace, pod = %r.pod, container = %r.container, container_id = %c.id,
                      profile = %r.profile, mode = r.mode.as_str(), rule = %r.rule, baseline = r.baseline.as_deref(), cgroup_id = r.cgroup_id,
                      micros = t.elapsed().as_micros() as u64, "confined");
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                // A PolicyError names pod, namespace and container itself.
                let msg = match e.downcast_ref::<policy::PolicyError>() {
                    Some(pe) => format!("warden: {pe}"),
                    None => format!("warden: pod {}/{}, container {}: {e:#}", pod.namespace, pod.name, c.name),
                };
                // fail_open never covers a violation of the operator's rules: that would hand
                // the opt-out back to the pod author.
                if self.cfg.fail_open && !policy::is_violation(&e) {
                    warn!(namespace = %pod.namespace, pod = %pod.name, container = %c.name, error = %format!("{e:#}"),
                          "FAIL-OPEN: policy refused but the container starts UNCONFINED (fail_open = true)");
                    Ok(())
                } else {
                    error!(namespace = %pod.namespace, pod = %pod.name, container = %c.name, error = %format!("{e:#}"), "container start refused");
                    Err(msg)
                }
            }
        }
    }

    /// Synchronize: confine containers that already run, drop pinned entries of containers
    /// that no longer exist.
    fn synchronize(&self, pods: &[PodSandbox], containers: &[Container]) -> Result<(), String> {
        let by_id: HashMap<&str, &PodSandbox> = pods.iter().map(|p| (p.id.as_str(), p)).collect();
        let mut live = BTreeSet::new();
        for c in containers {
            let Some(pod) = by_id.get(c.pod_sandbox_id.as_str()) else { continue };
            match self.confine(&Target::nri(pod, c), Via::Synchronize) {
                Ok(Some(r)) => {
                    info!(namespace = %r.namespace, pod = %r.pod, container = %r.container, profile = %r.profile, "confined (synchronize)");
                    live.insert(r.cgroup_id);
                }
                Ok(None) => {}
                // A running container cannot be refused any more: say so loudly, and keep
                // whatever policy is pinned for it (fail closed, never drop it as stale).
                Err(e) => {
                    error!(namespace = %pod.namespace, pod = %pod.name, container = %c.name, error = %format!("{e:#}"), "cannot confine running container; keeping its pinned policy if any");
                    if let Ok(id) = cgroup::resolve_cgroups_path(&self.cgroup2, c.cgroups_path())
                        .and_then(|d| cgroup::cgroup_id(&d))
                    {
                        live.insert(id);
                    }
                }
            }
        }
        // Containers confined through the OCI hook are not NRI's: never stale here.
        live.extend(self.registry.cgroups_via(Via::OciHook));
        let mut enf = self.enforcer.lock().unwrap();
        let stale: Vec<u64> =
            enf.maps().roots().into_iter().map(|(id, _)| id).filter(|id| !live.contains(id)).collect();
        for id in stale {
            info!(cgroup_id = id, "dropping pinned entry of a container that no longer runs");
            if let Err(e) = enf.release(id) {
                error!(cgroup_id = id, error = %format!("{e:#}"), "release of stale entry failed");
            }
        }
        Ok(())
    }
}

impl nri::Handler for Daemon {
    fn events(&self) -> EventMask {
        EventMask::of(&[
            Event::RunPodSandbox,
            Event::CreateContainer,
            Event::StartContainer,
            Event::StopContainer,
            Event::RemoveContainer,
            Event::RemovePodSandbox,
        ])
    }
    fn on_synchronize(&self, pods: &[PodSandbox], containers: &[Container]) -> Result<(), String> {
        self.synchronize(pods, containers)
    }
    fn on_create_container(&self, pod: &PodSandbox, c: &Container) -> Result<Option<nri::ContainerAdjustment>, String> {
        self.on_create(pod, c)
    }
    fn on_start_container(&self, pod: &PodSandbox, c: &Container) -> Result<(), String> {
        self.start(pod, c)
    }
    fn on_stop_container(&self, _pod: &PodSandbox, c: &Container) -> Result<(), String> {
        self.release_id(&c.id);
        Ok(())
    }
    fn on_remove_container(&self, _pod: &PodSandbox, c: &Container) -> Result<(), String> {
        self.release_id(&c.id);
        Ok(())
    }
    /// StartContainer (or CreateContainer) answered with a refusal at the deadline: the
    /// container will not run, so whatever the late handler confined is released.
    fn on_late(&self, event: Event, _pod: &PodSandbox, c: Option<&Container>) {
        if let (Event::StartContainer | Event::CreateContainer, Some(c)) = (event, c) {
            // Also drops the pending start: a refused CreateContainer's hook finds nothing.
            if self.release_id(&c.id) {
                warn!(container_id = %c.id, ?event, "released a container confined after its refused (late) start");
            }
        }
    }
    fn on_remove_pod_sandbox(&self, pod: &PodSandbox) -> Result<(), String> {
        self.check_pod_keys(Some(&pod.uid));
        Ok(())
    }
}
