//! `warden run`: the NRI plugin. containerd calls it at each container's StartContainer, when
//! the cgroup exists and the entrypoint has not run yet, and waits for the answer: the policy
//! is in the kernel before the workload's first instruction. An error fails the start.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use tracing::{error, info, warn};

use crate::{
    cgroup,
    config::Config,
    enforcer::{Enforcer, Maps, Mode},
    events,
    kernel::probe::Probe,
    nri::{self, Container, Event, EventMask, PodSandbox},
    policy::{self, Pod, Selection},
    profile::{self, CompiledProfile, Profile},
};

/// What the daemon remembers of a container it confined.
#[derive(Debug, Clone)]
pub struct Confined {
    pub cgroup_id: u64,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub profile: String,
    pub mode: Mode,
    /// The cgroup2 directory confined (for `warden status` and `container` look-ups).
    pub cgroup_path: PathBuf,
    /// How the container reached warden: `nri` or `oci-hook`.
    pub via: &'static str,
}

pub struct Daemon {
    pub(crate) cfg: Config,
    pub(crate) probe: Probe,
    pub(crate) cgroup2: PathBuf,
    pub(crate) enforcer: Mutex<Enforcer>,
    /// container id -> what was confined.
    pub(crate) containers: Mutex<HashMap<String, Confined>>,
    /// Subscribers of the control socket's `events` (control.rs).
    pub(crate) hub: crate::control::EventHub,
    /// Denial logs, metrics, reload (hook/src/ops).
    pub ops: crate::ops::Ops,
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
        enforcer.set_idle_grace(std::time::Duration::from_secs(cfg.hook_idle_detach_seconds));
        let ops = crate::ops::Ops::new(&cfg);
        Ok(Daemon {
            cfg,
            probe,
            cgroup2,
            enforcer: Mutex::new(enforcer),
            containers: Mutex::new(HashMap::new()),
            hub: Default::default(),
            ops,
        })
    }

    pub fn confined(&self) -> Vec<(String, Confined)> {
        self.containers.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Finds `<name>.json` in the profile folders (first wins), resolves `extends` with the
    /// same folders, and compiles it.
    pub fn load_profile(&self, name: &str) -> Result<CompiledProfile> {
        policy::valid_profile_name(name).map_err(|e| anyhow!(e))?;
        let search = profile::resolve::SearchPath { dirs: self.cfg.profile_dirs.clone() };
        let path = search.find(name).map_err(|e| anyhow!("unknown profile: {e}"))?;
        let p = profile::resolve::load_file(&path, &search)?.into_profile()?;
        let c = profile::compile(&p).with_context(|| format!("profile {name} ({})", path.display()))?;
        self.probe.check_profile(&c)?;
        self.ops.note_profile(name, &c.name);
        Ok(c)
    }

    fn pod(p: &PodSandbox) -> Pod {
        Pod {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            uid: p.uid.clone(),
            annotations: p.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// Selects, compiles and applies the container's policy. `Ok(None)`: not confined.
    pub fn confine(&self, pod: &PodSandbox, c: &Container) -> Result<Option<Confined>> {
        let sel = policy::select(&self.cfg.policy, &Self::pod(pod), &c.name)?;
        let (profile, mode, source) = match sel {
            Selection::Unconfined(why) => {
                tracing::debug!(namespace = %pod.namespace, pod = %pod.name, container = %c.name, why, "not confined");
                return Ok(None);
            }
            Selection::Confine { profile, mode, source } => (profile, mode, source),
        };
        // Until applied: a reload waits (ops::Ops::profiles_read).
        let _gate = self.ops.profiles_read();
        let compiled = match &profile {
            Some(name) => self
                .load_profile(name)
                .inspect_err(|_| self.ops.metrics.profile_error("start"))
                .with_context(|| format!("annotation {source}"))?,
            // Learn mode without a profile: an empty one; learn allows and records everything.
            None => profile::compile(&Profile::from_json(r#"{"name":"learning"}"#)?)?,
        };
        let cgroups_path = c.linux.as_ref().map(|l| l.cgroups_path.as_str()).unwrap_or("");
        let dir = cgroup::resolve_cgroups_path(&self.cgroup2, cgroups_path)?;
        if !dir.is_dir() {
            return Err(anyhow!("cgroup directory {} does not exist (cgroups path {cgroups_path:?})", dir.display()));
        }
        let cgroup_id = self.enforcer.lock().unwrap().apply(&dir, &compiled, mode)?;
        let rec = Confined {
            cgroup_id,
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            container: c.name.clone(),
            profile: compiled.name.clone(),
            mode,
            cgroup_path: dir,
            via: "nri",
        };
        self.containers.lock().unwrap().insert(c.id.clone(), rec.clone());
        Ok(Some(rec))
    }

    /// StartContainer: confine or refuse (or, fail-open, warn and let it start).
    fn start(&self, pod: &PodSandbox, c: &Container) -> Result<(), String> {
        let t = Instant::now();
        let r = self.start_inner(pod, c, t);
        self.ops.metrics.nri_request("start_container", t.elapsed());
        r
    }

    fn start_inner(&self, pod: &PodSandbox, c: &Container, t: Instant) -> Result<(), String> {
        match self.confine(pod, c) {
            Ok(Some(r)) => {
                info!(namespace = %r.namespace, pod = %r.pod, container = %r.container, container_id = %c.id,
                      profile = %r.profile, mode = r.mode.as_str(), cgroup_id = r.cgroup_id,
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
                if self.cfg.fail_open {
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

    /// Writes the profile learned for `rec` into `learn_dir` (learn mode only).
    pub fn write_learned(&self, enf: &Enforcer, rec: &Confined) -> Result<PathBuf> {
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
        // Write then rename: a reader never sees half a profile.
        let tmp = self.cfg.learn_dir.join(format!(".{name}.json.tmp"));
        std::fs::write(&tmp, serde_json::to_string_pretty(&g.profile)? + "\n")
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        if g.truncated > 0 {
            warn!(namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, truncated = g.truncated, file = %path.display(),
                  "learned profile is INCOMPLETE: the per-container bound was reached");
        }
        Ok(path)
    }

    fn release(&self, c: &Container) {
        self.release_id(&c.id);
    }

    /// Releases the container `id` (NRI stop/remove, or the OCI hook's poststop); false when
    /// it was not confined.
    pub fn release_id(&self, id: &str) -> bool {
        let rec = self.containers.lock().unwrap().remove(id);
        let Some(rec) = rec else { return false };
        self.hub.remember_released(id, &rec);
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
        self.ops.metrics.released(enf.maps(), &rec);
        match enf.release(rec.cgroup_id) {
            Ok(_) => info!(namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, "released"),
            Err(e) => {
                error!(namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, error = %format!("{e:#}"), "release failed")
            }
        }
        true
    }

    /// Synchronize: confine containers that already run, drop pinned entries of containers
    /// that no longer exist.
    fn synchronize(&self, pods: &[PodSandbox], containers: &[Container]) -> Result<(), String> {
        let by_id: HashMap<&str, &PodSandbox> = pods.iter().map(|p| (p.id.as_str(), p)).collect();
        let mut live = std::collections::BTreeSet::new();
        for c in containers {
            let Some(pod) = by_id.get(c.pod_sandbox_id.as_str()) else { continue };
            match self.confine(pod, c) {
                Ok(Some(r)) => {
                    info!(namespace = %r.namespace, pod = %r.pod, container = %r.container, profile = %r.profile, "confined (synchronize)");
                    live.insert(r.cgroup_id);
                }
                Ok(None) => {}
                // A running container cannot be refused any more: say so loudly, and keep
                // whatever policy is pinned for it (fail closed, never drop it as stale).
                Err(e) => {
                    error!(namespace = %pod.namespace, pod = %pod.name, container = %c.name, error = %format!("{e:#}"), "cannot confine running container; keeping its pinned policy if any");
                    let path = c.linux.as_ref().map(|l| l.cgroups_path.as_str()).unwrap_or("");
                    if let Ok(id) =
                        cgroup::resolve_cgroups_path(&self.cgroup2, path).and_then(|d| cgroup::cgroup_id(&d))
                    {
                        live.insert(id);
                    }
                }
            }
        }
        // Containers confined through the OCI hook are not NRI's: never stale here.
        live.extend(self.containers.lock().unwrap().values().filter(|r| r.via == "oci-hook").map(|r| r.cgroup_id));
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

    pub fn release_all(&self) {
        let recs: Vec<Confined> = self.containers.lock().unwrap().drain().map(|(_, r)| r).collect();
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

    /// Logs every kernel event with the pod and container it belongs to (structured, rate
    /// limited per container: ops::report).
    fn log_events(self: Arc<Self>, pin_dir: PathBuf) {
        let r = events::read(&pin_dir, true, None, |ev| {
            // The daemon is the ring's only consumer: control-socket subscribers get a copy.
            self.hub.publish(&self.containers.lock().unwrap(), &ev);
            let who = self.containers.lock().unwrap().values().find(|r| r.cgroup_id == ev.root_cgroup).cloned();
            self.ops.report.event(&ev, who.as_ref());
            true
        });
        if let Err(e) = r {
            error!("event reader stopped: {e:#}");
        }
    }
}

impl nri::Handler for Daemon {
    fn events(&self) -> EventMask {
        EventMask::of(&[
            Event::RunPodSandbox,
            Event::StartContainer,
            Event::StopContainer,
            Event::RemoveContainer,
            Event::RemovePodSandbox,
        ])
    }
    fn on_synchronize(&self, pods: &[PodSandbox], containers: &[Container]) -> Result<(), String> {
        self.synchronize(pods, containers)
    }
    fn on_start_container(&self, pod: &PodSandbox, c: &Container) -> Result<(), String> {
        self.start(pod, c)
    }
    fn on_stop_container(&self, _pod: &PodSandbox, c: &Container) -> Result<(), String> {
        self.release(c);
        Ok(())
    }
    fn on_remove_container(&self, _pod: &PodSandbox, c: &Container) -> Result<(), String> {
        self.release(c);
        Ok(())
    }
}

/// Runs the plugin until SIGTERM/SIGINT (or the runtime shuts it down). Enforcement stays
/// pinned on exit unless `release_on_exit`.
pub fn run(cfg: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // SIGHUP (reload) handled from the start: its default action would end the daemon.
    let hup = crate::ops::hangup_signal(&rt)?;
    let release_on_exit = cfg.release_on_exit;
    let pin_dir = cfg.pin_dir.clone();
    let endpoint = nri::Endpoint::from_env_or(cfg.nri.socket_path.clone())?;
    let opts = nri::PluginOptions::from_env_or(&cfg.nri.plugin_name, &cfg.nri.plugin_index)?;
    let nri_enabled = cfg.nri.enabled;
    let control_socket = cfg.control_socket.clone();
    crate::ops::privs::check_start()?;
    let metrics = cfg.metrics_address.as_deref().map(crate::ops::metrics::bind).transpose()?;
    let watcher = if cfg.watch_profiles { crate::ops::reload::watch(&cfg.profile_dirs)? } else { None };
    let drop_caps = cfg.drop_capabilities;
    let daemon = Arc::new(Daemon::new(cfg)?);
    // Before any other thread exists: capabilities are per thread and inherited.
    if drop_caps {
        crate::ops::privs::drop_to_kept()?;
    }
    // Removes the socket file when `run` returns. Without NRI the socket is the only way in:
    // fatal. With NRI, enforcing containerd's containers matters more than `warden status`.
    let _control = match crate::control::serve(daemon.clone(), &control_socket) {
        Ok(s) => Some(s),
        Err(e) if nri_enabled => {
            error!(error = %format!("{e:#}"), "control socket NOT available (status, events and oci-hook will not reach this daemon); NRI enforcement continues");
            None
        }
        Err(e) => return Err(e),
    };
    if let Some(w) = watcher {
        let d = daemon.clone();
        std::thread::Builder::new().name("profile-watch".into()).spawn(move || w.run(d))?;
    }
    {
        let d = daemon.clone();
        std::thread::Builder::new().name("events".into()).spawn(move || d.log_events(pin_dir))?;
    }
    info!(?endpoint, "warden running");
    let d = daemon.clone();
    rt.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        crate::ops::spawn_tasks(&d, hup, metrics);
        let nri_plugin = async move {
            if !nri_enabled {
                warn!("NRI disabled (nri.enabled = false): containers are confined only through the control socket (warden oci-hook)");
                return std::future::pending().await;
            }
            nri::run_with_reconnect(endpoint, opts, d, Duration::from_secs(5), |p| info!(plugin = %p.name(), "registered with the runtime")).await
        };
        tokio::select! {
            r = nri_plugin => {
                info!(exit = ?r, "NRI plugin stopped");
            }
            _ = term.recv() => info!("SIGTERM"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT"),
        }
        anyhow::Ok(())
    })?;
    if release_on_exit {
        info!("releasing every confined container (release_on_exit)");
        daemon.release_all();
    } else {
        info!("exiting; enforcement stays pinned");
    }
    Ok(())
}

/// For tests and `warden status`: the pinned roots of a pin folder.
pub fn pinned_roots(pin_dir: &Path) -> Result<Vec<u64>> {
    Ok(Maps::open(pin_dir)?.roots().into_iter().map(|(id, _)| id).collect())
}
