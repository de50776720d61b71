//! Learn mode on the real kernel: learn a workload, generate its profile, enforce it; merge
//! runs; the per-container bound and its truncation marker; complain mode's report.
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use warden_integration_tests::scenarios::free_port;
use warden_integration_tests::*;

const LEARNING: &str = r#"{"name":"learning"}"#;

/// Runs `warden-attempt seq ATTEMPTS...` as a process that enters cgroup `cg` before it execs
/// the helper, as a container's entrypoint starts inside its cgroup: everything from the exec on
/// is the workload's.
fn run_in(cg: &Path, attempts: &[String]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
        .arg(cg)
        .arg(bin("warden-attempt"))
        .arg("seq")
        .args(attempts)
        .output()
        .expect("running sh")
}

/// The `ATTEMPT => RESULT` lines of a run, as (attempt, result).
fn results(out: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(" => ").map(|(a, r)| (a.to_string(), r.trim().to_string())))
        .collect()
}

fn assert_all_ok(out: &Output, attempts: &[String], what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = results(out);
    assert_eq!(r.len(), attempts.len(), "{what}: {r:?}");
    for (a, res) in r {
        assert_eq!(res, "ok", "{what}: `{a}`");
    }
}

fn generate(w: &Warden, cg: &Path, name: &str) -> (PathBuf, Value, String) {
    let out_file = w.tmp.join(format!("{name}.json"));
    let out = w.run(&[
        "profile",
        "generate",
        "--cgroup",
        cg.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        "--name",
        name,
    ]);
    assert!(out.status.success(), "generate: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    (out_file, v, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn syscalls_of(v: &Value) -> Vec<String> {
    serde_json::from_value(v["syscalls"]["allow"].clone()).unwrap()
}

#[test]
fn learned_profile_enforced_allows_the_same_and_blocks_new() {
    if !skip_unless(KERNEL) {
        return;
    }
    let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let p4 = l4.local_addr().unwrap().port();
    let l6 = TcpListener::bind("[::1]:0").unwrap();
    let p6 = l6.local_addr().unwrap().port();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pu = udp.local_addr().unwrap().port();
    let pb = free_port();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();

    let w = Warden::new();
    let cg = TestCgroup::new("learn-gen");
    w.confine(&cg.path, LEARNING, "learn");
    let attempts: Vec<String> = vec![
        format!("connect 127.0.0.1 {p4}"),
        format!("connect ::1 {p6}"),
        format!("udp-send 127.0.0.1 {pu}"),
        format!("bind-tcp 127.0.0.1 {pb}"),
        "getpid".into(),
        "unix-socket".into(),
    ];
    assert_all_ok(&run_in(&cg.path, &attempts), &attempts, "learn run");
    // Repeats are deduplicated in the kernel: the record does not grow.
    assert_all_ok(&run_in(&cg.path, &attempts), &attempts, "second learn run");

    let (file, v, report) = generate(&w, &cg.path, "learned-app");
    assert!(report.contains("addresses kept exact"), "the report states the rules: {report}");
    let validate = w.run(&["profile", "validate", file.to_str().unwrap()]);
    assert!(validate.status.success(), "generated profile validates: {}", String::from_utf8_lossy(&validate.stdout));
    let connect = v["network"]["connect"].as_array().unwrap();
    assert!(
        connect
            .iter()
            .any(|r| r["cidr"] == "127.0.0.1/32" && r["ports"] == serde_json::json!([p4]) && r["protocol"] == "tcp"),
        "{connect:?}"
    );
    assert!(connect.iter().any(|r| r["cidr"] == "::1/128" && r["ports"] == serde_json::json!([p6])), "{connect:?}");
    assert!(
        connect
            .iter()
            .any(|r| r["cidr"] == "127.0.0.1/32" && r["ports"] == serde_json::json!([pu]) && r["protocol"] == "udp"),
        "{connect:?}"
    );
    assert_eq!(v["network"]["bind"], serde_json::json!([{"ports": [pb], "protocol": "tcp"}]));
    let fams: Vec<String> = serde_json::from_value(v["network"]["families"].clone()).unwrap();
    for f in ["inet", "inet6", "unix"] {
        assert!(fams.contains(&f.to_string()), "family {f}: {fams:?}");
    }
    let sc = syscalls_of(&v);
    for s in ["execve", "getpid", "connect", "bind", "socket", "write", "exit_group"] {
        assert!(sc.contains(&s.to_string()), "learned {s}: {sc:?}");
    }
    assert!(!sc.contains(&"unshare".to_string()));

    // Re-confine in enforce with the generated profile: the same workload works, every time.
    w.ok(&["confine", "--cgroup", cg.path.to_str().unwrap(), "--profile", file.to_str().unwrap(), "--mode", "enforce"]);
    for i in 0..5 {
        assert_all_ok(&run_in(&cg.path, &attempts), &attempts, &format!("enforced run {i}"));
    }
    // Something new is blocked: a new port, a new bind port, a new syscall.
    let out = run_in(
        &cg.path,
        &[
            format!("connect 127.0.0.1 {other_port}"),
            format!("connect 127.0.0.2 {p4}"),
            format!("bind-tcp 127.0.0.1 {}", pb.wrapping_add(1)),
        ],
    );
    let r = results(&out);
    assert_eq!(r.iter().map(|(_, res)| res.as_str()).collect::<Vec<_>>(), vec!["errno=EPERM"; 3], "{r:?}");
    let out = run_in(&cg.path, &["unshare-uts".to_string()]);
    assert_eq!(out.status.signal(), Some(SIGKILL), "a new syscall is killed: {out:?}");
    let c = w.confined(&cg.path).unwrap();
    assert_eq!(c["violations"]["connect"], 2);
    assert_eq!(c["violations"]["bind"], 1);
    assert_eq!(c["violations"]["syscall"], 1);
}

#[test]
fn merging_two_runs_is_their_union_and_idempotent() {
    if !skip_unless(KERNEL) {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p1 = l.local_addr().unwrap().port();
    let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let p2 = l2.local_addr().unwrap().port();
    let pb = free_port();
    let w = Warden::new();

    let runs: [Vec<String>; 2] = [
        vec![format!("connect 127.0.0.1 {p1}"), "getpid".into()],
        vec![format!("connect 127.0.0.1 {p2}"), format!("bind-tcp 127.0.0.1 {pb}"), "unix-socket".into()],
    ];
    let mut files = Vec::new();
    let mut vals = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let cg = TestCgroup::new(&format!("merge{i}"));
        w.confine(&cg.path, LEARNING, "learn");
        assert_all_ok(&run_in(&cg.path, run), run, "learn run");
        let (f, v, _) = generate(&w, &cg.path, "app");
        let f2 = w.tmp.join(format!("run{i}.json"));
        std::fs::rename(&f, &f2).unwrap();
        files.push(f2);
        vals.push(v);
        w.release(&cg.path);
    }
    let merge = |inputs: &[&PathBuf], out: &str| -> (PathBuf, String) {
        let o = w.tmp.join(out);
        let mut args = vec!["profile", "merge"];
        args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
        args.extend(["-o", o.to_str().unwrap()]);
        w.ok(&args);
        let text = std::fs::read_to_string(&o).unwrap();
        (o, text)
    };
    let (ab, ab_text) = merge(&[&files[0], &files[1]], "ab.json");
    let (_, ba_text) = merge(&[&files[1], &files[0]], "ba.json");
    assert_eq!(ab_text, ba_text, "order-independent");
    let (_, again) = merge(&[&ab, &files[0]], "ab-a.json");
    assert_eq!(ab_text, again, "merging a run in again changes nothing");
    let (_, self_merge) = merge(&[&ab, &ab], "ab-ab.json");
    assert_eq!(ab_text, self_merge, "idempotent");
    let validate = w.run(&["profile", "validate", ab.to_str().unwrap()]);
    assert!(validate.status.success(), "{}", String::from_utf8_lossy(&validate.stdout));

    // The union: syscalls of both, connect rules of both, the bind of the second.
    let m: Value = serde_json::from_str(&ab_text).unwrap();
    let mut want: Vec<String> = syscalls_of(&vals[0]).into_iter().chain(syscalls_of(&vals[1])).collect();
    want.sort();
    want.dedup();
    assert_eq!(syscalls_of(&m), want);
    let ports: Vec<Value> = m["network"]["connect"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["cidr"] == "127.0.0.1/32")
        .flat_map(|r| r["ports"].as_array().unwrap().clone())
        .collect();
    let mut want_ports = [p1, p2];
    want_ports.sort();
    let joined = if want_ports[1] == want_ports[0] + 1 {
        vec![serde_json::json!(format!("{}-{}", want_ports[0], want_ports[1]))]
    } else {
        want_ports.iter().map(|p| serde_json::json!(p)).collect()
    };
    assert_eq!(ports, joined);
    assert_eq!(m["network"]["bind"], serde_json::json!([{"ports": [pb], "protocol": "tcp"}]));

    // Both runs' workloads work under the merged profile.
    let cg = TestCgroup::new("merged");
    w.ok(&["confine", "--cgroup", cg.path.to_str().unwrap(), "--profile", ab.to_str().unwrap(), "--mode", "enforce"]);
    for run in &runs {
        assert_all_ok(&run_in(&cg.path, run), run, "merged profile");
    }
}

#[test]
fn thousands_of_destinations_stay_within_the_bound_and_are_marked_truncated() {
    if !skip_unless(KERNEL) {
        return;
    }
    // A port nobody listens on: each connect is refused at once (a listener that never
    // accepts would fill its backlog and make connects wait).
    let port = free_port();
    let w = Warden::new();
    let cg = TestCgroup::new("learn-bound");
    w.confine(&cg.path, LEARNING, "learn");
    let mut p = Attempt::spawn_in(&cg.path);

    // One destination 20000 times: one item, one event, nothing dropped.
    let r = p.attempt(&format!("connect-loop 127.0.0.1 {port} 20000"));
    assert_eq!(r, Outcome::Reply("errno=ECONNREFUSED:20000".into()));
    let c = w.confined(&cg.path).unwrap();
    assert_eq!(c["events_dropped"], 0, "repeats send no events: {c}");
    let rep: Value = serde_json::from_str(&w.ok(&["report", "--cgroup", cg.path.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(rep["items"]["connect"].as_array().unwrap().len(), 1, "{rep}");
    assert_eq!(rep["truncated"], 0);

    // 3000 distinct destinations (refused ports on loopback: fast).
    let r = p.attempt("connect-range 127.0.0.1 20000 22999");
    assert!(matches!(&r, Outcome::Reply(s) if s.contains("ECONNREFUSED")), "{r:?}");
    let rep: Value = serde_json::from_str(&w.ok(&["report", "--cgroup", cg.path.to_str().unwrap(), "--json"])).unwrap();
    let items: usize = rep["items"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "syscall")
        .map(|(_, v)| v.as_array().unwrap().len())
        .sum();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    assert!(items >= 1024 && items <= 1024 + cpus, "bounded at 1024 items (+ racing CPUs): {items}");
    let truncated = rep["truncated"].as_u64().unwrap();
    assert!(truncated >= 3000 - 1024 - cpus as u64 - 8, "every item beyond the bound is counted: {truncated}");
    let rec = &w.status()["learn_records"][cg.id().to_string()];
    assert_eq!(rec["truncated"].as_u64(), Some(truncated), "{rec}");
    assert!(rec["items"].as_u64().unwrap() <= 1024 + cpus as u64, "{rec}");
    // The marker reaches the generated profile and the user.
    let (file, v, report) = generate(&w, &cg.path, "big");
    assert!(report.contains("TRUNCATED"), "{report}");
    assert!(v["description"].as_str().unwrap().contains("INCOMPLETE"), "{v}");
    let validate = w.run(&["profile", "validate", file.to_str().unwrap()]);
    assert!(validate.status.success(), "{}", String::from_utf8_lossy(&validate.stdout));
    let text = w.ok(&["report", "--cgroup", cg.path.to_str().unwrap()]);
    assert!(text.contains("TRUNCATED"), "{text}");
    // Release drops the record.
    w.release(&cg.path);
    let st = w.status();
    assert!(st["confined"].as_array().unwrap().is_empty());
}

#[test]
fn complain_report_lists_what_enforce_would_deny() {
    if !skip_unless(KERNEL) {
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let w = Warden::new();
    let cg = TestCgroup::new("complain-report");
    let mut p = Attempt::spawn_in(&cg.path);
    let profile = ProfileBuilder::new("strict").syscalls_all_except(&["unshare"]).no_connect().json();
    w.confine(&cg.path, &profile, "complain");
    for _ in 0..3 {
        assert_eq!(p.attempt(&format!("connect 127.0.0.1 {port}")), Outcome::ok());
        assert_eq!(p.attempt("unshare-uts"), Outcome::ok());
    }
    let rep: Value = serde_json::from_str(&w.ok(&["report", "--cgroup", cg.path.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(rep["mode"], "complain");
    assert_eq!(rep["would_deny_counts"]["connect"], 3);
    assert_eq!(rep["would_deny_counts"]["syscall"], 3);
    assert_eq!(rep["items"]["connect"], serde_json::json!([format!("connect tcp 127.0.0.1 port {port}")]));
    assert_eq!(rep["items"]["syscall"], serde_json::json!(["unshare"]));
    let text = w.ok(&["report", "--cgroup", cg.path.to_str().unwrap()]);
    assert!(text.contains("enforce would have denied") && text.contains("unshare"), "{text}");
    // Wait for nothing: the report does not depend on events.
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn learned_protocols_and_unbound_listeners_reach_the_generated_profile() {
    if !skip_unless(KERNEL) {
        return;
    }
    let _range = PingGroupRange::open();
    let w = Warden::new();
    let cg = TestCgroup::new("learn-proto");
    let mut p = Attempt::spawn_in(&cg.path);
    w.confine(&cg.path, LEARNING, "learn");
    let workload = |p: &mut Attempt| {
        assert_eq!(p.attempt("ping4 127.0.0.2"), Outcome::ok());
        assert_eq!(p.attempt("ping6 ::1"), Outcome::ok());
        let Outcome::Reply(r) = p.attempt("listen-nobind") else { panic!("listen-nobind") };
        let port: u16 = r.strip_prefix("listening ").expect("listening PORT").parse().unwrap();
        let sa: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(2)).is_ok()
    };
    assert!(workload(&mut p), "learn mode lets everything through");
    let (file, v, _) = generate(&w, &cg.path, "learned-proto");
    assert_eq!(v["network"]["protocols"], serde_json::json!(["icmp", "icmpv6"]), "{v}");
    let bind = v["network"]["bind"].as_array().expect("bind rules");
    assert!(
        bind.iter().any(|r| r["protocol"] == "tcp" && r["ports"].as_array().unwrap().contains(&serde_json::json!(0))),
        "an unbound listener is learned as bind port 0, not its random port: {v}"
    );
    drop(p);

    // Enforced, the learned profile allows the same workload.
    let cg2 = TestCgroup::new("learn-proto-enforce");
    let mut q = Attempt::spawn_in(&cg2.path);
    w.confine(&cg2.path, &std::fs::read_to_string(&file).unwrap(), "enforce");
    assert!(workload(&mut q), "the learned profile allows the listener");
}
