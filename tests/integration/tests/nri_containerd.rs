//! warden's NRI client against a real containerd 1.7 (private instance, see
//! src/containerd.rs): registration, the events warden subscribes to, the pod's annotations
//! and the container's cgroup path and pid at StartContainer (cgroup present, runtime waiting),
//! and an error from StartContainer failing the CRI StartContainer call with its message.
//! Needs root; skips with a reason otherwise, except under CI=true where it fails.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use warden::nri::{run_with_reconnect, Container, Endpoint, Handler, Plugin, PluginOptions, PodSandbox};
use warden_integration_tests::containerd::{Containerd, Prelaunch};
use warden_integration_tests::{skip_unless, Need};

#[derive(Debug, Clone)]
struct Seen {
    event: &'static str,
    pod: String,
    namespace: String,
    container: String,
    annotations: Vec<(String, String)>,
    cgroups_path: String,
    pid: u32,
    /// At StartContainer: the cgroup2 directory existed and the pid was alive.
    cgroup_existed: bool,
    pid_alive: bool,
    handler_us: u128,
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
}

impl Recorder {
    fn push(&self, event: &'static str, pod: &PodSandbox, c: Option<&Container>, t0: Instant) -> Seen {
        let mut annotations: Vec<(String, String)> =
            pod.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        annotations.sort();
        let cgroups_path = c.map(|c| c.cgroups_path().to_string()).unwrap_or_default();
        let pid = c.map(|c| c.pid).unwrap_or(0);
        let s = Seen {
            event,
            pod: pod.name.clone(),
            namespace: pod.namespace.clone(),
            container: c.map(|c| c.name.clone()).unwrap_or_default(),
            annotations,
            cgroup_existed: !cgroups_path.is_empty() && Containerd::cgroup2_dir(&cgroups_path).is_dir(),
            pid_alive: pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists(),
            cgroups_path,
            pid,
            handler_us: t0.elapsed().as_micros(),
        };
        self.seen.lock().unwrap().push(s.clone());
        s
    }
    fn events(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().iter().map(|s| (s.event.to_string(), s.container.clone())).collect()
    }
}

impl Handler for Recorder {
    fn on_synchronize(&self, pods: &[PodSandbox], containers: &[Container]) -> Result<(), String> {
        for c in containers {
            let pod = pods.iter().find(|p| p.id == c.pod_sandbox_id).cloned().unwrap_or_default();
            self.push("Synchronize", &pod, Some(c), Instant::now());
        }
        Ok(())
    }
    fn on_run_pod_sandbox(&self, pod: &PodSandbox) -> Result<(), String> {
        self.push("RunPodSandbox", pod, None, Instant::now());
        Ok(())
    }
    fn on_start_container(&self, pod: &PodSandbox, c: &Container) -> Result<(), String> {
        self.push("StartContainer", pod, Some(c), Instant::now());
        if c.name == "refused" {
            return Err(format!("warden-test refuses container {}/{}/{}", pod.namespace, pod.name, c.name));
        }
        Ok(())
    }
    fn on_stop_container(&self, pod: &PodSandbox, c: &Container) -> Result<(), String> {
        self.push("StopContainer", pod, Some(c), Instant::now());
        Ok(())
    }
    fn on_remove_container(&self, pod: &PodSandbox, c: &Container) -> Result<(), String> {
        self.push("RemoveContainer", pod, Some(c), Instant::now());
        Ok(())
    }
    fn on_remove_pod_sandbox(&self, pod: &PodSandbox) -> Result<(), String> {
        self.push("RemovePodSandbox", pod, None, Instant::now());
        Ok(())
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_test_writer()
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_sees_real_pods_and_can_refuse_a_start() {
    if !skip_unless(&[Need::Root, Need::Containerd]) {
        return;
    }
    init_tracing();
    let ctrd = Containerd::start().await.expect("private containerd");

    let rec = Arc::new(Recorder::default());
    let opts = PluginOptions::new("warden-test", "10").unwrap();
    let t0 = Instant::now();
    let plugin = Plugin::connect(&Endpoint::Socket(ctrd.nri_socket.clone()), &opts, rec.clone())
        .await
        .unwrap_or_else(|e| panic!("plugin connect: {e}\ncontainerd log:\n{}", ctrd.log_tail()));
    assert!(plugin.synchronized(Duration::from_secs(5)).await, "external plugin synchronized");
    eprintln!("registered+configured+synchronized in {:?}", t0.elapsed());

    let pod = ctrd
        .run_pod("web", "shop", &[("warden.io/profile", "web"), ("warden.io/mode.app", "enforce")])
        .await
        .expect("RunPodSandbox");
    let app = ctrd.create_container(&pod, "app", &["/bin/sleep", "3600"], &[]).await.expect("CreateContainer app");
    let t = Instant::now();
    ctrd.start_container(&app).await.unwrap_or_else(|e| panic!("StartContainer app: {}", e.message()));
    eprintln!("StartContainer app took {:?}", t.elapsed());

    {
        let seen = rec.seen.lock().unwrap();
        let run = seen.iter().find(|s| s.event == "RunPodSandbox").expect("RunPodSandbox seen");
        assert_eq!((run.pod.as_str(), run.namespace.as_str()), ("web", "shop"));
        assert!(run.annotations.contains(&("warden.io/profile".into(), "web".into())), "{:?}", run.annotations);
        assert!(run.annotations.contains(&("warden.io/mode.app".into(), "enforce".into())));
        let start =
            seen.iter().find(|s| s.event == "StartContainer" && s.container == "app").expect("StartContainer seen");
        assert!(start.annotations.contains(&("warden.io/profile".into(), "web".into())), "pod annotations at start");
        assert!(
            start.cgroups_path.starts_with(&ctrd.cgroup_parent),
            "cgroups path {} under {}",
            start.cgroups_path,
            ctrd.cgroup_parent
        );
        assert!(start.cgroups_path.ends_with(&app), "cgroups path {} ends with the container id", start.cgroups_path);
        assert!(start.pid > 0, "pid known at StartContainer");
        assert!(
            start.cgroup_existed,
            "cgroup2 dir {} exists at StartContainer",
            Containerd::cgroup2_dir(&start.cgroups_path).display()
        );
        assert!(start.pid_alive);
        eprintln!(
            "StartContainer handler ran {} us; cgroup {} pid {}",
            start.handler_us, start.cgroups_path, start.pid
        );
        // The container's process sits in that cgroup.
        let procs = std::fs::read_to_string(Containerd::cgroup2_dir(&start.cgroups_path).join("cgroup.procs")).unwrap();
        assert!(procs.lines().any(|l| l == start.pid.to_string()), "pid {} in cgroup.procs: {procs}", start.pid);
    }
    let st = ctrd.container_status(&app).await.unwrap();
    assert_eq!(st.state, k8s_cri::v1::ContainerState::ContainerRunning as i32);

    // A refusal from StartContainer fails the CRI call with the plugin's message.
    let bad =
        ctrd.create_container(&pod, "refused", &["/bin/sleep", "3600"], &[]).await.expect("CreateContainer refused");
    let err = ctrd.start_container(&bad).await.expect_err("StartContainer must fail");
    eprintln!("refused start: {}", err.message());
    assert!(err.message().contains("warden-test refuses container shop/web/refused"), "{}", err.message());
    let st = ctrd.container_status(&bad).await.unwrap();
    assert_ne!(st.state, k8s_cri::v1::ContainerState::ContainerRunning as i32, "refused container must not run");

    // Stop and remove: the plugin hears each.
    ctrd.stop_container(&app).await.expect("StopContainer");
    ctrd.remove_container(&app).await.expect("RemoveContainer");
    ctrd.remove_pod(&pod.id).await.expect("remove pod");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ev = rec.events();
        let has = |e: &str, c: &str| ev.iter().any(|(a, b)| a == e && b == c);
        if has("StopContainer", "app") && has("RemoveContainer", "app") && has("RemovePodSandbox", "") {
            break;
        }
        assert!(Instant::now() < deadline, "missing stop/remove events: {ev:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("events: {:?}", rec.events());
    plugin.close().await;
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// containerd restarts: the plugin sees EOF, reconnects with backoff, is synchronized with
/// the container that kept running, and gets the events of containers started afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_reconnects_after_containerd_restart() {
    if !skip_unless(&[Need::Root, Need::Containerd]) {
        return;
    }
    init_tracing();
    let mut ctrd = Containerd::start().await.expect("private containerd");
    let rec = Arc::new(Recorder::default());
    let connects = Arc::new(AtomicUsize::new(0));
    let opts = PluginOptions::new("warden-test", "10").unwrap();
    let c2 = connects.clone();
    let task = tokio::spawn(run_with_reconnect(
        Endpoint::Socket(ctrd.nri_socket.clone()),
        opts,
        rec.clone(),
        Duration::from_millis(400),
        move |_| {
            c2.fetch_add(1, Ordering::SeqCst);
        },
    ));
    wait_for("first connection", 10, || connects.load(Ordering::SeqCst) == 1).await;

    let pod = ctrd.run_pod("svc", "default", &[("warden.io/profile", "svc")]).await.expect("RunPodSandbox");
    let app = ctrd.create_container(&pod, "app", &["/bin/sleep", "3600"], &[]).await.unwrap();
    ctrd.start_container(&app).await.expect("StartContainer app");

    let t = Instant::now();
    ctrd.restart().await.expect("containerd restart");
    wait_for("reconnection", 15, || connects.load(Ordering::SeqCst) == 2).await;
    eprintln!("reconnected {:?} after the restart began", t.elapsed());
    wait_for("Synchronize after reconnection", 5, || rec.events().contains(&("Synchronize".into(), "app".into())))
        .await;
    {
        let seen = rec.seen.lock().unwrap();
        let sync = seen
            .iter()
            .find(|s| s.event == "Synchronize" && s.container == "app")
            .expect("running container in Synchronize");
        assert_eq!(sync.pod, "svc");
        assert!(sync.annotations.contains(&("warden.io/profile".into(), "svc".into())));
        assert!(sync.cgroups_path.ends_with(&app), "{}", sync.cgroups_path);
        assert!(sync.cgroup_existed);
    }
    assert_eq!(ctrd.container_status(&app).await.unwrap().state, k8s_cri::v1::ContainerState::ContainerRunning as i32);

    let app2 = ctrd.create_container(&pod, "after", &["/bin/sleep", "3600"], &[]).await.unwrap();
    ctrd.start_container(&app2).await.expect("StartContainer after restart");
    assert!(rec.events().contains(&("StartContainer".into(), "after".into())), "{:?}", rec.events());
    task.abort();
}

/// Pre-launched mode: containerd starts the plugin binary with the connection on fd 3 and its
/// config; events arrive and a refusal fails the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prelaunched_plugin_on_fd3() {
    if !skip_unless(&[Need::Root, Need::Containerd]) {
        return;
    }
    init_tracing();
    let events = tempfile::NamedTempFile::new().unwrap();
    let path = events.path().to_path_buf();
    let ctrd = Containerd::start_with(vec![Prelaunch {
        name: "10-warden-test".into(),
        exe: env!("CARGO_BIN_EXE_warden-nri-test-plugin").into(),
        config: path.display().to_string(),
    }])
    .await
    .expect("private containerd");
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let has = |ls: &[serde_json::Value], ev: &str, c: &str| ls.iter().any(|l| l["event"] == ev && l["container"] == c);
    // containerd 1.7 launches and configures the plugin at its start (no Synchronize then).
    wait_for("pre-launched plugin configured", 10, || has(&lines(), "Configured", "")).await;

    let pod = ctrd.run_pod("pre", "default", &[("warden.io/profile", "web")]).await.expect("RunPodSandbox");
    let app = ctrd.create_container(&pod, "app", &["/bin/sleep", "3600"], &[]).await.unwrap();
    ctrd.start_container(&app).await.expect("StartContainer app");
    let bad = ctrd.create_container(&pod, "refused", &["/bin/sleep", "3600"], &[]).await.unwrap();
    let err = ctrd.start_container(&bad).await.expect_err("refused start");
    assert!(err.message().contains("refuses pre/refused"), "{}", err.message());

    let ls = lines();
    let run = ls.iter().find(|l| l["event"] == "RunPodSandbox").expect("RunPodSandbox recorded");
    assert_eq!(run["annotations"]["warden.io/profile"], "web");
    let start =
        ls.iter().find(|l| l["event"] == "StartContainer" && l["container"] == "app").expect("StartContainer recorded");
    assert!(start["pid"].as_u64().unwrap() > 0);
    assert!(start["cgroups_path"].as_str().unwrap().ends_with(&app));
    // The plugin is a process containerd launched, not this test.
    assert_ne!(start["plugin_pid"].as_u64().unwrap(), std::process::id() as u64);
}
