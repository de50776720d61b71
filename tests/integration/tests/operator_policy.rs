//! Who decides (issue 16): the operator's `[[policy.rules]]` limit what pod annotations may
//! choose, and a baseline stays in force under whatever the pod picks, in enforce and in
//! learn. Real containerd 1.7, `warden run`, busybox pods running `warden-attempt`.
//! Needs root; under CI=true a missing piece fails the test.
use warden_integration_tests::containerd::Containerd;
use warden_integration_tests::scenarios::{exit_code, listener, run_attempts};
use warden_integration_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_authors_cannot_go_below_the_operators_policy() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l1, allowed) = listener();
    let (_l2, other) = listener();
    let c = Containerd::start().await.unwrap();
    // Learn-mode containers write their profile here when they stop (not the host's folder).
    let learned = tempfile::tempdir().unwrap();
    let learn_dir = format!("learn_dir = {:?}\n", learned.path().display().to_string());

    // 1. The measured bypass: a node-wide default profile, and a pod saying only
    //    `mode: learn`. Before issue 16 its connect succeeded.
    {
        let mut w = WardenDaemon::configure(
            &c.nri_socket,
            &[("no-net", ProfileBuilder::new("no-net").no_connect().json())],
            &format!("{learn_dir}[policy]\ndefault_profile = \"no-net\"\n"),
        );
        w.start();
        let pod = c.run_pod("bypass", "shop", &[("warden.io/mode", "learn")]).await.unwrap();
        let id = run_attempts(&c, &pod, "app", &[format!("connect 127.0.0.1 {allowed}")]).await.unwrap();
        assert_eq!(exit_code(&c, &id).await, 0);
        assert_eq!(
            c.container_log("bypass", "app"),
            format!("connect 127.0.0.1 {allowed} => errno=EPERM"),
            "learn mode kept the node-wide default enforced"
        );
        // complain cannot keep a floor: refused, naming the implicit rule.
        let pod = c.run_pod("complain", "shop", &[("warden.io/mode", "complain")]).await.unwrap();
        let msg = run_attempts(&c, &pod, "app", &["getpid".into()]).await.expect_err("refused").message().to_string();
        assert!(msg.contains("mode complain is not allowed") && msg.contains("rule \"default\""), "{msg}");
    }

    // 2. Namespace rules. `lab` may learn inside a baseline; everyone else may only pick
    //    `web`, in enforce. fail_open is on: it must not cover rule violations.
    let floor = ProfileBuilder::new("floor")
        .syscalls_all_except(&["unshare"])
        .connect("127.0.0.1/32", &[allowed], "tcp")
        .json();
    let web = ProfileBuilder::new("web").connect("127.0.0.1/32", &[allowed, other], "tcp").json();
    let wide = ProfileBuilder::new("wide").json();
    let rules = learn_dir.clone()
        + r#"fail_open = true
[[policy.rules]]
name = "lab-learns"
namespaces = ["lab", "lab-*"]
modes = ["enforce", "learn"]
baseline = "floor"

[[policy.rules]]
name = "strict"
namespaces = ["*"]
profiles = ["web"]
"#;
    let mut w = WardenDaemon::configure(&c.nri_socket, &[("floor", floor), ("web", web), ("wide", wide)], &rules);
    w.start();
    let tries = [format!("connect 127.0.0.1 {allowed}"), format!("connect 127.0.0.1 {other}"), "unshare-uts".into()];
    // The floor refuses `other` and kills on unshare (the last attempt never answers).
    let expect_floor =
        format!("connect 127.0.0.1 {allowed} => ok\nconnect 127.0.0.1 {other} => errno=EPERM\nunshare-uts =>");

    // The baseline intersects: `web` allows `other`, the floor does not.
    let pod = c.run_pod("enf", "lab", &[("warden.io/profile", "web")]).await.unwrap();
    let id = run_attempts(&c, &pod, "app", &tries).await.unwrap();
    assert_eq!(exit_code(&c, &id).await, 137, "{}", c.container_log("enf", "app"));
    assert_eq!(c.container_log("enf", "app").trim_end(), expect_floor, "enforce: web within the floor");
    // ... and stays enforced while learning (a glob namespace this time).
    let pod =
        c.run_pod("learner", "lab-2", &[("warden.io/mode", "learn"), ("warden.io/profile", "wide")]).await.unwrap();
    let id = run_attempts(&c, &pod, "app", &tries).await.unwrap();
    assert_eq!(exit_code(&c, &id).await, 137, "{}", c.container_log("learner", "app"));
    assert_eq!(c.container_log("learner", "app").trim_end(), expect_floor, "learn: the floor still refuses");
    // status names the rule and the baseline (of containers still running).
    let sleeper = c.run_pod("sleeper", "lab", &[("warden.io/mode", "learn")]).await.unwrap();
    let id = c.create_container_with(&sleeper, "app", &["sleep", "60"], &[], &[]).await.unwrap();
    c.start_container(&id).await.unwrap();
    let pod = c.run_pod("enf2", "lab", &[("warden.io/profile", "web")]).await.unwrap();
    let id = c.create_container_with(&pod, "app", &["sleep", "60"], &[], &[]).await.unwrap();
    c.start_container(&id).await.unwrap();
    let st = w.warden.status();
    let find = |pod: &str| st["containers"].as_array().unwrap().iter().find(|c| c["pod"] == pod).cloned();
    let learner = find("sleeper").unwrap_or_else(|| panic!("{st}"));
    assert_eq!(
        (learner["rule"].as_str(), learner["baseline"].as_str(), learner["mode"].as_str()),
        (Some("lab-learns"), Some("floor"), Some("learn")),
        "{learner}"
    );
    let enf = find("enf2").unwrap_or_else(|| panic!("{st}"));
    assert_eq!(enf["profile"], "web&floor", "{enf}");
    // Denials name the rule.
    eventually(std::time::Duration::from_secs(5), "a denial logged with its rule", || {
        let l = w.log_text();
        l.lines()
            .any(|x| x.contains("pod=learner") && x.contains("rule=lab-learns") && x.contains(&format!(":{other}")))
            .then_some(())
    });

    // Outside what a rule allows: refused, naming the rule, despite fail_open.
    let refused = [
        ("weak", "shop", vec![("warden.io/profile", "wide")], "profile wide is not allowed", "strict"),
        ("optout", "shop", vec![("warden.io/mode", "learn")], "mode learn is not allowed", "strict"),
        (
            "quiet",
            "lab",
            vec![("warden.io/profile", "web"), ("warden.io/mode", "complain")],
            "mode complain is not allowed",
            "lab-learns",
        ),
    ];
    for (name, ns, ann, why, rule) in &refused {
        let pod = c.run_pod(name, ns, ann).await.unwrap();
        let err = run_attempts(&c, &pod, "app", &["getpid".into()]).await.expect_err("start must fail");
        let msg = err.message();
        assert!(msg.contains(why) && msg.contains(&format!("rule \"{rule}\"")), "{name}: {msg}");
    }
    assert!(!w.log_text().contains("FAIL-OPEN"), "a rule violation never fails open:\n{}", w.log_text());
    // The allowed choice in `shop` works: web alone (no baseline there).
    let pod = c.run_pod("ok", "shop", &[("warden.io/profile", "web")]).await.unwrap();
    let id = run_attempts(&c, &pod, "app", &tries[..2]).await.unwrap();
    assert_eq!(exit_code(&c, &id).await, 0);
    assert_eq!(
        c.container_log("ok", "app"),
        format!("connect 127.0.0.1 {allowed} => ok\nconnect 127.0.0.1 {other} => ok")
    );

    // A per-container key naming no container (`sidecra`): reported when the pod goes (or a
    // minute after its first start), with the containers that did start.
    let pod =
        c.run_pod("typo", "shop", &[("warden.io/profile", "web"), ("warden.io/profile.sidecra", "web")]).await.unwrap();
    let id = run_attempts(&c, &pod, "sidecar", &["getpid".into()]).await.unwrap();
    assert_eq!(exit_code(&c, &id).await, 0);
    assert!(!w.log_text().contains("names no container"), "not before the pod's containers had their chance");
    c.remove_pod(&pod.id).await.unwrap();
    eventually(std::time::Duration::from_secs(10), "the unmatched key reported", || {
        let l = w.log_text();
        l.lines()
            .any(|x| x.contains("warden.io/profile.sidecra names no container") && x.contains("containers=sidecar"))
            .then_some(())
    });
}
