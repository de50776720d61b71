//! `warden oci-hook`: confinement for runtimes without NRI (CRI-O, Podman, plain runc).
//!
//! As an OCI `createRuntime` hook it runs after the runtime made the container's cgroup and
//! put its init process in it, and before the entrypoint is executed (`runc create` runs the
//! hook, `runc start` execs the entrypoint): the daemon confines that cgroup and only then does
//! the hook return, so there is no window where the workload runs unconfined. As `poststop` it
//! asks the daemon to release the container.
//!
//! Fail closed: if the daemon refuses (unknown profile, bad annotation, missing kernel layer) or
//! cannot be reached, the hook exits non-zero and the runtime fails the start. `--fail-open`
//! turns the unreachable/refused cases into a loud warning and exit 0.
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use oci_spec::runtime::{ContainerState, Spec, State};

use crate::control::{Client, ConfineRequest, Request};

/// The stage the hook runs at: from `--stage`, else from the state's status (`creating` at
/// createRuntime, or `created` as crun says there; `stopped` at poststop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    #[value(name = "createRuntime")]
    CreateRuntime,
    #[value(name = "poststop")]
    Poststop,
}

pub struct Options {
    pub socket: PathBuf,
    pub stage: Option<Stage>,
    pub fail_open: bool,
    /// Annotation prefix (without `/`) that marks a container as warden's business.
    pub annotation_prefix: String,
    /// The NRI backstop (daemon/backstop.rs): added by warden itself at CreateContainer, so the
    /// container is warden's whatever its annotations; the daemon confines it from what it
    /// stored then. No fail-open: the hook exists to refuse a start warden cannot vouch for.
    pub backstop: bool,
}

/// Reads the state from stdin and does the stage's work. Errors are for the runtime to show.
pub fn run(opts: &Options) -> Result<()> {
    let mut text = String::new();
    std::io::stdin().take(4 << 20).read_to_string(&mut text).context("reading the container state on stdin")?;
    run_state(opts, &text)
}

/// `run` with the state JSON given.
pub fn run_state(opts: &Options, text: &str) -> Result<()> {
    let state: State = serde_json::from_str(text).context("the container state on stdin is not OCI state JSON")?;
    let stage = match (opts.stage, state.status()) {
        (Some(s), _) => s,
        // The spec says `creating` at createRuntime (runc); crun (1.8 to 1.21 at least) says
        // `created` there. Both mean: the init process exists, the entrypoint has not run.
        (None, ContainerState::Creating | ContainerState::Created) => Stage::CreateRuntime,
        (None, ContainerState::Stopped) => Stage::Poststop,
        (None, other) => bail!(
            "container {}: state {other} is neither createRuntime (creating) nor poststop (stopped); pass --stage",
            state.id()
        ),
    };
    match stage {
        Stage::CreateRuntime if opts.backstop => backstop(opts, &state),
        Stage::Poststop if opts.backstop => bail!("--backstop is a createRuntime hook, not {stage:?}"),
        Stage::CreateRuntime => create(opts, &state),
        Stage::Poststop => poststop(opts, &state),
    }
}

/// The container's annotations: the bundle's config.json, overlaid with the state's (the
/// runtime spec says they are the same map). An unreadable config.json is an error unless the
/// state already carries the annotations.
fn annotations(state: &State, prefix: &str) -> Result<(BTreeMap<String, String>, Option<PathBuf>)> {
    let mut ann = BTreeMap::new();
    let mut cgroups_path = None;
    let from_state: BTreeMap<String, String> = state.annotations().clone().unwrap_or_default().into_iter().collect();
    let bundle = state.bundle();
    if !bundle.as_os_str().is_empty() {
        let cfg = bundle.join("config.json");
        match Spec::load(&cfg) {
            Ok(spec) => {
                if let Some(a) = spec.annotations() {
                    ann.extend(a.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
            }
            Err(e) if from_state.keys().any(|k| k.starts_with(prefix)) => {
                eprintln!("warden oci-hook: note: {}: {e}; using the state's annotations", cfg.display());
            }
            Err(e) => return Err(e).with_context(|| format!("reading the bundle's {}", cfg.display())),
        }
    }
    ann.extend(from_state);
    Ok((ann, cgroups_path))
}

fn create(opts: &Options, state: &State) -> Result<()> {
    let id = state.id();
    let prefix = format!("{}/", opts.annotation_prefix);
    let (ann, cgroups_path) = annotations(state, &prefix)?;
    if !ann.keys().any(|k| k.starts_with(&prefix)) {
        // Not ours (the hooks.d `when` normally keeps us from even running).
        return Ok(());
    }
    let pid = state
        .pid()
        .ok_or_else(|| anyhow!("container {id}: the state has no pid (is this the createRuntime stage?)"))?;
    // /proc/PID/cgroup is where the process really is, whatever the cgroup driver; config's
    // cgroupsPath only says where the runtime meant to put it (kept for the error message).
    let mount = crate::cgroup::cgroup2_mount()?;
    let cgroup = crate::cgroup::cgroup_of_pid(&mount, pid).with_context(|| {
        format!(
            "container {id}: finding its cgroup (config cgroupsPath {:?})",
            cgroups_path.as_deref().unwrap_or(Path::new(""))
        )
    })?;
    let req = Request::Confine(ConfineRequest {
        id: id.clone(),
        pid,
        cgroup: Some(cgroup),
        annotations: ann,
        backstop: false,
    });
    let answer = ask(&opts.socket, &req);
    match answer {
        Ok(v) => {
            if let Some(msg) = v["fail_open"].as_str() {
                eprintln!("warden oci-hook: WARNING: container {id} starts UNCONFINED (the daemon's fail_open): {msg}");
            }
            Ok(())
        }
        // --fail-open is for a daemon that cannot answer, never for the operator's rules.
        Err(e) if opts.fail_open && !e.downcast_ref::<crate::control::Refusal>().is_some_and(|r| r.violation) => {
            eprintln!("warden oci-hook: WARNING: container {id} starts UNCONFINED because of --fail-open: {e:#}");
            Ok(())
        }
        Err(e) => Err(e.context(format!("container {id} not started: warden could not confine it (fail closed)"))),
    }
}

/// The daemon's answer to a confine request (an error if it cannot be reached or refuses).
fn ask(socket: &Path, req: &Request) -> Result<serde_json::Value> {
    Client::connect(socket).and_then(|c| match c {
        Some(mut c) => c.request(req, Duration::from_secs(30)),
        None => Err(anyhow!("the warden daemon is not running (no control socket at {})", socket.display())),
    })
}

fn backstop(opts: &Options, state: &State) -> Result<()> {
    let id = state.id();
    let refused = |e: anyhow::Error| {
        e.context(format!(
            "container {id} not started: warden's createRuntime backstop could not confirm its confinement (fail closed)"
        ))
    };
    let pid = state
        .pid()
        .ok_or_else(|| anyhow!("container {id}: the state has no pid (is this the createRuntime stage?)"))
        .map_err(refused)?;
    let cgroup = crate::cgroup::cgroup2_mount()
        .and_then(|m| crate::cgroup::cgroup_of_pid(&m, pid))
        .with_context(|| format!("container {id}: finding its cgroup"))
        .map_err(refused)?;
    let req = Request::Confine(ConfineRequest {
        id: id.clone(),
        pid,
        cgroup: Some(cgroup),
        annotations: BTreeMap::new(),
        backstop: true,
    });
    let v = ask(&opts.socket, &req).map_err(refused)?;
    if let Some(msg) = v["fail_open"].as_str() {
        eprintln!("warden oci-hook: WARNING: container {id} starts UNCONFINED (the daemon's fail_open): {msg}");
    }
    Ok(())
}

fn poststop(opts: &Options, state: &State) -> Result<()> {
    let id = state.id();
    // The bundle may be gone by now; the state's own annotations still say whether it is ours.
    let prefix = format!("{}/", opts.annotation_prefix);
    let ann = annotations(state, &prefix)
        .map(|(a, _)| a)
        .unwrap_or_else(|_| state.annotations().clone().unwrap_or_default().into_iter().collect());
    if !ann.keys().any(|k| k.starts_with(&prefix)) {
        return Ok(());
    }
    let r = ask(&opts.socket, &Request::Release { id: id.clone() });
    match r {
        Ok(_) => Ok(()),
        Err(e) if opts.fail_open => {
            eprintln!("warden oci-hook: WARNING: container {id}: release failed (--fail-open): {e:#}");
            Ok(())
        }
        // No runtime tells a daemon later that this container is gone (NRI's Synchronize does
        // that for containerd): say how to drop the entry by hand.
        Err(e) => Err(e.context(format!(
            "container {id}: release failed; its pinned entry stays until `warden release --cgroup-id`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(fail_open: bool) -> Options {
        Options {
            socket: "/nonexistent/warden.sock".into(),
            stage: None,
            fail_open,
            annotation_prefix: "warden.io".into(),
            backstop: false,
        }
    }

    fn state(status: &str, ann: &str) -> String {
        format!(r#"{{"ociVersion":"1.0.2","id":"c1","status":"{status}","pid":1,"bundle":"","annotations":{ann}}}"#)
    }

    #[test]
    fn unannotated_containers_need_no_daemon() {
        run_state(&opts(false), &state("creating", "{}")).unwrap();
        run_state(&opts(false), &state("creating", r#"{"other.io/x":"y"}"#)).unwrap();
        run_state(&opts(false), &state("stopped", "{}")).unwrap();
    }

    #[test]
    fn annotated_without_daemon_fails_closed_unless_fail_open() {
        for status in ["creating", "created"] {
            let s = state(status, r#"{"warden.io/profile":"web"}"#);
            let e = format!("{:#}", run_state(&opts(false), &s).unwrap_err());
            assert!(e.contains("container c1 not started") && e.contains("daemon is not running"), "{status}: {e}");
            run_state(&opts(true), &s).unwrap();
        }
        let e =
            format!("{:#}", run_state(&opts(false), &state("stopped", r#"{"warden.io/profile":"web"}"#)).unwrap_err());
        assert!(e.contains("release failed"), "{e}");
    }

    /// The backstop hook refuses without a daemon whatever the annotations say (none here) and
    /// even with --fail-open: it exists because warden put it there.
    #[test]
    fn backstop_without_daemon_refuses_the_start() {
        let mut o = opts(true);
        o.backstop = true;
        // `created`: what crun hands a createRuntime hook (runc: `creating`).
        for status in ["creating", "created"] {
            let e = format!("{:#}", run_state(&o, &state(status, "{}")).unwrap_err());
            assert!(e.contains("container c1 not started") && e.contains("backstop"), "{status}: {e}");
        }
        let e = format!("{:#}", run_state(&o, &state("stopped", "{}")).unwrap_err());
        assert!(e.contains("--backstop is a createRuntime hook"), "{e}");
    }

    #[test]
    fn stage_and_input_errors_are_clear() {
        let e = format!("{:#}", run_state(&opts(false), &state("running", "{}")).unwrap_err());
        assert!(e.contains("pass --stage"), "{e}");
        let e = format!("{:#}", run_state(&opts(false), "not json").unwrap_err());
        assert!(e.contains("not OCI state JSON"), "{e}");
        let mut o = opts(false);
        o.stage = Some(Stage::CreateRuntime);
        run_state(&o, &state("running", "{}")).unwrap();
    }
}
