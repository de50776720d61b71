//! Podman (issue 20, item 2): bookworm's podman with warden's packaged hooks.d JSON
//! (packaging/oci-hooks.d/warden.json, its binary path and socket pointed at this build):
//! `podman run --annotation warden.io/profile=NAME` is confined before its entrypoint (a
//! forbidden first action is killed), an unknown profile refuses the start, and poststop
//! releases. Real podman, runc, kernel; podman's storage in a private folder. Needs root;
//! under CI=true a missing piece fails the test.
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use warden_integration_tests::gate::RUNC;
use warden_integration_tests::*;

const PODMAN: &str = "/usr/bin/podman";

/// The OCI runtime podman runs (and which runs the hook): runc, or with
/// `WARDEN_TEST_OCI_RUNTIME=crun` bookworm's crun 1.8.1, podman 4.3's own default there (it
/// accepts podman's config.json, unlike containerd's; tests/vm/crun.sh runs this test so in a
/// VM, as crun refuses this host's hybrid cgroups). crun hands createRuntime hooks the state
/// `created` where runc says `creating`, and discards their output.
fn runtime() -> String {
    match containerd::oci_runtime_choice() {
        containerd::OciRuntime::Runc => RUNC.to_string(),
        containerd::OciRuntime::Crun => "/usr/bin/crun".to_string(),
        containerd::OciRuntime::Path(p) => p.display().to_string(),
    }
}

/// Podman with its own storage, runc (the hooks run by the runtime), cgroupfs, no network and
/// explicit ulimits (podman's defaults raise RLIMIT_NOFILE/NPROC, which needs
/// CAP_SYS_RESOURCE; this project's CI root lacks it).
struct Podman {
    dir: PathBuf,
    hooks: PathBuf,
    /// A private cgroup parent (podman's own default, libpod_parent, is shared by the host).
    cgroup_parent: String,
}

impl Podman {
    fn new(tmp: &Path, socket: &Path) -> Podman {
        let dir = tmp.join("podman");
        let hooks = dir.join("hooks.d");
        std::fs::create_dir_all(&hooks).unwrap();
        // The packaged hook, as an operator installs it, pointed at this build and daemon.
        let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/oci-hooks.d/warden.json");
        let mut h: Value = serde_json::from_slice(&std::fs::read(&packaged).unwrap()).unwrap();
        assert_eq!(h["hook"]["path"], "/usr/bin/warden", "the packaged hook changed: {h}");
        h["hook"]["path"] = bin("warden").display().to_string().into();
        h["hook"]["env"] = serde_json::json!([format!("WARDEN_SOCKET={}", socket.display())]);
        std::fs::write(hooks.join("warden.json"), serde_json::to_vec_pretty(&h).unwrap()).unwrap();
        let p = Podman { dir, hooks, cgroup_parent: format!("/warden-podman-{}", std::process::id()) };
        let out = p
            .cmd(&["load", "-i"])
            .arg(warden_integration_tests::containerd::Install::ensure().unwrap().busybox_tar)
            .output()
            .unwrap();
        assert!(out.status.success(), "podman load: {}", String::from_utf8_lossy(&out.stderr));
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["-s", "KILL", "120", PODMAN, "--root"])
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(["--storage-driver", "overlay", "--runtime", &runtime(), "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none", "--hooks-dir"])
            .arg(&self.hooks)
            .args(args);
        c
    }

    /// `podman run --rm` of `warden-attempt seq ATTEMPTS` with `annotations`.
    fn run(&self, annotations: &[&str], attempts: &[&str]) -> Output {
        let helper = static_attempt();
        let mut args = vec!["run", "--rm", "--network", "none", "--cgroup-parent", &self.cgroup_parent];
        args.extend(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]);
        for a in annotations {
            args.extend(["--annotation", a]);
        }
        let mount = format!("{}:/warden-attempt:ro", helper.display());
        args.extend(["-v", &mount, "docker.io/warden/busybox:local", "/warden-attempt", "seq"]);
        args.extend(attempts);
        self.cmd(&args).output().unwrap()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd(&["rm", "--all", "--force"]).output();
        // Not `system reset`: that also touches host-wide network settings.
        let _ = self.cmd(&["rmi", "--all", "--force"]).output();
        let _ = Command::new("umount").arg("-R").arg(self.dir.join("root")).output();
        let _ = std::fs::remove_dir_all(&self.dir);
        // The private cgroup parent, in every hierarchy (this host is hybrid), deepest first.
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in rd.flatten() {
                remove_tree(&h.path().join(self.cgroup_parent.trim_start_matches('/')));
            }
        }
        remove_tree(&Path::new("/sys/fs/cgroup").join(self.cgroup_parent.trim_start_matches('/')));
    }
}

fn remove_tree(p: &Path) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(p);
}

fn text(o: &Output) -> String {
    format!(
        "status {:?} signal {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        o.status.signal(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn podman_runs_are_confined_through_the_packaged_hook() {
    if !skip_unless(&[Need::Root, Need::Cgroup2, Need::Bpffs, Need::Binaries, Need::Runc, Need::StaticAttempt]) {
        return;
    }
    if !Path::new(PODMAN).is_file() {
        gate::skip("podman missing (scripts/setup.sh installs bookworm's podman)");
        return;
    }
    let rt = runtime();
    if !Path::new(&rt).is_file() {
        gate::skip(&format!("the OCI runtime {rt} is missing (scripts/setup.sh installs bookworm's crun and runc)"));
        return;
    }
    let profile = ProfileBuilder::new("no-unshare").syscalls_all_except(&["unshare"]).json();
    let mut w = WardenDaemon::configure_without_nri(&[("no-unshare", profile)], "");
    w.start();
    let p = Podman::new(&w.warden.tmp, &w.warden.socket());

    // Control: without the annotation the hook does not run and unshare fails by itself
    // (no CAP_SYS_ADMIN): EPERM, the process lives on.
    let o = p.run(&[], &["unshare-uts", "getpid"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "unshare-uts => errno=EPERM\ngetpid => ok\n", "{}", text(&o));

    // Annotated: the entrypoint's very first action is outside the profile and is killed, so the
    // policy was in place before it ran.
    let o = p.run(&["warden.io/profile=no-unshare"], &["unshare-uts", "getpid"]);
    assert_eq!(o.status.code(), Some(137), "killed by SIGKILL\n{}\n--- daemon ---\n{}", text(&o), w.log_text());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "unshare-uts => ", "{}", text(&o));
    assert!(w.log_text().contains("confined (oci-hook)"), "{}", w.log_text());
    // `run --rm` removed it: poststop released it, nothing pinned.
    eventually(Duration::from_secs(10), "release after poststop", || {
        let none = std::fs::read_dir(w.warden.pin_dir.join("cgroups")).map(|d| d.count() == 0).unwrap_or(true);
        (none && w.confined_ids().is_empty()).then_some(())
    });

    // An unknown profile refuses the start: the entrypoint never runs.
    let o = p.run(&["warden.io/profile=nope"], &["getpid"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("getpid"), "{}", text(&o));
    // The refusal names the profile (under crun, which discards hook output, only in the
    // daemon's log), and the daemon logs why.
    containerd::assert_hook_refusal(&String::from_utf8_lossy(&o.stderr), &["nope"]);
    assert!(w.log_text().contains("unknown profile"), "{}", w.log_text());
}
