//! Container churn under the daemon: 200 containers started, confined, stopped and removed
//! under a private containerd with `warden run`, four at a time. Afterwards nothing may be
//! left: no map entries, no per-cgroup links or pins, no container cgroups, the daemon's fd
//! count back at its baseline and its memory growth bounded (measured and printed).
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use warden_integration_tests::containerd::{Containerd, PodHandle};
use warden_integration_tests::scenarios::ATTEMPT;
use warden_integration_tests::*;
const CONTAINERS: usize = 200;
const LANES: usize = 4;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let v = s.lines().find_map(|l| l.strip_prefix("VmRSS:")).expect("VmRSS");
    v.trim().trim_end_matches("kB").trim().parse().unwrap()
}

fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    r
}

/// Runs containers `names` one after another in `pod`: each tries a forbidden connect (proof
/// it was confined from its first instruction: the port has a listener, so only warden can
/// refuse it), exits with 1 for "not ok", and is removed. Returns (confined, logs lost).
async fn lane(c: &Containerd, pod: &PodHandle, pod_name: &str, names: Vec<String>, denied: u16) -> (usize, usize) {
    let helper = static_attempt();
    let port = denied.to_string();
    let mut confined = 0;
    let mut lost = 0;
    for name in names {
        let id = c
            .create_container_with(
                pod,
                &name,
                &[ATTEMPT, "connect", "127.0.0.1", &port],
                &[],
                &[(helper.as_path(), ATTEMPT)],
            )
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e:#}"));
        c.start_container(&id).await.unwrap_or_else(|s| panic!("start {name}: {}", s.message()));
        let mut code = None;
        for _ in 0..400 {
            let st = c.container_status(&id).await.unwrap();
            if st.finished_at != 0 {
                code = Some(st.exit_code);
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(code, Some(1), "{name}: the connect must be refused: {}", c.container_log(pod_name, &name));
        // Under load the CRI log of a container this short-lived was seen empty (twice, in
        // `seq` mode with a clean exit): the exit status is the proof, the log is checked when
        // present.
        let log = c.container_log(pod_name, &name);
        if log.is_empty() {
            lost += 1;
        } else {
            assert_eq!(log.trim_end(), "errno=EPERM", "{name} confined");
        }
        confined += 1;
        c.stop_container(&id).await.unwrap();
        c.remove_container(&id).await.unwrap();
    }
    (confined, lost)
}

/// Container cgroup directories left below the pods' cgroups, other than the running pod
/// sandboxes' own (pod directories themselves are containerd's to remove, and it does not:
/// ENVIRONMENT.md).
fn container_cgroups_left(c: &Containerd, sandboxes: &[&str]) -> Vec<String> {
    let parent = Containerd::cgroup2_dir(&c.cgroup_parent);
    let mut left = Vec::new();
    for pod in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
        for e in std::fs::read_dir(pod.path()).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) && !sandboxes.iter().any(|s| e.file_name() == **s) {
                left.push(e.path().display().to_string());
            }
        }
    }
    left
}

fn count_entries(pin_dir: &Path) -> Vec<(&'static str, usize)> {
    let m = warden::enforcer::Maps::open(pin_dir).unwrap();
    vec![
        ("WARDEN_CGROUPS", m.cgroups.keys().count()),
        ("WARDEN_PROFILES", m.profiles.keys().count()),
        ("WARDEN_PROFILE_META", m.meta.keys().count()),
        ("WARDEN_CONNECT4", m.connect4.keys().count()),
        ("WARDEN_CONNECT6", m.connect6.keys().count()),
        ("WARDEN_BIND", m.bind.keys().count()),
        ("WARDEN_FILES", m.files.keys().count()),
        ("WARDEN_COUNTERS", m.counters.keys().count()),
        ("WARDEN_RATE", m.rate.keys().count()),
        ("WARDEN_LEARN_SC", m.learn.keys().count()),
        ("WARDEN_LEARN_NET", m.learn_net.keys().count()),
        ("WARDEN_LEARN_INFO", m.learn_info.keys().count()),
        ("WARDEN_LEARN_FILES", m.learn_files.keys().count()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_200_containers_leaves_nothing_behind() {
    if !(skip_unless(CONTAINERD)) {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let denied = l.local_addr().unwrap().port();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let c = Containerd::start().await.unwrap();
    let profile = all_syscalls_except("churn", &["unshare"]);
    let mut v: serde_json::Value = serde_json::from_str(&profile).unwrap();
    v["network"] = serde_json::json!({ "connect": [], "bind": [] });
    let mut w = WardenDaemon::configure(
        &c.nri_socket,
        &[("churn", v.to_string())],
        // The node-wide hooks stay attached 3 s after their last user (the default is 120 s),
        // so that the end of the run sees them kept and then detached.
        &format!("metrics_address = \"127.0.0.1:{port}\"\nhook_idle_detach_seconds = 3"),
    );
    w.start();
    let pid = w.pid().unwrap();

    let mut pods = Vec::new();
    for i in 0..LANES {
        let name = format!("churn{i}");
        let pod = c.run_pod(&name, "churn", &[("warden.io/profile", "churn")]).await.unwrap();
        pods.push((name, pod));
    }
    // Warm-up (not counted): first use of the runtime's blocking threads, allocator arenas.
    let warm: Vec<_> = pods.iter().map(|(n, p)| lane(&c, p, n, vec!["warm0".into(), "warm1".into()], denied)).collect();
    for f in warm {
        f.await;
    }
    eventually(Duration::from_secs(10), "warm-up released", || w.confined_ids().is_empty().then_some(()));
    scrape(port);
    std::thread::sleep(Duration::from_millis(500));
    let (fd0, rss0) = (fds(pid), rss_kib(pid));

    let t0 = Instant::now();
    let per = CONTAINERS / LANES;
    let names = |lane: usize| (0..per).map(|i| format!("c{lane}-{i}")).collect::<Vec<_>>();
    let (a, b, cc, d) = tokio::join!(
        lane(&c, &pods[0].1, &pods[0].0, names(0), denied),
        lane(&c, &pods[1].1, &pods[1].0, names(1), denied),
        lane(&c, &pods[2].1, &pods[2].0, names(2), denied),
        lane(&c, &pods[3].1, &pods[3].0, names(3), denied),
    );
    let took = t0.elapsed();
    assert_eq!(a.0 + b.0 + cc.0 + d.0, CONTAINERS, "every container confined");
    let lost = a.1 + b.1 + cc.1 + d.1;
    assert!(lost <= CONTAINERS / 20, "{lost} container logs empty");
    eventually(Duration::from_secs(20), "every container released", || w.confined_ids().is_empty().then_some(()));

    // No leaked entries in any map, no per-cgroup links, the syscall hook detached.
    let counts = count_entries(&w.warden.pin_dir);
    assert!(counts.iter().all(|(_, n)| *n == 0), "map entries left: {counts:?}");
    let cgroup_pins: Vec<_> =
        std::fs::read_dir(w.warden.pin_dir.join("cgroups")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(cgroup_pins.is_empty(), "per-cgroup link pins left: {cgroup_pins:?}");
    let links = || {
        let mut l: Vec<String> = std::fs::read_dir(w.warden.pin_dir.join("links"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        l.sort();
        l
    };
    // The syscall hook outlives its last user by the idle grace, then goes (the daemon checks
    // every 10 s): kept across container churn, not forever. The always-attached programs stay.
    eventually(Duration::from_secs(30), "the idle syscall hook detached after its grace", || {
        (links() == ["cgroup_mkdir", "cgroup_rmdir", "sched_process_exec"]).then_some(())
    });
    let sandboxes: Vec<&str> = pods.iter().map(|(_, p)| p.id.as_str()).collect();
    let left = container_cgroups_left(&c, &sandboxes);
    assert!(left.is_empty(), "container cgroups left: {left:?}");

    // The daemon: fds back at the baseline, memory growth bounded, no per-container series.
    let body = scrape(port);
    assert!(body.contains("warden_confined_containers 0"), "{body}");
    assert!(!body.contains("warden_denials_total{"), "released containers' series dropped:\n{body}");
    let value =
        |series: &str| body.lines().find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok()).unwrap_or(0.0);
    let starts = value("warden_nri_request_duration_seconds_count{request=\"start_container\"}");
    let mean_ms =
        value("warden_nri_request_duration_seconds_sum{request=\"start_container\"}") * 1000.0 / starts.max(1.0);
    assert_eq!(starts as usize, CONTAINERS + 2 * LANES, "every StartContainer timed");
    let fd1 = eventually(Duration::from_secs(10), "daemon fds back to the baseline", || {
        let n = fds(pid);
        (n <= fd0).then_some(n)
    });
    let rss1 = rss_kib(pid);
    let growth = rss1 as i64 - rss0 as i64;
    eprintln!(
        "churn: {CONTAINERS} containers in {:.1}s ({LANES} lanes, {:.0} ms each per lane); daemon fds {fd0} -> {fd1}; \
         RSS {rss0} KiB -> {rss1} KiB ({growth:+} KiB); StartContainer handled in {mean_ms:.2} ms on average over {starts}; \
         {lost} empty container logs",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / per as f64
    );
    assert!(growth < 8 * 1024, "daemon RSS grew by {growth} KiB over {CONTAINERS} containers");
    assert!(!w.log_text().contains("ERROR"), "{}", w.log_text());

    for (_, p) in &pods {
        c.remove_pod(&p.id).await.unwrap();
    }
    drop(l);
}
