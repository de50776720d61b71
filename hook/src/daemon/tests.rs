//! The shared confine path on this machine's kernel, through the OCI hook's door
//! (`Via::OciHook`, a `ConfineRequest` as `warden oci-hook` sends it): a real daemon (its own
//! pin folder), a real cgroup with a real process in it, real profile files and reloads.
//! Needs root, cgroup2 and bpffs; skipped otherwise, and under CI=true such a skip fails.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::control::ConfineRequest;

fn runnable() -> bool {
    let mut missing = Vec::new();
    if unsafe { libc::geteuid() } != 0 {
        missing.push("must run as root");
    }
    if cgroup::cgroup2_mount().is_err() {
        missing.push("no cgroup2 mount");
    }
    let c = std::ffi::CString::new("/sys/fs/bpf").unwrap();
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 || st.f_type as i64 != 0xcafe4a11 {
        missing.push("/sys/fs/bpf is not a bpffs mount");
    }
    if missing.is_empty() {
        return true;
    }
    if matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1")) {
        panic!("CI=true and this kernel test cannot run: {}", missing.join("; "));
    }
    eprintln!("SKIPPED (not in CI): {}", missing.join("; "));
    false
}

/// Network only: connect to 127.0.0.1:`port`; each port is another version of the profile.
fn web(port: u16) -> String {
    format!(
        r#"{{"name":"web","network":{{"connect":[{{"cidr":"127.0.0.1/32","ports":[{port}],"protocol":"tcp"}}],"bind":[]}}}}"#
    )
}

fn version_of(json: &str) -> String {
    profile::compile(&profile::Profile::from_json(json).unwrap()).unwrap().version()
}

/// A daemon with its own pins, profile folder and socket folder; cgroups with a sleeping
/// process each. Everything is removed on drop, whatever happened.
struct Fixture {
    daemon: Option<Arc<Daemon>>,
    tmp: tempfile::TempDir,
    pin_dir: PathBuf,
    cgroups: Vec<(PathBuf, Child)>,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let pin_dir = Path::new("/sys/fs/bpf").join(format!("warden-unit-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(tmp.path().join("profiles")).unwrap();
        let cfg = Config {
            pin_dir: pin_dir.clone(),
            profile_dirs: vec![tmp.path().join("profiles")],
            control_socket: tmp.path().join("run/warden.sock"),
            learn_dir: tmp.path().join("learned"),
            ..Config::default()
        };
        let daemon = Daemon::new(cfg).expect("the daemon starts");
        Fixture { daemon: Some(Arc::new(daemon)), tmp, pin_dir, cgroups: Vec::new() }
    }

    fn d(&self) -> &Arc<Daemon> {
        self.daemon.as_ref().unwrap()
    }

    /// Writes the profile file the way an operator's tool would: whole, then renamed.
    fn write_profile(&self, json: &str) {
        let dir = self.tmp.path().join("profiles");
        std::fs::write(dir.join(".web.json.tmp"), json).unwrap();
        std::fs::rename(dir.join(".web.json.tmp"), dir.join("web.json")).unwrap();
    }

    /// A cgroup with a process in it, and the request `warden oci-hook` would send for it.
    fn container(&mut self, id: &str) -> ConfineRequest {
        let mount = cgroup::cgroup2_mount().unwrap();
        let dir = mount.join(format!("warden-unit-{}-{id}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        let pid = child.id() as i32;
        self.cgroups.push((dir.clone(), child));
        ConfineRequest {
            id: id.to_string(),
            pid,
            cgroup: Some(dir),
            annotations: BTreeMap::from([("warden.io/profile".to_string(), "web".to_string())]),
            backstop: false,
        }
    }

    /// The version pinned for the confined root `cgroup_id`.
    fn pinned_version(&self, cgroup_id: u64) -> String {
        let enf = self.d().enforcer.lock().unwrap();
        let pinned = crate::enforcer::list(enf.maps());
        pinned.iter().find(|p| p.cgroup_id == cgroup_id).expect("pinned").version.clone()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.release_all();
        }
        let _ = crate::enforcer::reset(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        for (dir, mut child) in self.cgroups.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
            for _ in 0..50 {
                if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn confine_oci(d: &Daemon, r: &ConfineRequest) -> Result<Option<ConfinedContainer>> {
    d.confine(&Target::oci(r)?.expect("not a sandbox"), Via::OciHook)
}

/// The reload gate through the OCI hook's path: a container whose profile was compiled just
/// before the file changed, and whose confinement is still in progress when the reload runs,
/// ends up with the new version (the reload waits for it and then switches it); one confined
/// after the reload gets the new version directly. Without the gate, the reload would find
/// nothing using the profile and the container would keep the old version.
#[test]
fn a_reload_racing_an_oci_hook_confine_never_leaves_the_old_version() {
    if !runnable() {
        return;
    }
    let (v1, v2) = (web(1001), web(1002));
    let mut f = Fixture::new("race");
    f.write_profile(&v1);
    let racing = f.container("race-1");
    let d = f.d().clone();

    // Stops the confine after it compiled the profile and before it records the container:
    // `load_profile` notes the compiled name under this lock.
    let pause = d.ops.lookup_lock();
    let confining = {
        let d = d.clone();
        std::thread::spawn(move || confine_oci(&d, &racing))
    };
    // Until the confine holds the gate (past policy selection; bounded, so that a missing gate
    // fails below, on what it breaks), then a moment to compile: it then waits on `pause`.
    let t = Instant::now();
    while d.ops.profiles_gate_free() && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));

    f.write_profile(&v2);
    let reloading = {
        let d = d.clone();
        std::thread::spawn(move || d.reload_profiles("test"))
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(!reloading.is_finished(), "the reload must wait for the confine in progress");
    drop(pause);

    let rec = confining.join().unwrap().expect("confined").expect("a profile applies");
    assert_eq!(rec.via, Via::OciHook);
    let reloaded = reloading.join().unwrap();
    assert_eq!(reloaded, Reloaded { changed: vec!["web".into()], failed: vec![] });
    assert_eq!(f.pinned_version(rec.cgroup_id), version_of(&v2), "the racing container runs the new version");

    // After the reload: straight to the new version.
    let after = f.container("after-1");
    let rec = confine_oci(&d, &after).expect("confined").expect("a profile applies");
    assert_eq!(f.pinned_version(rec.cgroup_id), version_of(&v2));
    assert_ne!(version_of(&v1), version_of(&v2));
}

/// The OCI hook's path refuses what NRI's refuses, and counts a profile that does not load as
/// NRI's does (`warden_profile_errors_total{stage="start"}`); a second confine of a live id is
/// refused; the record for daemon restarts is written and removed with the container.
#[test]
fn oci_hook_confine_counts_profile_errors_and_keeps_its_records() {
    if !runnable() {
        return;
    }
    let mut f = Fixture::new("records");
    f.write_profile(&web(1003));
    let d = f.d().clone();
    let mut bad = f.container("bad-1");
    bad.annotations.insert("warden.io/profile".into(), "no-such-profile".into());
    let e = format!("{:#}", confine_oci(&d, &bad).unwrap_err());
    assert!(e.contains("unknown profile"), "{e}");
    let m = d.ops.metrics.encode();
    assert!(m.contains("warden_profile_errors_total{stage=\"start\"} 1"), "{m}");

    let ok = f.container("ok-1");
    confine_oci(&d, &ok).expect("confined").expect("a profile applies");
    let record = d.oci_dir().join("ok-1.json");
    assert!(record.is_file(), "the OCI-hook record is written");
    let e = format!("{:#}", confine_oci(&d, &ok).unwrap_err());
    assert!(e.contains("already confined"), "{e}");
    assert!(d.release_id("ok-1"));
    oci::remove_record(&d.oci_dir(), "ok-1");
    assert!(!record.exists());
}

/// NRI's view of a fixture container: pod `default/web` annotated with profile `web` (unless
/// `annotated` is false), its cgroups path the fixture's cgroup.
fn nri_of(r: &ConfineRequest, annotated: bool) -> (crate::nri::PodSandbox, crate::nri::Container) {
    let mount = cgroup::cgroup2_mount().unwrap();
    let rel = r.cgroup.as_ref().unwrap().strip_prefix(&mount).unwrap().to_owned();
    let mut pod = crate::nri::PodSandbox {
        id: "pod-1".into(),
        name: "web".into(),
        namespace: "default".into(),
        uid: "uid-1".into(),
        ..Default::default()
    };
    if annotated {
        pod.annotations.insert("warden.io/profile".into(), "web".into());
    }
    let c = crate::nri::Container {
        id: r.id.clone(),
        pod_sandbox_id: "pod-1".into(),
        name: "app".into(),
        linux: Some(crate::nri::api::LinuxContainer {
            cgroups_path: format!("/{}", rel.display()),
            ..Default::default()
        }),
        ..Default::default()
    };
    (pod, c)
}

/// The createRuntime backstop on the real kernel: CreateContainer adds the hook for an
/// annotated container (none for an unannotated one); the hook's request confines the pid's
/// cgroup from the pending start; NRI's StartContainer then finds it confined and does not
/// apply it again; a hook for a container warden holds nothing for (the daemon restarted in
/// between) is refused; a stopped container's pending start is dropped.
#[test]
fn the_backstop_hook_confines_before_the_entrypoint_and_refuses_what_it_cannot_vouch_for() {
    if !runnable() {
        return;
    }
    use crate::nri::Handler as _;
    let mut f = Fixture::new("backstop");
    f.write_profile(&web(1004));
    let d = f.d().clone();

    let mut req = f.container("bs-1");
    req.annotations.clear();
    req.backstop = true;
    let (pod, c) = nri_of(&req, true);
    let adj = d.on_create_container(&pod, &c).expect("created").expect("an annotated container gets the hook");
    let hooks = adj.hooks.expect("hooks").create_runtime;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].path, d.hook_binary().unwrap().to_string_lossy());
    assert!(hooks[0].args.ends_with(&["oci-hook".to_string(), "--backstop".to_string()]), "{:?}", hooks[0].args);
    assert!(d.registry.get("bs-1").is_none(), "nothing is confined at CreateContainer (no cgroup yet)");

    let rec = d.backstop_confine(&req).expect("confined by the hook").expect("a profile applies");
    assert_eq!((rec.profile.as_str(), rec.via), ("web", Via::Nri));
    let flags = |d: &Daemon| d.enforcer.lock().unwrap().maps().cgroups.get(&rec.cgroup_id, 0).unwrap().flags;
    use warden_common::cgroup_flags::ARM_AT_EXEC;
    assert_eq!(flags(&d) & ARM_AT_EXEC, ARM_AT_EXEC, "waits for the entrypoint's exec");
    let version = f.pinned_version(rec.cgroup_id);
    assert_eq!(version, version_of(&web(1004)));
    // A retried hook for the same cgroup is answered from the registry.
    assert_eq!(d.backstop_confine(&req).unwrap().unwrap().cgroup_id, rec.cgroup_id);
    d.on_start_container(&pod, &c).expect("StartContainer after the hook");
    assert_eq!(d.registry.get("bs-1").unwrap().cgroup_id, rec.cgroup_id);
    assert_eq!(flags(&d) & ARM_AT_EXEC, 0, "StartContainer arms it");
    assert!(d.pending.is_empty());

    // No pending start (a restarted daemon): refused.
    let mut other = f.container("bs-2");
    other.annotations.clear();
    other.backstop = true;
    let e = format!("{:#}", d.backstop_confine(&other).unwrap_err());
    assert!(e.contains("no pending start"), "{e}");
    assert!(d.registry.get("bs-2").is_none());

    // Unannotated (the default policy confines nothing): no hook, nothing pending.
    let (pod3, c3) = nri_of(&other, false);
    assert!(d.on_create_container(&pod3, &c3).unwrap().is_none());
    assert!(d.pending.is_empty());

    // Created, then stopped before it started: the pending start goes with it.
    let (pod4, c4) = nri_of(&other, true);
    d.on_create_container(&pod4, &c4).unwrap().expect("hook");
    assert_eq!(d.pending.len(), 1);
    d.on_stop_container(&pod4, &c4).unwrap();
    assert!(d.pending.is_empty());

    // A hook whose container's init is not in the cgroup NRI named: refused, nothing applied.
    d.on_create_container(&pod4, &c4).unwrap().expect("hook");
    let mut wrong = other.clone();
    wrong.cgroup = Some(cgroup::cgroup2_mount().unwrap());
    let e = format!("{:#}", d.backstop_confine(&wrong).unwrap_err());
    assert!(e.contains("not in the cgroup NRI named") && e.contains("pod default/web, container app"), "{e}");
    assert!(d.registry.get("bs-2").is_none());
    assert!(d.release_id("bs-1"));
}
