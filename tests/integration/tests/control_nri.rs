//! The control socket with containerd's NRI: `warden status` names the pod and container the
//! daemon confined, `warden events --follow --namespace/--container` streams only theirs (the
//! daemon reads the ring, the CLI subscribes), `warden report --container` finds them by id.
//! Real containerd 1.7, real kernel; needs root; under CI=true a missing piece fails the test.
use std::net::TcpListener;
use std::time::Duration;

use serde_json::{json, Value};
use warden_integration_tests::containerd::Containerd;
use warden_integration_tests::scenarios::ATTEMPT;
use warden_integration_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_events_and_report_name_nri_pods() {
    if !(skip_unless(CONTAINERD)) {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let denied = l.local_addr().unwrap().port();
    let c = Containerd::start().await.unwrap();
    let profile = ProfileBuilder::new("no-net").no_connect().json();
    let mut w = WardenDaemon::configure(&c.nri_socket, &[("no-net", profile)], "");
    w.start();

    let mut mine = w.warden.follow_events_with(&["--namespace", "shop", "--container", "looper"]);
    let mut all = w.warden.follow_events();
    eventually(Duration::from_secs(5), "two subscribers", || {
        (w.warden.status()["daemon"]["subscribers"] == json!(2)).then_some(())
    });

    let pod = c.run_pod("web", "shop", &[("warden.io/profile", "no-net")]).await.unwrap();
    let helper = static_attempt();
    let script = format!("while :; do {ATTEMPT} connect 127.0.0.1 {denied}; sleep 0.2; done");
    let mut ids = Vec::new();
    for name in ["looper", "other"] {
        let id = c
            .create_container_with(&pod, name, &["sh", "-c", &script], &[], &[(helper.as_path(), ATTEMPT)])
            .await
            .unwrap();
        c.start_container(&id).await.unwrap();
        ids.push(id);
    }

    // status: both containers with their pod, profile, mode and counters.
    let st = eventually(Duration::from_secs(10), "denials counted", || {
        let st = w.warden.status();
        let n = st["containers"]
            .as_array()
            .map(|cs| cs.iter().filter(|c| c["violations"]["connect"].as_u64().unwrap_or(0) > 0).count());
        (n == Some(2)).then_some(st)
    });
    let looper = st["containers"].as_array().unwrap().iter().find(|c| c["container"] == "looper").cloned().unwrap();
    assert_eq!(
        (
            looper["namespace"].as_str(),
            looper["pod"].as_str(),
            looper["profile"].as_str(),
            looper["mode"].as_str(),
            looper["via"].as_str()
        ),
        (Some("shop"), Some("web"), Some("no-net"), Some("enforce"), Some("nri")),
        "{st}"
    );
    assert_eq!(looper["id"].as_str(), Some(ids[0].as_str()), "{st}");

    // events: the filtered follower gets looper's denials only; the other sees both.
    let ev = mine
        .wait_for(Duration::from_secs(10), |e| e["container"] == "looper")
        .unwrap_or_else(|| panic!("no event\n{}", w.log_text()));
    assert_eq!(
        (ev["pod"].as_str(), ev["verdict"].as_str(), ev["port"].as_u64()),
        (Some("web"), Some("denied"), Some(denied as u64)),
        "{ev}"
    );
    assert!(all.wait_for(Duration::from_secs(10), |e| e["container"] == "other").is_some(), "{:?}", all.seen);
    mine.drain_for(Duration::from_secs(1));
    assert!(mine.seen.iter().all(|e| e["container"] == "looper" && e["namespace"] == "shop"), "{:?}", mine.seen);

    // report --container by id prefix, through the daemon.
    let rep: Value = serde_json::from_str(&w.warden.ok(&["report", "--container", &ids[0][..12], "--json"])).unwrap();
    assert_eq!(rep["cgroup_id"], looper["cgroup_id"], "{rep}");
    assert!(rep["would_deny_counts"]["connect"].as_u64().unwrap_or(0) > 0, "{rep}");

    // Stopping releases: status no longer lists them.
    for id in &ids {
        c.stop_container(id).await.unwrap();
    }
    eventually(Duration::from_secs(10), "release on stop", || {
        (w.warden.status()["containers"] == json!([])).then_some(())
    });
}
