//! The daemon in production: structured and rate-limited denial logs, Prometheus metrics,
//! profile hot reload, dropped capabilities, and the refusal to adopt pins of another map
//! layout. Real containerd, real kernel, the real `warden run`; under CI=true a missing piece
//! fails the test.
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use warden_integration_tests::containerd::{Containerd, PodHandle};
use warden_integration_tests::scenarios::{free_port, latest_line, listener, ATTEMPT};
use warden_integration_tests::*;

/// Connect only to 127.0.0.1 on `ports` (tcp); every syscall but unshare.
fn connect_only(name: &str, ports: &[u16]) -> String {
    ProfileBuilder::new(name).syscalls_all_except(&["unshare"]).connect("127.0.0.1/32", ports, "tcp").json()
}

/// Runs `script` under busybox sh with the static helper at /warden-attempt.
async fn sh(c: &Containerd, pod: &PodHandle, name: &str, script: &str) -> Result<String, tonic::Status> {
    let helper = static_attempt();
    let id = c
        .create_container_with(pod, name, &["sh", "-c", script], &[], &[(helper.as_path(), ATTEMPT)])
        .await
        .map_err(|e| tonic::Status::internal(format!("{e:#}")))?;
    c.start_container(&id).await?;
    Ok(id)
}

/// The daemon's JSON log lines.
fn json_lines(w: &WardenDaemon) -> Vec<Value> {
    w.log_text().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// `GET path` on the metrics address: (status line, body).
fn http_get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

/// The value of the series whose line starts with `series` (exact name and labels).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().split(' ').next()?.parse().ok()))
}

/// Waits until the looping container's latest line is `want`.
async fn wait_line(c: &Containerd, pod: &str, ctr: &str, want: &str, what: &str) {
    for _ in 0..60 {
        if latest_line(c, pod, ctr).await == want {
            return;
        }
    }
    panic!("{what}: latest line of {ctr} is not {want:?}:\n{}", c.container_log(pod, ctr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_are_logged_structured_rate_limited_and_counted_in_metrics() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, allowed) = listener();
    let (_l2, denied) = listener();
    let port = free_port();
    let c = Containerd::start().await.unwrap();
    let extra = format!("log_format = \"json\"\nlog_rate_limit = 3\nmetrics_address = \"127.0.0.1:{port}\"");
    let mut w = WardenDaemon::configure(
        &c.nri_socket,
        &[
            ("web", connect_only("web", &[allowed])),
            ("broken", r#"{"name":"broken","syscalls":{"allow":["opnat"]}}"#.into()),
        ],
        &extra,
    );
    w.start();

    // 30 denied connects in a burst, then the container stays up (so it stays confined).
    let pod = c.run_pod("web", "shop", &[("warden.io/profile", "web")]).await.unwrap();
    let mut seq = vec![format!("'connect 127.0.0.1 {allowed}'")];
    seq.extend((0..30).map(|_| format!("'connect 127.0.0.1 {denied}'")));
    let script = format!("{ATTEMPT} seq {}; exec sleep 600", seq.join(" "));
    let id = sh(&c, &pod, "flood", &script).await.unwrap();
    eventually(Duration::from_secs(10), "30 attempts done", || {
        (c.container_log("web", "flood").matches("errno=EPERM").count() == 30).then_some(())
    });
    assert!(c.container_log("web", "flood").starts_with(&format!("connect 127.0.0.1 {allowed} => ok")));

    // The log: at most 3 event lines per second for this container, each with every field;
    // the rest counted in a summary line once the window closes.
    let (lines, suppressed) = eventually(Duration::from_secs(10), "the suppressed-lines summary", || {
        let logs = json_lines(&w);
        let events: Vec<Value> = logs
            .iter()
            .filter(|l| {
                l["target"] == "warden::event"
                    && l["fields"]["container"] == "flood"
                    && l["fields"]["kind"] == "connect"
            })
            .cloned()
            .collect();
        let suppressed: u64 = logs
            .iter()
            .filter(|l| l["target"] == "warden::event" && l["fields"]["container"] == "flood")
            .filter_map(|l| l["fields"]["suppressed"].as_u64())
            .sum();
        (events.len() as u64 + suppressed == 30).then_some((events, suppressed))
    });
    assert!(suppressed > 0, "a burst of 30 over a limit of 3 per second suppresses lines");
    assert!(lines.len() <= 6, "at most 3 lines per window (the burst spans at most 2): {}", lines.len());
    let l = &lines[0];
    assert_eq!(l["level"], "WARN");
    let f = &l["fields"];
    for (k, v) in [
        ("namespace", "shop"),
        ("pod", "web"),
        ("container", "flood"),
        ("profile", "web"),
        ("mode", "enforce"),
        ("kind", "connect"),
        ("verdict", "denied"),
        ("address", "127.0.0.1"),
        ("protocol", "tcp"),
    ] {
        assert_eq!(f[k], v, "field {k} in {l}");
    }
    assert_eq!(f["port"], denied as u64, "{l}");
    assert!(f["message"].as_str().unwrap().contains(&format!("127.0.0.1:{denied}")), "{l}");

    // /metrics: exact kernel counts per container and kind, the gauges, the latency histogram.
    let (status, body) = http_get(port, "/metrics");
    assert!(status.contains("200"), "{status}\n{body}");
    let series = "warden_denials_total{namespace=\"shop\",pod=\"web\",container=\"flood\",profile=\"web\",mode=\"enforce\",kind=\"connect\"}";
    assert_eq!(sample(&body, series), Some(30.0), "{body}");
    assert_eq!(sample(&body, "warden_confined_containers"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "warden_events_dropped_total"), Some(0.0), "{body}");
    assert_eq!(sample(&body, "warden_kernel_layer_available{layer=\"network\"}"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "warden_kernel_layer_available{layer=\"syscalls\"}"), Some(1.0), "{body}");
    assert!(
        sample(&body, "warden_nri_request_duration_seconds_count{request=\"start_container\"}").unwrap_or(0.0) >= 1.0,
        "{body}"
    );
    assert!(body.contains("warden_nri_request_duration_seconds_bucket{le="), "{body}");
    assert_eq!(http_get(port, "/other").0.split(' ').nth(1), Some("404"));

    // A refused profile is counted.
    let bad = c.run_pod("bad", "shop", &[("warden.io/profile", "broken")]).await.unwrap();
    let err = sh(&c, &bad, "app", "true").await.expect_err("broken profile refused");
    assert!(err.message().contains("opnat"), "{}", err.message());
    let (_, body) = http_get(port, "/metrics");
    // Refused at CreateContainer (its reason reaches the user even under crun, which drops a
    // hook's output), so the start never comes.
    assert_eq!(sample(&body, "warden_profile_errors_total{stage=\"create\"}"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "warden_profile_errors_total{stage=\"start\"}"), None, "{body}");

    // Released: its series goes (bounded memory under churn), the gauge follows.
    c.stop_container(&id).await.unwrap();
    eventually(Duration::from_secs(10), "released", || w.confined_ids().is_empty().then_some(()));
    let (_, body) = http_get(port, "/metrics");
    assert_eq!(sample(&body, series), None, "{body}");
    assert_eq!(sample(&body, "warden_confined_containers"), Some(0.0), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_edits_apply_to_running_containers_and_broken_edits_keep_the_old_version() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, a) = listener();
    let (_l2, b) = listener();
    let port = free_port();
    let c = Containerd::start().await.unwrap();
    let extra = format!("log_format = \"json\"\nmetrics_address = \"127.0.0.1:{port}\"");
    let mut w = WardenDaemon::configure(&c.nri_socket, &[("web", connect_only("web", &[a, b]))], &extra);
    w.start();
    let file = w.profiles.join("web.json");

    let pod = c.run_pod("web", "shop", &[("warden.io/profile", "web")]).await.unwrap();
    sh(&c, &pod, "loop", &format!("while :; do {ATTEMPT} connect 127.0.0.1 {b}; sleep 0.1; done")).await.unwrap();
    wait_line(&c, "web", "loop", "ok", "b allowed at first").await;

    // The operator edits the profile: b is no longer allowed. No restart of anything.
    std::fs::write(&file, connect_only("web", &[a])).unwrap();
    wait_line(&c, "web", "loop", "errno=EPERM", "the edit applies to the running container").await;
    assert!(w.log_text().contains("profile reloaded"), "{}", w.log_text());

    // A broken edit: the previous version (b denied) stays, the error names file and reason.
    std::fs::write(&file, r#"{"name":"web","syscalls":{"allow":["opnat"]}}"#).unwrap();
    let err = eventually(Duration::from_secs(10), "the reload error logged", || {
        json_lines(&w)
            .into_iter()
            .find(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains("profile reload FAILED")))
    });
    assert_eq!(err["level"], "ERROR");
    assert_eq!(err["fields"]["file"], file.display().to_string(), "{err}");
    assert!(err["fields"]["error"].as_str().unwrap().contains("opnat"), "{err}");
    assert_eq!(latest_line(&c, "web", "loop").await, "errno=EPERM", "old version still enforced");
    // Every syscall is still allowed by the kept version (the broken one would kill).
    assert!(w.confined_ids().len() == 1);
    let (_, body) = http_get(port, "/metrics");
    assert!(sample(&body, "warden_profile_errors_total{stage=\"reload\"}").unwrap_or(0.0) >= 1.0, "{body}");

    // Fixed again, allowing b: applies.
    std::fs::write(&file, connect_only("web", &[a, b])).unwrap();
    wait_line(&c, "web", "loop", "ok", "the fixed profile applies").await;
}

fn status_field(pid: u32, task: Option<&str>, key: &str) -> String {
    let p = match task {
        Some(t) => format!("/proc/{pid}/task/{t}/status"),
        None => format!("/proc/{pid}/status"),
    };
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} in {p}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_daemon_keeps_only_the_documented_capabilities_and_still_confines() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, a) = listener();
    let (_l2, b) = listener();
    let c = Containerd::start().await.unwrap();
    // No file watch: this test reloads with SIGHUP.
    let mut w =
        WardenDaemon::configure(&c.nri_socket, &[("web", connect_only("web", &[a, b]))], "watch_profiles = false");
    w.start();
    let pid = w.pid().unwrap();

    // CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39): docs/operations.md "Least privilege".
    let want = format!("{:016x}", warden::ops::privs::kept_mask());
    assert_eq!(want, "000000c000001000");
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_field(pid, None, key), want, "{key}");
    }
    assert_eq!(status_field(pid, None, "CapInh"), "0000000000000000");
    assert_eq!(status_field(pid, None, "CapAmb"), "0000000000000000");
    assert_eq!(status_field(pid, None, "NoNewPrivs"), "1");

    // It still confines a new container: sys_enter attached now (raw_tp link), the network
    // programs attached to the new cgroup, maps written and links pinned, all after the drop.
    assert!(!w.warden.link_pinned("sys_enter"), "no syscall policy before the first container");
    let pod = c.run_pod("web", "shop", &[("warden.io/profile", "web")]).await.unwrap();
    let script = format!("while :; do {ATTEMPT} connect 127.0.0.1 {b}; sleep 0.1; done");
    let id = sh(&c, &pod, "loop", &script).await.unwrap();
    assert!(w.warden.link_pinned("sys_enter"));
    wait_line(&c, "web", "loop", "ok", "b allowed").await;
    let other = free_port();
    let one = sh(&c, &pod, "one", &format!("{ATTEMPT} seq 'connect 127.0.0.1 {other}' unshare-uts")).await.unwrap();
    eventually(Duration::from_secs(10), "one exits", || {
        c.container_log("web", "one").contains("unshare-uts").then_some(())
    });
    let _ = one;
    assert!(
        c.container_log("web", "one").starts_with(&format!("connect 127.0.0.1 {other} => errno=EPERM")),
        "{}",
        c.container_log("web", "one")
    );
    // Every thread of the daemon (event reader, NRI handlers) has the reduced sets.
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let t = t.file_name().to_string_lossy().into_owned();
        assert_eq!(status_field(pid, Some(&t), "CapEff"), want, "thread {t}");
    }

    // A reload (SIGHUP) with the reduced set: b denied from now on.
    std::fs::write(w.profiles.join("web.json"), connect_only("web", &[a])).unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    wait_line(&c, "web", "loop", "errno=EPERM", "SIGHUP reload applies").await;

    // And it releases (map deletes, unpinning links) with the reduced set.
    c.stop_container(&id).await.unwrap();
    eventually(Duration::from_secs(10), "loop released", || {
        (w.warden.cgroup_links_total() == 0 && w.confined_ids().is_empty()).then_some(())
    });
    assert!(!w.log_text().contains("ERROR"), "{}", w.log_text());
}

#[test]
fn pins_of_another_map_layout_are_refused_and_left_untouched() {
    if !skip_unless(KERNEL) {
        return;
    }
    let w = Warden::new();
    let cg = TestCgroup::new("layout");
    w.confine(&cg.path, &ProfileBuilder::new("no-net").no_connect().json(), "enforce");
    let links_before = w.cgroup_links(&cg.path);
    // connect4/6, sendmsg4/6, bind4/6, sock_create and the ingress listener check.
    assert_eq!(links_before, 8);
    let current = warden_common_layout(&w);
    set_layout(&w, 999);

    // The daemon refuses to start, and says what to do.
    let cfg = w.tmp.join("config.toml");
    std::fs::write(
        &cfg,
        format!("pin_dir = {:?}\n[nri]\nsocket_path = \"/nonexistent/nri.sock\"\n", w.pin_dir.display().to_string()),
    )
    .unwrap();
    let out = w.run(&["run", "--config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("map layout version 999") && err.contains("warden reset") && err.contains("nothing was adopted"),
        "{err}"
    );
    // So does every writer.
    let cg2 = TestCgroup::new("layout2");
    let f = w.profile_file(&ProfileBuilder::new("other").no_connect().json());
    let out = w.run(&["confine", "--cgroup", cg2.path.to_str().unwrap(), "--profile", f.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("layout version 999"));

    // Nothing was half-adopted: the pins and entries are as they were.
    assert_eq!(w.cgroup_links(&cg.path), links_before);
    set_layout(&w, current);
    assert_eq!(w.confined(&cg.path).expect("still confined")["profile"], "no-net");
    assert!(w.confined(&cg2.path).is_none());
}

fn warden_common_layout(w: &Warden) -> u64 {
    let maps = warden::enforcer::Maps::open(&w.pin_dir).unwrap();
    maps.state.get(&warden::enforcer::maps::STATE_LAYOUT, 0).unwrap()
}

/// Writes the layout version word of the pinned state, as another warden version would have.
fn set_layout(w: &Warden, v: u64) {
    let p = w.pin_dir.join("maps/WARDEN_STATE");
    let data = aya_map(&p);
    let mut state: aya::maps::Array<aya::maps::MapData, u64> = data.try_into().unwrap();
    state.set(warden::enforcer::maps::STATE_LAYOUT, v, 0).unwrap();
}

fn aya_map(p: &std::path::Path) -> aya::maps::Map {
    let d = aya::maps::MapData::from_pin(p).unwrap();
    aya::maps::Map::from_map_data(d).unwrap()
}

trait LinksTotal {
    fn cgroup_links_total(&self) -> usize;
}

impl LinksTotal for Warden {
    /// Per-cgroup link folders left under the pin folder.
    fn cgroup_links_total(&self) -> usize {
        std::fs::read_dir(self.pin_dir.join("cgroups")).map(|d| d.count()).unwrap_or(0)
    }
}

#[test]
fn missing_capabilities_are_named_at_start() {
    if !skip_unless(KERNEL) {
        return;
    }
    use std::os::unix::process::CommandExt as _;
    let w = Warden::new();
    let cfg = w.tmp.join("config.toml");
    std::fs::write(
        &cfg,
        format!("pin_dir = {:?}\n[nri]\nsocket_path = \"/nonexistent/nri.sock\"\n", w.pin_dir.display().to_string()),
    )
    .unwrap();
    let mut cmd = w.command(&["run", "--config", cfg.to_str().unwrap()]);
    // Root's capabilities after exec are the bounding set: drop CAP_NET_ADMIN (12) from it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_CAPBSET_DROP, 12, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("missing capabilities: CAP_NET_ADMIN ("), "{err}");
    assert!(!w.pin_dir.exists(), "nothing loaded or pinned");
}
