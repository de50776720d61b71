//! `warden profile export-seccomp` (issue 20, item 5): a warden profile's syscall allow-list
//! handed to the runtime's own seccomp (`securityContext.seccompProfile: Localhost`) under the
//! real containerd and runc, no warden daemon involved: the allowed work runs, a call the
//! profile leaves out fails with EPERM (or kills, with `--kill`), and the same container
//! without the exported profile makes that call. Needs root; under CI=true a missing piece
//! fails the test.
use std::path::Path;

use warden_integration_tests::containerd::{Containerd, PodHandle};
use warden_integration_tests::scenarios::{exit_code, ATTEMPT};
use warden_integration_tests::*;

/// Runs `warden-attempt seq ATTEMPTS` in a container of `pod`, with `seccomp` as the runtime's
/// seccomp profile (None: the runtime's default, unconfined here); returns (exit code, log).
async fn run(
    c: &Containerd,
    pod: &PodHandle,
    pod_name: &str,
    name: &str,
    seccomp: Option<&Path>,
    attempts: &[&str],
) -> (i32, Vec<String>) {
    let helper = static_attempt();
    let mut cmd = vec![ATTEMPT, "seq"];
    cmd.extend_from_slice(attempts);
    let mounts = [(helper.as_path(), ATTEMPT)];
    let id = match seccomp {
        Some(p) => c.create_container_seccomp(pod, name, &cmd, &mounts, p).await.unwrap(),
        None => c.create_container_with(pod, name, &cmd, &[], &mounts).await.unwrap(),
    };
    c.start_container(&id).await.unwrap();
    let code = exit_code(c, &id).await;
    (code, c.container_log(pod_name, name).lines().map(|l| l.trim_end().to_string()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_profile_runs_as_the_runtimes_seccomp() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let c = Containerd::start().await.unwrap();
    let w = Warden::new();
    let profile = w.profile_file(&ProfileBuilder::new("no-mkdir").syscalls_all_except(&["mkdir", "mkdirat"]).json());
    let errno_file = w.tmp.join("no-mkdir.seccomp.json");
    let kill_file = w.tmp.join("no-mkdir.kill.seccomp.json");
    for (file, extra) in [(&errno_file, None), (&kill_file, Some("--kill"))] {
        let mut args = vec!["profile", "export-seccomp", profile.to_str().unwrap(), "-o", file.to_str().unwrap()];
        args.extend(extra);
        let out = w.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("architectures: SCMP_ARCH_X86_64") || err.contains("SCMP_ARCH_AARCH64"), "{err}");
    }
    let text = std::fs::read_to_string(&errno_file).unwrap();
    assert!(text.contains("\"SCMP_ACT_ERRNO\"") && !text.contains("\"mkdir\""), "{text}");

    let pod = c.run_pod("sc", "shop", &[]).await.unwrap();
    // Control: without the exported profile the call works.
    let (code, log) = run(&c, &pod, "sc", "plain", None, &["getpid", "mkdir /tmp/d"]).await;
    assert_eq!((code, log), (0, vec!["getpid => ok".to_string(), "mkdir /tmp/d => ok".to_string()]));
    // The exported profile, errno form: refused with EPERM, the rest runs.
    let (code, log) = run(&c, &pod, "sc", "errno", Some(&errno_file), &["getpid", "mkdir /tmp/d", "getpid"]).await;
    assert_eq!(
        (code, log),
        (0, vec!["getpid => ok".to_string(), "mkdir /tmp/d => errno=EPERM".to_string(), "getpid => ok".to_string()])
    );
    // The kill form: the process dies at the call (SIGSYS).
    let (code, log) = run(&c, &pod, "sc", "kill", Some(&kill_file), &["getpid", "mkdir /tmp/d", "getpid"]).await;
    assert_eq!(code, 128 + libc::SIGSYS, "{log:?}");
    assert_eq!(log, vec!["getpid => ok".to_string(), "mkdir /tmp/d =>".to_string()]);

    // An invalid profile is refused, naming the problem; nothing is written.
    let bad = w.profile_file(r#"{"name":"bad","syscalls":{"allow":["opnat"]}}"#);
    let bad_out = w.tmp.join("bad.seccomp.json");
    let out = w.run(&["profile", "export-seccomp", bad.to_str().unwrap(), "-o", bad_out.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("opnat"));
    assert!(!bad_out.exists());
}
