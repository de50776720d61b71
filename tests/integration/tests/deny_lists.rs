//! Node-wide deny lists (issue 22) under the real containerd and `warden run`: a listed
//! destination is refused whatever the profile allows, in every mode, by any address form; a
//! list edit applies to running containers; a malformed edit keeps the old version; and with
//! `deny_lists.node_cgroup` containers warden does not confine are covered too.
//! Needs root; under CI=true a missing piece fails the test.
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use warden_integration_tests::containerd::{Containerd, PodHandle};
use warden_integration_tests::scenarios::{exit_code, latest_line, run_attempts, ATTEMPT};
use warden_integration_tests::*;

/// A TCP listener on every loopback address (127.0.0.2 and ::ffff:127.0.0.3 reach it too).
fn any_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("0.0.0.0:0").unwrap();
    let p = l.local_addr().unwrap().port();
    (l, p)
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

/// Waits until the looping container's latest line is `want`.
async fn wait_line(c: &Containerd, pod: &str, ctr: &str, want: &str, what: &str) {
    for _ in 0..60 {
        if latest_line(c, pod, ctr).await == want {
            return;
        }
    }
    panic!("{what}: latest line of {ctr} is not {want:?}:\n{}", c.container_log(pod, ctr));
}

/// Replaces a list file the way a feed job should (write aside, rename over).
fn publish(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn deny_status(w: &WardenDaemon, name: &str) -> Value {
    let s = w.warden.status();
    s["deny_lists"].as_array().and_then(|l| l.iter().find(|l| l["name"] == name).cloned()).unwrap_or(Value::Null)
}

/// Runs the attempts in a fresh container of `pod` and returns its log lines.
async fn attempts(c: &Containerd, pod: &PodHandle, pod_name: &str, ctr: &str, list: &[String]) -> Vec<String> {
    let id = run_attempts(c, pod, ctr, list).await.unwrap();
    assert_eq!(exit_code(c, &id).await, 0, "{}", c.container_log(pod_name, ctr));
    c.container_log(pod_name, ctr).lines().map(|l| l.trim_end().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_lists_beat_every_profile_live() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, a) = any_listener();
    let (_l2, b) = any_listener();
    let udp = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let u = udp.local_addr().unwrap().port();
    let c = Containerd::start().await.unwrap();
    let lists = tempfile::tempdir().unwrap();
    // Everything on loopback is allowed by the profile; the list takes some of it back.
    let wide =
        ProfileBuilder::new("wide").connect("127.0.0.0/8", &[a, b], "tcp").connect("127.0.0.0/8", &[u], "udp").json();
    publish(lists.path(), "feed.txt", &format!("# a test feed\n127.0.0.3\n127.0.0.2 tcp/{b} ; one port\n"));
    let extra = format!("log_format = \"json\"\n[deny_lists]\ndir = {:?}\n", lists.path().display().to_string());
    let mut w = WardenDaemon::configure(&c.nri_socket, &[("wide", wide)], &extra);
    w.start();
    let st = deny_status(&w, "feed.txt");
    assert_eq!(st["entries"], 2, "{st}");

    // 1. Enforce: the profile allows all of these; the list refuses the listed ones, by any
    //    address form (IPv4-mapped through an AF_INET6 socket) and for UDP sends too.
    let pod = c.run_pod("enf", "shop", &[("warden.io/profile", "wide")]).await.unwrap();
    let got = attempts(
        &c,
        &pod,
        "enf",
        "app",
        &[
            format!("connect 127.0.0.1 {a}"),
            format!("connect 127.0.0.2 {a}"),
            format!("connect 127.0.0.2 {b}"),
            format!("connect 127.0.0.3 {a}"),
            format!("connect ::ffff:127.0.0.3 {a}"),
            format!("udp-send 127.0.0.1 {u}"),
            format!("udp-send 127.0.0.3 {u}"),
        ],
    )
    .await;
    assert_eq!(
        got,
        vec![
            format!("connect 127.0.0.1 {a} => ok"),
            format!("connect 127.0.0.2 {a} => ok"),
            format!("connect 127.0.0.2 {b} => errno=EPERM"),
            format!("connect 127.0.0.3 {a} => errno=EPERM"),
            format!("connect ::ffff:127.0.0.3 {a} => errno=EPERM"),
            format!("udp-send 127.0.0.1 {u} => ok"),
            format!("udp-send 127.0.0.3 {u} => errno=EPERM"),
        ]
    );
    // The event names the list and the line.
    let ev = eventually(Duration::from_secs(10), "a deny-list event in the log", || {
        w.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["fields"]["deny_list"] == "feed.txt" && l["fields"]["address"] == "127.0.0.3")
    });
    assert_eq!(ev["fields"]["deny_line"], 2, "{ev}");
    assert_eq!(ev["fields"]["verdict"], "denied", "{ev}");
    assert!(deny_status(&w, "feed.txt")["hits"].as_u64().unwrap() >= 4);

    // 2. Complain and learn: a deny list is not something to learn; refused there too.
    for mode in ["complain", "learn"] {
        let pod = c.run_pod(mode, "shop", &[("warden.io/profile", "wide"), ("warden.io/mode", mode)]).await.unwrap();
        let got =
            attempts(&c, &pod, mode, "app", &[format!("connect 127.0.0.3 {a}"), format!("connect 127.0.0.1 {a}")])
                .await;
        assert_eq!(
            got,
            vec![format!("connect 127.0.0.3 {a} => errno=EPERM"), format!("connect 127.0.0.1 {a} => ok")],
            "mode {mode}"
        );
    }

    // 3. Live: a running container's connects follow the list's edits, no restart.
    let pod = c.run_pod("live", "shop", &[("warden.io/profile", "wide")]).await.unwrap();
    sh(&c, &pod, "loop", &format!("while :; do {ATTEMPT} connect 127.0.0.4 {a}; sleep 0.1; done")).await.unwrap();
    wait_line(&c, "live", "loop", "ok", "127.0.0.4 is not listed yet").await;
    publish(lists.path(), "feed.txt", &format!("127.0.0.3\n127.0.0.2 tcp/{b}\n127.0.0.4/32\n"));
    wait_line(&c, "live", "loop", "errno=EPERM", "the added entry applies to the running container").await;
    let v1 = deny_status(&w, "feed.txt")["version"].clone();

    // 4. A malformed edit: refused whole, with file and line; the version in force stays.
    publish(lists.path(), "feed.txt", "127.0.0.3\nthis is not an address\n");
    let st = eventually(Duration::from_secs(10), "the refusal in status", || {
        let st = deny_status(&w, "feed.txt");
        st["error"].is_string().then_some(st)
    });
    let err = st["error"].as_str().unwrap();
    assert!(err.contains("feed.txt:2: ") && err.contains("not an IPv4 or IPv6"), "{err}");
    assert_eq!(st["version"], v1, "the previous version stays in force: {st}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(latest_line(&c, "live", "loop").await, "errno=EPERM", "127.0.0.4 still refused");
    assert!(w.log_text().contains("deny list REFUSED"), "{}", w.log_text());

    // 5. Removing the entry (a good edit again) lets the running container through.
    publish(lists.path(), "feed.txt", "127.0.0.3\n");
    wait_line(&c, "live", "loop", "ok", "the removed entry no longer applies").await;
    let st = deny_status(&w, "feed.txt");
    assert!(st["error"].is_null() && st["entries"] == 1, "{st}");

    // 6. A list file removed: its entries go.
    std::fs::remove_file(lists.path().join("feed.txt")).unwrap();
    eventually(Duration::from_secs(10), "the list gone from status", || {
        deny_status(&w, "feed.txt").is_null().then_some(())
    });
    let got = attempts(&c, &pod, "live", "after", &[format!("connect 127.0.0.3 {a}")]).await;
    assert_eq!(got, vec![format!("connect 127.0.0.3 {a} => ok")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_wide_deny_lists_cover_unconfined_containers() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, a) = any_listener();
    let c = Containerd::start().await.unwrap();
    let lists = tempfile::tempdir().unwrap();
    publish(lists.path(), "metadata", "127.0.0.5 ; stands in for 169.254.169.254\n");
    // The private containerd puts its pods below this cgroup, as kubelet does below kubepods.
    let extra = format!(
        "log_format = \"json\"\n[deny_lists]\ndir = {:?}\nnode_cgroup = {:?}\n",
        lists.path().display().to_string(),
        c.cgroup_parent
    );
    let mut w = WardenDaemon::configure(&c.nri_socket, &[], &extra);
    w.start();
    assert!(w.warden.link_pinned("deny_warden_deny_connect4"), "node-wide programs pinned");

    // No annotation: warden does not confine this pod, and the list still applies.
    let pod = c.run_pod("plain", "shop", &[]).await.unwrap();
    let got = attempts(
        &c,
        &pod,
        "plain",
        "app",
        &[format!("connect 127.0.0.1 {a}"), format!("connect 127.0.0.5 {a}"), format!("udp-send 127.0.0.5 {a}")],
    )
    .await;
    assert_eq!(
        got,
        vec![
            format!("connect 127.0.0.1 {a} => ok"),
            format!("connect 127.0.0.5 {a} => errno=EPERM"),
            format!("udp-send 127.0.0.5 {a} => errno=EPERM"),
        ]
    );
    let ev = eventually(Duration::from_secs(10), "the unconfined container's event", || {
        w.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["fields"]["deny_list"] == "metadata")
    });
    assert_eq!(ev["fields"]["profile"], "(not confined)", "{ev}");
    assert_ne!(ev["fields"]["cgroup_id"], 0, "{ev}");

    // warden's own namespace is exempt (its containers are not confined either).
    let own = c.run_pod("own", "warden-system", &[]).await.unwrap();
    let got = attempts(&c, &own, "own", "app", &[format!("connect 127.0.0.5 {a}")]).await;
    assert_eq!(got, vec![format!("connect 127.0.0.5 {a} => ok")], "warden's own namespace is exempt");

    // This test's own process is not below the pods' cgroup: not covered.
    let s = std::net::TcpStream::connect(("127.0.0.5", a));
    assert!(s.is_ok(), "the host outside node_cgroup is not covered: {s:?}");

    // Stopping the daemon with the config changed detaches them: a restart without
    // node_cgroup leaves no node-wide program behind.
    w.kill();
    let text = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(&w.config, text.replace(&format!("node_cgroup = {:?}\n", c.cgroup_parent), "")).unwrap();
    w.start();
    assert!(!w.warden.link_pinned("deny_warden_deny_connect4"), "node-wide programs detached");
    let got = attempts(&c, &pod, "plain", "after", &[format!("connect 127.0.0.5 {a}")]).await;
    assert_eq!(got, vec![format!("connect 127.0.0.5 {a} => ok")]);
}
