//! The private-containerd helper leaves nothing behind when dropped with pods still running
//! (the path a failing test takes): no containerd or shim process, no shim socket under
//! /run/containerd/s, no pod cgroup, no mount, no temp folder.
use std::path::Path;

use warden_integration_tests::containerd::Containerd;
use warden_integration_tests::{skip_unless, Need};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_with_running_pods_cleans_up() {
    if !skip_unless(&[Need::Root, Need::Containerd]) {
        return;
    }
    let ctrd = Containerd::start().await.expect("private containerd");
    let pod = ctrd.run_pod("leftover", "default", &[]).await.expect("RunPodSandbox");
    let c = ctrd.create_container(&pod, "app", &["/bin/sleep", "3600"], &[]).await.unwrap();
    ctrd.start_container(&c).await.expect("StartContainer");

    let cgroup = Containerd::cgroup2_dir(&ctrd.cgroup_parent);
    let shim_socket = ctrd.shim_socket(&pod.id);
    let root = ctrd.root.clone();
    let address = ctrd.address.display().to_string();
    let pid = ctrd.pid().expect("containerd pid");
    assert!(cgroup.is_dir(), "{} exists while the pod runs", cgroup.display());
    assert!(shim_socket.exists(), "shim socket {} exists while the pod runs", shim_socket.display());
    assert!(std::fs::read_dir(&cgroup).unwrap().count() > 0, "pod cgroup tree populated");

    drop(ctrd);

    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "containerd {pid} gone");
    assert!(!cgroup.exists(), "{} removed", cgroup.display());
    assert!(!shim_socket.exists(), "{} removed", shim_socket.display());
    assert!(!root.exists(), "{} removed", root.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&root.display().to_string()), "mounts left under {}", root.display());
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(!cmd.contains(&address), "process left: {cmd}");
        }
    }
}
