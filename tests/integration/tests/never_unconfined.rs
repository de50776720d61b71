//! Never unconfined (issue 17): an annotated container whose policy is not in place does not
//! run. Real containerd 1.7, `warden run`, busybox pods running `warden-attempt`.
//! Needs root; under CI=true a missing piece fails the test.
use warden_integration_tests::containerd::{assert_hook_refusal, Containerd};
use warden_integration_tests::scenarios::{exit_code, listener, run_attempts, ATTEMPT};
use warden_integration_tests::*;

/// `warden run` against `c` with one profile, `no-net` (no connect allowed), not started.
fn no_net_daemon(c: &Containerd) -> WardenDaemon {
    WardenDaemon::configure(&c.nri_socket, &[("no-net", ProfileBuilder::new("no-net").no_connect().json())], "")
}

/// containerd drops a plugin that misses its request timeout (2 s) and starts the container
/// without it. warden answers before that with a refusal: the container does not run, and
/// warden stays registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_slower_than_containerds_timeout_is_refused_not_run_unconfined() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, port) = listener();
    let c = Containerd::start().await.unwrap();
    let mut w = no_net_daemon(&c);
    // Debug builds only: StartContainer handling sleeps this long (containerd waits 2 s).
    w.env.push(("WARDEN_TEST_START_DELAY_MS".into(), "3000".into()));
    w.start();

    let pod = c.run_pod("slow", "shop", &[("warden.io/profile", "no-net")]).await.unwrap();
    let t0 = std::time::Instant::now();
    let err = run_attempts(&c, &pod, "app", &[format!("connect 127.0.0.1 {port}")])
        .await
        .expect_err("a start warden could not finish in time must be refused");
    let msg = err.message();
    assert!(msg.contains("not handled within") && msg.contains("fail closed"), "{msg}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(10), "answered, not timed out by containerd");
    assert_eq!(c.container_log("slow", "app"), "", "the entrypoint never ran");
    // Still registered: containerd did not drop the plugin (one registration, no reconnect).
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(w.registrations(), 1, "{}", w.log_text());
    assert!(!w.log_text().contains("NRI connection ended"), "{}", w.log_text());
    // The late confine was undone: nothing stays pinned for a container that never ran.
    eventually(std::time::Duration::from_secs(10), "the late confine released", || {
        w.confined_ids().is_empty().then_some(())
    });
}

/// The createRuntime backstop (issue 17 item 1) under the real containerd and runc: warden
/// adds its hook at CreateContainer, so
/// - warden killed (SIGKILL) between CreateContainer and StartContainer: the start fails (the
///   hook cannot reach the daemon) and the entrypoint never runs;
/// - warden restarted in between: the new daemon holds no pending start for the container, so
///   the hook's request is refused and the start fails again;
/// - a container created and started under the restarted daemon runs confined (EPERM);
/// - warden dying at StartContainer, after its hook confined the container: containerd starts
///   it anyway, and the kernel arms the policy at the entrypoint's exec (EPERM; seen to connect
///   with the arming disabled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_gone_between_create_and_start_means_the_container_does_not_start() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, port) = listener();
    let c = Containerd::start().await.unwrap();
    let mut w = no_net_daemon(&c);
    w.start();
    let pod = c.run_pod("backstop", "shop", &[("warden.io/profile", "no-net")]).await.unwrap();
    let helper = static_attempt();
    let connect = format!("connect 127.0.0.1 {port}");
    let create = |name: &'static str| {
        let (c, pod, helper, connect) = (&c, &pod, helper.clone(), connect.clone());
        async move {
            c.create_container_with(pod, name, &[ATTEMPT, "seq", &connect], &[], &[(helper.as_path(), ATTEMPT)])
                .await
                .unwrap()
        }
    };
    let crashed = create("crashed").await;
    let restarted = create("restarted").await;

    w.kill();
    let err = c.start_container(&crashed).await.expect_err("warden is down: the start must fail");
    assert_hook_refusal(err.message(), &["backstop", "daemon"]);
    assert_eq!(c.container_log("backstop", "crashed"), "", "the entrypoint never ran");

    w.start();
    let err = c.start_container(&restarted).await.expect_err("no pending start after a restart: refused");
    assert_hook_refusal(err.message(), &["no pending start"]);
    assert!(w.log_text().contains("no pending start"), "the daemon logs why: {}", w.log_text());
    assert_eq!(c.container_log("backstop", "restarted"), "", "the entrypoint never ran");

    let fresh = create("fresh").await;
    c.start_container(&fresh).await.expect("created and started under the running daemon");
    assert_eq!(exit_code(&c, &fresh).await, 0);
    let log = c.container_log("backstop", "fresh");
    assert!(log.contains("EPERM"), "confined by the hook: the connect is denied: {log}");
    assert!(w.log_text().contains("confined (createRuntime backstop)"), "{}", w.log_text());
    drop(w);

    // warden dies at StartContainer, after its hook confined the container: the policy is
    // armed by the kernel at the entrypoint's exec, with no daemon left.
    let mut w = no_net_daemon(&c);
    w.env.push(("WARDEN_TEST_EXIT_AT_START".into(), "1".into()));
    w.start();
    let orphan = create("orphan").await;
    // containerd 1.7 starts a container whose plugin died in the middle of StartContainer.
    c.start_container(&orphan).await.expect("started without its plugin");
    assert!(w.log_text().contains("exiting at StartContainer"), "{}", w.log_text());
    assert_eq!(exit_code(&c, &orphan).await, 0);
    let log = c.container_log("backstop", "orphan");
    assert_eq!(log, format!("{connect} => errno=EPERM"), "armed at exec without the daemon");
}

/// Learn records survive a reconnect (issue 17 item 5): a learn-mode container records a
/// connect, warden is killed and started again (a new connection, Synchronize re-confines the
/// running container), the container records a second connect; the profile the new daemon
/// writes at the stop holds both: the re-confine kept the kernel's record instead of starting
/// it afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learn_record_survives_a_warden_restart_and_resync() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let ((_la, before), (_lb, after)) = (listener(), listener());
    let c = Containerd::start().await.unwrap();
    let learn_tmp = tempfile::Builder::new().prefix("warden-test-learned-").tempdir().unwrap();
    let learn_dir = learn_tmp.path().join("learned");
    let mut w =
        WardenDaemon::configure(&c.nri_socket, &[], &format!("learn_dir = {:?}", learn_dir.display().to_string()));
    w.start();
    let pod = c.run_pod("resync", "shop", &[("warden.io/mode", "learn")]).await.unwrap();
    let helper = static_attempt();
    let script = format!(
        "{ATTEMPT} seq 'connect 127.0.0.1 {before}'; sleep 8; {ATTEMPT} seq 'connect 127.0.0.1 {after}'; sleep 1000"
    );
    let id = c
        .create_container_with(&pod, "app", &["sh", "-c", &script], &[], &[(helper.as_path(), ATTEMPT)])
        .await
        .unwrap();
    c.start_container(&id).await.unwrap();
    eventually(std::time::Duration::from_secs(10), "the first connect", || {
        c.container_log("resync", "app").contains(&format!("{before} =>")).then_some(())
    });

    w.kill();
    w.start();
    eventually(std::time::Duration::from_secs(10), "the running container re-confined", || {
        w.log_text().contains("confined (synchronize)").then_some(())
    });
    eventually(std::time::Duration::from_secs(20), "the second connect", || {
        c.container_log("resync", "app").contains(&format!("{after} =>")).then_some(())
    });
    c.stop_container(&id).await.unwrap();
    let file = learn_dir.join("shop_resync_app.json");
    eventually(std::time::Duration::from_secs(20), "the learned profile", || file.exists().then_some(()));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let connect = v["network"]["connect"].to_string();
    for port in [before, after] {
        assert!(connect.contains(&port.to_string()), "port {port} learned (before {before}, after {after}): {connect}");
    }
}

/// warden restarted (SIGKILL, start) three times while two lanes create and start annotated
/// containers (issue 17 item 6): each start either fails or yields a container that runs,
/// and once warden is back every running container's cgroup is confined in the pins. (A
/// container created AND started while warden was down runs unconfined until warden's
/// reconnection synchronizes it: NRI gives no hook without a plugin; the count is printed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_restarted_while_pods_come_and_go_leaves_no_running_container_unconfined() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, port) = listener();
    let c = Containerd::start().await.unwrap();
    let mut w = no_net_daemon(&c);
    w.start();
    let pods = [
        c.run_pod("come-0", "shop", &[("warden.io/profile", "no-net")]).await.unwrap(),
        c.run_pod("come-1", "shop", &[("warden.io/profile", "no-net")]).await.unwrap(),
    ];
    let helper = static_attempt();
    let script = format!("{ATTEMPT} seq 'connect 127.0.0.1 {port}'; exec sleep 1000");
    let lane = |lane: usize| {
        let (c, pod, helper, script) = (&c, &pods[lane], helper.clone(), script.clone());
        async move {
            let (mut started, mut refused) = (Vec::new(), 0);
            for i in 0..10 {
                let name = format!("c{lane}-{i}");
                let r = c
                    .create_container_with(pod, &name, &["sh", "-c", &script], &[], &[(helper.as_path(), ATTEMPT)])
                    .await;
                match r {
                    Ok(id) => match c.start_container(&id).await {
                        Ok(()) => started.push((format!("come-{lane}"), name, id)),
                        Err(_) => refused += 1,
                    },
                    Err(_) => refused += 1,
                }
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            }
            (started, refused)
        }
    };
    let restarts = tokio::task::spawn_blocking(move || {
        for _ in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            w.kill();
            std::thread::sleep(std::time::Duration::from_millis(300));
            w.start();
        }
        w
    });
    let ((a, ra), (b, rb)) = tokio::join!(lane(0), lane(1));
    let w = restarts.await.unwrap();
    let started: Vec<_> = a.into_iter().chain(b).collect();
    eprintln!("{} containers started, {} refused", started.len(), ra + rb);
    assert!(!started.is_empty(), "some containers started");

    let parent = Containerd::cgroup2_dir(&c.cgroup_parent);
    let cgroup_of = |id: &str| {
        std::fs::read_dir(&parent)
            .unwrap()
            .flatten()
            .map(|pod| pod.path().join(id))
            .find(|p| p.is_dir())
            .unwrap_or_else(|| panic!("no cgroup for running container {id}"))
    };
    let mut window = 0;
    eventually(std::time::Duration::from_secs(20), "every running container confined", || {
        let pinned = w.confined_ids();
        started.iter().all(|(_, _, id)| pinned.contains(&cgroup_id(&cgroup_of(id)))).then_some(())
    });
    for (pod, name, _) in &started {
        if c.container_log(pod, name).contains("=> ok") {
            window += 1;
        }
    }
    eprintln!("{window} of {} started containers connected before warden (re)confined them", started.len());
}

/// The DaemonSet's view (its own pid namespace and /proc, so every control-socket peer on the
/// host has pid 0 to it): the backstop hook, which runc runs on the host, is still served (it
/// can only put in force the daemon's own decision, control/peer.rs `Access::Tighten`), and
/// the annotated container starts confined. Before that access existed every annotated start
/// was refused ("permission denied ... pid namespace").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_in_its_own_pid_namespace_serves_the_backstop_hook() {
    if !skip_unless(CONTAINERD) {
        return;
    }
    let (_l, port) = listener();
    let c = Containerd::start().await.unwrap();
    let mut w = no_net_daemon(&c);
    w.start_wrapped(&["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]);
    let pod = c.run_pod("pidns", "shop", &[("warden.io/profile", "no-net")]).await.unwrap();
    let id = run_attempts(&c, &pod, "app", &[format!("connect 127.0.0.1 {port}")])
        .await
        .unwrap_or_else(|e| panic!("start refused: {}\n{}", e.message(), w.log_text()));
    assert_eq!(exit_code(&c, &id).await, 0);
    assert_eq!(c.container_log("pidns", "app"), format!("connect 127.0.0.1 {port} => errno=EPERM"));
    assert!(w.log_text().contains("confined (createRuntime backstop)"), "{}", w.log_text());
}
