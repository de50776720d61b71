//! Pieces shared by the containerd test files (warden_nri.rs on this host, lsm.rs in the VMs):
//! the static `warden-attempt` inside busybox containers, and the learn-mode scenario.
use std::net::TcpListener;
use std::time::Duration;

use crate::containerd::{Containerd, PodHandle};
use crate::{eventually, static_attempt, WardenDaemon};

pub const ATTEMPT: &str = "/warden-attempt";

/// A TCP port free on 127.0.0.1 right now: the kernel's pick, bound and released for the
/// caller (a server in a container) to take.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback TCP listener and its port. A thread accepts (and drops) every connection: a
/// container that connects in a loop must not fill the accept queue (128), after which its
/// connects hang in SYN retries. Seen in the VMs, where a daemon start takes ~15 s and a loop
/// ran past 128 connects before warden confined it. The port stays bound for the process.
pub fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    let acceptor = l.try_clone().unwrap();
    std::thread::spawn(move || {
        for conn in acceptor.incoming() {
            drop(conn);
        }
    });
    (l, p)
}

/// Creates and starts a container running `warden-attempt seq ATTEMPTS...`.
pub async fn run_attempts(
    c: &Containerd,
    pod: &PodHandle,
    name: &str,
    attempts: &[String],
) -> Result<String, tonic::Status> {
    let helper = static_attempt();
    let mut cmd = vec![ATTEMPT, "seq"];
    cmd.extend(attempts.iter().map(String::as_str));
    let id = c
        .create_container_with(pod, name, &cmd, &[], &[(helper.as_path(), ATTEMPT)])
        .await
        .map_err(|e| tonic::Status::internal(format!("{e:#}")))?;
    c.start_container(&id).await?;
    Ok(id)
}

/// Waits for a container to exit; returns its exit code.
pub async fn exit_code(c: &Containerd, id: &str) -> i32 {
    for _ in 0..300 {
        let st = c.container_status(id).await.unwrap();
        if st.finished_at != 0 {
            return st.exit_code;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("container {id} did not exit");
}

/// The last non-empty log line of a looping container, after at least two new lines.
pub async fn latest_line(c: &Containerd, pod: &str, ctr: &str) -> String {
    let before = c.container_log(pod, ctr).lines().count();
    for _ in 0..100 {
        let log = c.container_log(pod, ctr);
        if log.lines().count() >= before + 2 {
            return log.lines().last().unwrap_or("").to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("container {ctr} stopped logging:\n{}", c.container_log(pod, ctr));
}

fn lines(log: &str) -> Vec<String> {
    log.lines().map(|l| l.trim_end().to_string()).collect()
}

/// Learn mode end to end: a pod annotated `warden.io/mode: learn` runs its workload; when the
/// container stops the daemon writes its profile; the same workload in 10 new pods enforced
/// with that profile starts and works every time, and each new thing is blocked: another port,
/// a new syscall and, where BPF-LSM works (the VMs), a new file read and a new exec.
pub async fn learned_pod_scenario() {
    let (_l, port) = listener();
    let (_l2, other) = listener();
    let pb = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = Containerd::start().await.unwrap();
    // Removed on drop, also when the test fails.
    let learn_tmp = tempfile::Builder::new().prefix("warden-test-learned-").tempdir().unwrap();
    let learn_dir = learn_tmp.path().join("learned");
    let mut w =
        WardenDaemon::configure(&c.nri_socket, &[], &format!("learn_dir = {:?}", learn_dir.display().to_string()));
    w.start();
    let probe: serde_json::Value = serde_json::from_str(&w.warden.ok(&["probe", "--json"])).unwrap();
    let files = probe["layers"].as_array().unwrap().iter().any(|l| l["name"] == "bpf-lsm" && l["available"] == true);

    // /etc/hosts is the runtime's bind mount into the container; /bin/true is a symlink to
    // /bin/busybox (exec judges the resolved path).
    let attempts: Vec<String> = vec![
        format!("connect 127.0.0.1 {port}"),
        format!("bind-tcp 127.0.0.1 {pb}"),
        "unix-socket".into(),
        "getpid".into(),
        "open-r /etc/hosts".into(),
        "exec /bin/true".into(),
    ];
    let pod = c.run_pod("learnme", "shop", &[("warden.io/mode", "learn")]).await.unwrap();
    let id = run_attempts(&c, &pod, "app", &attempts).await.unwrap();
    assert_eq!(exit_code(&c, &id).await, 0, "{}", c.container_log("learnme", "app"));
    // What the kernel holds before the stop writes the profile (printed for the record).
    let status = w.warden.run(&["status", "--json"]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    eprintln!("status before the stop: {}", &status[..status.len().min(3000)]);
    c.stop_container(&id).await.unwrap();
    let file = learn_dir.join("shop_learnme_app.json");
    eventually(Duration::from_secs(20), "the learned profile to be written", || file.exists().then_some(()));
    let text = std::fs::read_to_string(&file).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["name"], "shop_learnme_app");
    assert!(v["description"].as_str().unwrap().contains("container app of pod shop/learnme"), "{text}");
    if files {
        let rules: Vec<String> = v["files"]
            .as_array()
            .expect("files learned")
            .iter()
            .map(|r| format!("{} {}", r["path"].as_str().unwrap(), r["access"].as_str().unwrap()))
            .collect();
        eprintln!("learned files rules of the pod: {rules:?}");
        if rules.is_empty() {
            let log: Vec<String> =
                w.log_text().lines().filter(|l| l.contains("learn") || l.contains("lsm")).map(String::from).collect();
            panic!("no files learned; profile:\n{text}\ndaemon log:\n{}\nall:\n{}", log.join("\n"), w.log_text());
        }
        for want in ["/etc/hosts r", "/bin/busybox", "/warden-attempt"] {
            assert!(
                rules.iter().any(|r| r.starts_with(want) && r.ends_with('x') || r == want),
                "{want} learned: {rules:?}"
            );
        }
        assert!(!rules.iter().any(|r| r.starts_with("/etc/passwd") || r.starts_with("/other-tool")), "{rules:?}");
    } else {
        assert!(v.get("files").is_none() || v["files"].is_null(), "files not recorded without BPF-LSM: {text}");
        assert!(text.contains("BPF-LSM is not usable"), "{text}");
    }
    let validate = w.warden.run(&["profile", "validate", file.to_str().unwrap()]);
    assert!(validate.status.success(), "{}", String::from_utf8_lossy(&validate.stdout));
    assert!(w.confined_ids().is_empty(), "released after writing");
    c.remove_container(&id).await.unwrap();
    c.remove_pod(&pod.id).await.unwrap();

    // Enforce it: the daemon finds it by name in its profile folder.
    std::fs::copy(&file, w.profiles.join("shop_learnme_app.json")).unwrap();
    let want: Vec<String> = attempts.iter().map(|a| format!("{a} => ok")).collect();
    for i in 0..10 {
        let name = format!("enforced{i}");
        let pod = c.run_pod(&name, "shop", &[("warden.io/profile", "shop_learnme_app")]).await.unwrap();
        let id = run_attempts(&c, &pod, "app", &attempts)
            .await
            .unwrap_or_else(|e| panic!("start {i}: {e}\n{}", w.log_text()));
        let code = exit_code(&c, &id).await;
        let denials: Vec<String> =
            w.log_text().lines().filter(|l| l.contains("warden::event")).map(String::from).collect();
        assert_eq!(
            code,
            0,
            "run {i}: {}\ndenials:\n{}\nlearned profile:\n{text}\ndaemon log:\n{}",
            c.container_log(&name, "app"),
            denials.join("\n"),
            w.log_text()
        );
        assert_eq!(lines(&c.container_log(&name, "app")), want, "run {i}");
        c.remove_container(&id).await.unwrap();
        c.remove_pod(&pod.id).await.unwrap();
    }
    // New things are blocked: a new file read and a new exec (BPF-LSM), another port, a new
    // syscall (killed: the last line).
    let mut new_things: Vec<String> = Vec::new();
    let mut expect: Vec<String> = Vec::new();
    if files {
        // /other-tool: a binary the learned run never executed (the helper mounted again).
        new_things.extend(["open-r /etc/passwd".to_string(), "exec /other-tool getpid".to_string()]);
        expect.extend([
            "open-r /etc/passwd => errno=EPERM".to_string(),
            "exec /other-tool getpid => errno=EPERM".to_string(),
        ]);
    }
    new_things.extend([format!("connect 127.0.0.1 {other}"), "unshare-uts".into()]);
    expect.extend([format!("connect 127.0.0.1 {other} => errno=EPERM"), "unshare-uts =>".into()]);
    let pod = c.run_pod("enforced-new", "shop", &[("warden.io/profile", "shop_learnme_app")]).await.unwrap();
    let helper = static_attempt();
    let mut cmd = vec![ATTEMPT, "seq"];
    cmd.extend(new_things.iter().map(String::as_str));
    let id = c
        .create_container_with(
            &pod,
            "app",
            &cmd,
            &[],
            &[(helper.as_path(), ATTEMPT), (helper.as_path(), "/other-tool")],
        )
        .await
        .unwrap();
    c.start_container(&id).await.unwrap();
    assert_eq!(exit_code(&c, &id).await, 137);
    let log = c.container_log("enforced-new", "app");
    assert_eq!(lines(&log), expect, "{log}");
    // For the record: how long the daemon took per StartContainer, and how often it
    // (re)registered with containerd (a handler slower than containerd's plugin request
    // timeout makes containerd drop the plugin; it then reconnects and resynchronizes).
    let log = w.log_text();
    let micros: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("micros=").nth(1))
        .map(|m| m.split_whitespace().next().unwrap_or(""))
        .collect();
    let registrations = log.lines().filter(|l| l.contains("registered with the runtime")).count();
    eprintln!("StartContainer handling (us): {micros:?}; registrations: {registrations}");
    if files {
        // Reported with the full path.
        let log = w.log_text();
        assert!(
            log.lines()
                .any(|l| l.contains("warden::event") && l.contains("/etc/passwd") && l.contains("pod=enforced-new")),
            "the denied read is reported with its path and pod:\n{log}"
        );
    }
}
