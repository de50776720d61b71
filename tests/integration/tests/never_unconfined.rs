//! Never unconfined (issue 17): an annotated container whose policy is not in place does not
//! run. Real containerd 1.7, `warden run`, busybox pods running `warden-attempt`.
//! Needs root; under CI=true a missing piece fails the test.
use warden_integration_tests::containerd::Containerd;
use warden_integration_tests::scenarios::{listener, run_attempts};
use warden_integration_tests::*;

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
    let mut w =
        WardenDaemon::configure(&c.nri_socket, &[("no-net", ProfileBuilder::new("no-net").no_connect().json())], "");
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
