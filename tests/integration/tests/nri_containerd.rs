//! warden's NRI client against a real containerd 1.7 (private instance, see
//! src/containerd.rs): registration, the events warden subscribes to, the pod's annotations
//! and the container's cgroup path and pid at StartContainer (cgroup present, runtime waiting),
//! and an error from StartContainer failing the CRI StartContainer call with its message.
//! Needs root; skips with a reason otherwise, except under CI=true where it fails.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warden::nri::{Container, Endpoint, Handler, Plugin, PluginOptions, PodSandbox};
use warden_integration_tests::containerd::{prerequisites_or_skip, Containerd};

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
        let mut annotations: Vec<(String, String)> = pod.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
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
    let _ = tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())).with_test_writer().try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_sees_real_pods_and_can_refuse_a_start() {
    if !prerequisites_or_skip("plugin_sees_real_pods_and_can_refuse_a_start") {
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
        let start = seen.iter().find(|s| s.event == "StartContainer" && s.container == "app").expect("StartContainer seen");
        assert!(start.annotations.contains(&("warden.io/profile".into(), "web".into())), "pod annotations at start");
        assert!(start.cgroups_path.starts_with(&ctrd.cgroup_parent), "cgroups path {} under {}", start.cgroups_path, ctrd.cgroup_parent);
        assert!(start.cgroups_path.ends_with(&app), "cgroups path {} ends with the container id", start.cgroups_path);
        assert!(start.pid > 0, "pid known at StartContainer");
        assert!(start.cgroup_existed, "cgroup2 dir {} exists at StartContainer", Containerd::cgroup2_dir(&start.cgroups_path).display());
        assert!(start.pid_alive);
        eprintln!("StartContainer handler ran {} us; cgroup {} pid {}", start.handler_us, start.cgroups_path, start.pid);
        // The container's process sits in that cgroup.
        let procs = std::fs::read_to_string(Containerd::cgroup2_dir(&start.cgroups_path).join("cgroup.procs")).unwrap();
        assert!(procs.lines().any(|l| l == start.pid.to_string()), "pid {} in cgroup.procs: {procs}", start.pid);
    }
    let st = ctrd.container_status(&app).await.unwrap();
    assert_eq!(st.state, k8s_cri::v1::ContainerState::ContainerRunning as i32);

    // A refusal from StartContainer fails the CRI call with the plugin's message.
    let bad = ctrd.create_container(&pod, "refused", &["/bin/sleep", "3600"], &[]).await.expect("CreateContainer refused");
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
