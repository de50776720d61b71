//! warden as containerd's NRI plugin, end to end: a private containerd 1.7, `warden run`, real
//! pods annotated with profiles, and the static `warden-attempt` inside busybox containers
//! reporting exactly what happened. Needs root; under CI=true a missing piece fails the test.
use std::time::Duration;

use warden_integration_tests::containerd::{Containerd, PodHandle};
use warden_integration_tests::scenarios::{exit_code, free_port, latest_line, listener, run_attempts, ATTEMPT};
use warden_integration_tests::*;

/// Every syscall but unshare; connect only to 127.0.0.1:`port`; no bind.
fn app_profile(name: &str, port: u16) -> String {
    ProfileBuilder::new(name).syscalls_all_except(&["unshare"]).connect("127.0.0.1/32", &[port], "tcp").no_bind().json()
}

fn no_net(name: &str) -> String {
    ProfileBuilder::new(name).no_connect().json()
}

/// Starts a container that repeats one attempt every 100 ms until stopped.
async fn run_loop(c: &Containerd, pod: &PodHandle, name: &str, attempt: &str) -> String {
    let helper = static_attempt();
    let script = format!("while :; do {ATTEMPT} {attempt}; sleep 0.1; done");
    let id =
        c.create_container_with(pod, name, &["sh", "-c", &script], &[], &[(helper.as_path(), ATTEMPT)]).await.unwrap();
    c.start_container(&id).await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_pod_is_confined_from_its_first_instruction() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, allowed) = listener();
    let (_l2, other) = listener();
    let c = Containerd::start().await.unwrap();
    let mut w = WardenDaemon::configure(&c.nri_socket, &[("web", app_profile("web", allowed))], "");
    w.start();

    let pod = c.run_pod("web", "shop", &[("warden.io/profile", "web")]).await.unwrap();
    // The entrypoint's very first action is forbidden: the policy must already be there.
    let first = run_attempts(&c, &pod, "first", &["unshare-uts".into()]).await.unwrap();
    assert_eq!(exit_code(&c, &first).await, 137, "killed by SIGKILL:\n{}", c.container_log("web", "first"));
    assert_eq!(c.container_log("web", "first").trim(), "unshare-uts =>");

    let id = run_attempts(
        &c,
        &pod,
        "tries",
        &[
            format!("connect 127.0.0.1 {allowed}"),
            format!("connect 127.0.0.1 {other}"),
            "bind-tcp 127.0.0.1 4444".into(),
            "raw-socket".into(),
            "getpid".into(),
            "unshare-uts".into(),
        ],
    )
    .await
    .unwrap();
    assert_eq!(exit_code(&c, &id).await, 137);
    let log = c.container_log("web", "tries");
    let lines: Vec<&str> = log.lines().map(str::trim_end).collect();
    assert_eq!(
        lines,
        [
            format!("connect 127.0.0.1 {allowed} => ok").as_str(),
            format!("connect 127.0.0.1 {other} => errno=EPERM").as_str(),
            "bind-tcp 127.0.0.1 4444 => errno=EPERM",
            "raw-socket => errno=EPERM",
            "getpid => ok",
            "unshare-uts =>",
        ],
        "{log}"
    );
    // The daemon logged the denials with pod, namespace and container.
    eventually(Duration::from_secs(5), "denial logged", || {
        let l = w.log_text();
        (l.contains("pod=web") && l.contains("container=tries") && l.contains(&format!("127.0.0.1:{other}")))
            .then_some(())
    });
    assert!(w.log_text().contains("confined"), "{}", w.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unannotated_pods_are_untouched_and_containers_get_their_own_profiles() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, port) = listener();
    let c = Containerd::start().await.unwrap();
    let mut w =
        WardenDaemon::configure(&c.nri_socket, &[("no-net", no_net("no-net")), ("web", app_profile("web", port))], "");
    w.start();

    let plain = c.run_pod("plain", "shop", &[]).await.unwrap();
    let id = run_attempts(
        &c,
        &plain,
        "free",
        &[format!("connect 127.0.0.1 {port}"), "unshare-uts".into(), "raw-socket".into()],
    )
    .await
    .unwrap();
    assert_eq!(exit_code(&c, &id).await, 0);
    // Untouched: unshare fails only for want of CAP_SYS_ADMIN (as in any container), it is
    // not killed; raw sockets are allowed by the runtime's default CAP_NET_RAW.
    assert_eq!(
        c.container_log("plain", "free"),
        format!("connect 127.0.0.1 {port} => ok\nunshare-uts => errno=EPERM\nraw-socket => ok")
    );

    let two = c
        .run_pod("two", "shop", &[("warden.io/profile", "web"), ("warden.io/profile.isolated", "no-net")])
        .await
        .unwrap();
    let a = run_attempts(&c, &two, "app", &[format!("connect 127.0.0.1 {port}")]).await.unwrap();
    let b = run_attempts(&c, &two, "isolated", &[format!("connect 127.0.0.1 {port}")]).await.unwrap();
    assert_eq!(exit_code(&c, &a).await, 0);
    assert_eq!(exit_code(&c, &b).await, 0);
    assert_eq!(c.container_log("two", "app"), format!("connect 127.0.0.1 {port} => ok"));
    assert_eq!(c.container_log("two", "isolated"), format!("connect 127.0.0.1 {port} => errno=EPERM"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_policies_fail_the_start_unless_fail_open() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let c = Containerd::start().await.unwrap();
    let mut w = WardenDaemon::configure(
        &c.nri_socket,
        &[("broken", r#"{"name":"broken","syscalls":{"allow":["opnat"]}}"#.into())],
        "",
    );
    w.start();

    let cases = [
        ("unknown", vec![("warden.io/profile", "nope")], "unknown profile"),
        ("tricks", vec![("warden.io/profile", "../../etc/passwd")], "profile name"),
        ("badmode", vec![("warden.io/profile", "broken"), ("warden.io/mode", "audit")], "unknown mode"),
        ("invalid", vec![("warden.io/profile", "broken")], "opnat"),
        ("typo", vec![("warden.io/profle", "x")], "unknown warden annotation"),
    ];
    for (pod_name, ann, why) in &cases {
        let pod = c.run_pod(pod_name, "shop", ann).await.unwrap();
        let err = run_attempts(&c, &pod, "app", &["getpid".into()]).await.expect_err("start must fail");
        let msg = err.message();
        assert!(msg.contains(why), "{pod_name}: {msg}");
        assert!(msg.contains(&format!("pod shop/{pod_name}")) && msg.contains("container app"), "{pod_name}: {msg}");
    }
    assert!(w.confined_ids().is_empty(), "nothing half-applied");
    drop(w);

    // fail_open: the same unknown profile starts, unconfined, with a loud warning.
    let mut w = WardenDaemon::configure(&c.nri_socket, &[], "fail_open = true");
    w.start();
    let pod = c.run_pod("open", "shop", &[("warden.io/profile", "nope")]).await.unwrap();
    let id = run_attempts(&c, &pod, "app", &["unshare-uts".into()]).await.unwrap();
    assert_eq!(exit_code(&c, &id).await, 0);
    assert!(w.log_text().contains("FAIL-OPEN"), "{}", w.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_remove_clean_up_every_entry_and_link() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, port) = listener();
    let c = Containerd::start().await.unwrap();
    let mut w = WardenDaemon::configure(&c.nri_socket, &[("web", app_profile("web", port))], "");
    w.start();
    let pod = c.run_pod("web", "shop", &[("warden.io/profile", "web")]).await.unwrap();
    let id = run_loop(&c, &pod, "loop", &format!("connect 127.0.0.1 {port}")).await;
    assert_eq!(w.confined_ids().len(), 1);
    assert!(w.warden.link_pinned("sys_enter"));
    c.stop_container(&id).await.unwrap();
    c.remove_container(&id).await.unwrap();
    eventually(Duration::from_secs(5), "entries released", || w.confined_ids().is_empty().then_some(()));
    let links = std::fs::read_dir(w.warden.pin_dir.join("cgroups")).unwrap().count();
    assert_eq!(links, 0, "no per-cgroup links left");
    // The node-wide syscall hook outlives its last user by hook_idle_detach_seconds (120 s by
    // default; the churn test sees it go): no kernel text patching at every stop and start.
    assert!(w.warden.link_pinned("sys_enter"), "sys_enter kept attached through the idle grace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcement_survives_containerd_and_warden_restarts_and_late_starts() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, port) = listener();
    let connect = format!("connect 127.0.0.1 {port}");
    let mut c = Containerd::start().await.unwrap();
    let mut w = WardenDaemon::configure(&c.nri_socket, &[("no-net", no_net("no-net"))], "");

    // Started before warden: NRI lets it run unconfined; Synchronize confines it.
    let early = c.run_pod("early", "shop", &[("warden.io/profile", "no-net")]).await.unwrap();
    run_loop(&c, &early, "loop", &connect).await;
    assert_eq!(latest_line(&c, "early", "loop").await, "ok");
    w.start();
    eventually(Duration::from_secs(5), "synchronize confines the running container", || {
        (c.container_log("early", "loop").lines().last() == Some("errno=EPERM")).then_some(())
    });

    // containerd restarts: warden reconnects; the running container stays confined.
    let regs = w.registrations();
    c.restart().await.unwrap();
    eventually(Duration::from_secs(15), "warden reconnects", || (w.registrations() > regs).then_some(()));
    assert_eq!(latest_line(&c, "early", "loop").await, "errno=EPERM");
    let after = c.run_pod("after", "shop", &[("warden.io/profile", "no-net")]).await.unwrap();
    let id = run_attempts(&c, &after, "app", std::slice::from_ref(&connect)).await.unwrap();
    assert_eq!(exit_code(&c, &id).await, 0);
    assert_eq!(c.container_log("after", "app"), format!("{connect} => errno=EPERM"));

    // warden killed with SIGKILL: still enforced while it is down; a new warden adopts.
    w.kill();
    assert_eq!(latest_line(&c, "early", "loop").await, "errno=EPERM", "enforced while warden is down");
    let confined_before = w.confined_ids();
    assert!(!confined_before.is_empty());
    w.start();
    assert_eq!(latest_line(&c, "early", "loop").await, "errno=EPERM");
    let late = c.run_pod("late", "shop", &[("warden.io/profile", "no-net")]).await.unwrap();
    let id = run_attempts(&c, &late, "app", std::slice::from_ref(&connect)).await.unwrap();
    assert_eq!(exit_code(&c, &id).await, 0);
    assert_eq!(c.container_log("late", "app"), format!("{connect} => errno=EPERM"));
    // The adopted entry of the still-running container was kept through the restart.
    let loop_cgroup = w.confined_ids().into_iter().filter(|id| confined_before.contains(id)).count();
    assert!(loop_cgroup >= 1, "the running container's pinned entry was adopted, not dropped");
}

/// The built-in profiles from profiles/, as the daemon's profile folder, with their service
/// port 8080 moved to `port`: pods here share the host's network, where 8080 may be taken by
/// anything, so the test picks a free port instead of assuming one (the rules are otherwise
/// exactly the shipped ones).
fn builtin_profiles(port: u16) -> Vec<(String, String)> {
    fn move_port(v: &mut serde_json::Value, port: u16) {
        match v {
            serde_json::Value::Object(m) => m.values_mut().for_each(|v| move_port(v, port)),
            serde_json::Value::Array(a) => a.iter_mut().for_each(|v| move_port(v, port)),
            n if n.as_u64() == Some(8080) => *n = port.into(),
            _ => {}
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles");
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
            if let Some(net) = v.get_mut("network") {
                move_port(net, port);
            }
            (e.path().file_stem().unwrap().to_string_lossy().into_owned(), v.to_string())
        })
        .collect()
}

async fn sh(c: &Containerd, pod: &PodHandle, name: &str, script: &str) -> String {
    let helper = static_attempt();
    let id =
        c.create_container_with(pod, name, &["sh", "-c", script], &[], &[(helper.as_path(), ATTEMPT)]).await.unwrap();
    c.start_container(&id).await.unwrap_or_else(|s| panic!("start {name}: {}", s.message()));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_profiles_run_their_workloads() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let c = Containerd::start().await.unwrap();
    let (port, other_port) = (free_port(), free_port());
    let profiles = builtin_profiles(port);
    let refs: Vec<(&str, String)> = profiles.iter().map(|(n, j)| (n.as_str(), j.clone())).collect();
    let mut w = WardenDaemon::configure(&c.nri_socket, &refs, "");
    w.start();

    // busybox httpd under busybox-httpd: serves on its port; may not listen anywhere else.
    let web = c.run_pod("httpd", "shop", &[("warden.io/profile", "busybox-httpd")]).await.unwrap();
    sh(
        &c,
        &web,
        "server",
        &format!("mkdir -p /tmp/www && echo hello-from-warden > /tmp/www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /tmp/www"),
    )
    .await;
    eventually(Duration::from_secs(10), "httpd listening", || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    let other = sh(&c, &web, "other-port", &format!("httpd -f -p 127.0.0.1:{other_port} -h /tmp; echo rc=$?")).await;
    exit_code(&c, &other).await;
    let log = c.container_log("httpd", "other-port");
    assert!(log.contains("Operation not permitted") && log.contains("rc=1"), "bind {other_port} refused:\n{log}");

    // A client under client-one-address: 127.0.0.1:port only. (No `wget -T`: bookworm's
    // busybox wget segfaults on its timeout path even unconfined.)
    let client = c.run_pod("client", "shop", &[("warden.io/profile", "client-one-address")]).await.unwrap();
    let fetch = format!("wget -q -O- http://127.0.0.1:{port}/; wget -q -O- http://127.0.0.2:{port}/; echo rc=$?");
    let id = sh(&c, &client, "wget", &fetch).await;
    assert_eq!(exit_code(&c, &id).await, 0);
    let log = c.container_log("client", "wget");
    assert!(log.contains("hello-from-warden"), "allowed fetch works:\n{log}");
    assert!(log.contains("Operation not permitted") && log.contains("rc=1"), "127.0.0.2 refused:\n{log}");

    // deny-network: no connect at all.
    let isolated = c.run_pod("isolated", "shop", &[("warden.io/profile", "deny-network")]).await.unwrap();
    let id = sh(&c, &isolated, "wget", &format!("wget -q -O- http://127.0.0.1:{port}/; echo rc=$?")).await;
    assert_eq!(exit_code(&c, &id).await, 0);
    let log = c.container_log("isolated", "wget");
    assert!(log.contains("Operation not permitted") && log.contains("rc=1"), "{log}");

    // runtime-default: an ordinary shell workload runs; unshare (not in the list) is killed.
    let plain = c.run_pod("shell", "shop", &[("warden.io/profile", "runtime-default")]).await.unwrap();
    let id = sh(
        &c,
        &plain,
        "work",
        "echo start; ls / >/dev/null; cat /proc/self/status >/dev/null; date >/dev/null; sleep 0.1; echo done",
    )
    .await;
    assert_eq!(exit_code(&c, &id).await, 0, "{}", c.container_log("shell", "work"));
    assert_eq!(c.container_log("shell", "work"), "start\ndone");
    let id = sh(&c, &plain, "ns", &format!("{ATTEMPT} unshare-uts")).await;
    assert_eq!(exit_code(&c, &id).await, 137);

    // readonly needs BPF-LSM (files rules). Where the kernel cannot run it, the pod is refused
    // and the message says what is missing; where it can, the VM tests cover it.
    let probe: serde_json::Value = serde_json::from_str(&w.warden.ok(&["probe", "--json"])).unwrap();
    let lsm = probe["layers"].as_array().unwrap().iter().find(|l| l["name"] == "bpf-lsm").unwrap().clone();
    if lsm["available"] == false {
        let ro = c.run_pod("ro", "shop", &[("warden.io/profile", "readonly")]).await.unwrap();
        let err = run_attempts(&c, &ro, "app", &["getpid".into()]).await.expect_err("refused without BPF-LSM");
        let msg = err.message();
        assert!(msg.contains("bpf-lsm") && msg.contains("pod shop/ro"), "{msg}");
    }
}

/// Learn mode end to end (src/scenarios.rs): on this host without BPF-LSM, syscalls and
/// network; the same scenario runs in the VMs with files and execs (tests/lsm.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_profile_is_written_on_stop_and_enforced_pods_start_every_time() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    warden_integration_tests::scenarios::learned_pod_scenario().await;
}
