//! Kernels before 6.1 (Ubuntu 22.04's 5.15) WARN with a kernel splat when a tracing program
//! uses a hash map allocated per element; warden then makes those maps preallocated before the
//! object loads (hook/src/enforcer/programs.rs). This kernel is newer, so the test forces that
//! path (`WARDEN_PREALLOC_MAPS=1`) and proves it: the maps are pinned preallocated, and
//! enforcement, events and counters work on them. Needs root; under CI=true a missing piece
//! fails the test.
use std::time::Duration;

use serde_json::json;
use warden_integration_tests::*;

fn flags(w: &Warden, map: &str) -> u32 {
    aya::maps::MapInfo::from_pin(w.pin_dir.join("maps").join(map)).unwrap().map_flags()
}

#[test]
fn maps_made_preallocated_work_like_the_others() {
    if !skip_unless(KERNEL) {
        return;
    }
    let w = Warden::new();
    let cg = TestCgroup::new("prealloc");
    let mut p = Attempt::spawn_in(&cg.path);
    let profile = json!({"name": "no-unshare-pre", "syscalls": {"default": "kill",
        "allow": syscalls::Sysno::iter().map(|s| s.name()).filter(|n| *n != "unshare").collect::<Vec<_>>()}});
    let out = w
        .command(&["confine", "--cgroup", cg.path.to_str().unwrap(), "--profile"])
        .arg(w.profile_file(&profile.to_string()))
        .args(["--mode", "enforce"])
        .env("WARDEN_PREALLOC_MAPS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for m in ["WARDEN_LEARN_SC", "WARDEN_COUNTERS", "WARDEN_RATE", "WARDEN_LEARN_NET", "WARDEN_DENY_EXEMPT"] {
        assert_eq!(flags(&w, m) & 1, 0, "{m} is preallocated");
    }
    // Left per element: LPM tries must be, and WARDEN_LEARN_FILES is used by BPF-LSM only.
    assert_eq!(flags(&w, "WARDEN_LEARN_FILES") & 1, 1);
    assert_eq!(flags(&w, "WARDEN_CONNECT4") & 1, 1);

    let mut events = w.follow_events();
    assert_eq!(p.attempt("getpid"), Outcome::ok());
    assert_eq!(p.attempt("unshare-uts"), Outcome::Killed(libc::SIGKILL));
    let ev = events.wait_for(Duration::from_secs(10), |e| e["kind"] == "syscall" && e["pid"] == p.pid());
    assert!(ev.is_some_and(|e| e["verdict"] == "denied"), "an event through the preallocated maps");
    let st = w.confined(&cg.path).expect("confined");
    assert_eq!(st["violations"]["syscall"], 1, "{st}");
    w.release(&cg.path);
}
