//! `warden oci-hook` with a real runc (bookworm's 1.1.5) and `warden run` without NRI: OCI
//! bundles whose config.json names the hook at createRuntime and poststop, the static
//! `warden-attempt` as entrypoint. And the control socket itself: root only, `status`, and
//! `events --follow --pod`. Needs root; under CI=true a missing piece fails the test.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use warden_integration_tests::gate::RUNC;
use warden_integration_tests::scenarios::listener;
use warden_integration_tests::*;

/// Root, cgroup2, bpffs, the binaries, runc and the static warden-attempt.
const OCI: &[Need] = &[Need::Root, Need::Cgroup2, Need::Bpffs, Need::Binaries, Need::Runc, Need::StaticAttempt];

/// Network only: connect to 127.0.0.1:`port` over tcp, nothing else.
fn net_profile(name: &str, port: u16) -> String {
    ProfileBuilder::new(name).connect("127.0.0.1/32", &[port], "tcp").no_bind().json()
}

/// An OCI bundle run by runc with its own `--root`, a unique container id and cgroup; deleted
/// with `runc delete -f` on drop, whatever happened.
struct Bundle {
    dir: PathBuf,
    root: PathBuf,
    id: String,
}

#[derive(Default)]
struct Hook<'a> {
    socket: Option<&'a Path>,
    extra_args: &'a [&'a str],
}

impl Bundle {
    fn new(tag: &str, hook: Hook<'_>, annotations: &[(&str, &str)], attempts: &[String]) -> Bundle {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!("wdn-oci-{}-{}-{tag}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(&id);
        let root = dir.join("runc-root");
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::create_dir_all(&root).unwrap();
        std::fs::copy(static_attempt(), rootfs.join("warden-attempt")).unwrap();
        let out = Command::new(RUNC).args(["spec", "--bundle"]).arg(&dir).output().unwrap();
        assert!(out.status.success(), "runc spec: {}", String::from_utf8_lossy(&out.stderr));
        let cfg_path = dir.join("config.json");
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        let mut args = vec![json!("/warden-attempt"), json!("seq")];
        args.extend(attempts.iter().map(|a| json!(a)));
        cfg["process"]["terminal"] = json!(false);
        cfg["process"]["args"] = json!(args);
        cfg["root"] = json!({ "path": "rootfs", "readonly": true });
        // Host network, so the attempts can reach the test's listeners on 127.0.0.1.
        let ns: Vec<Value> =
            cfg["linux"]["namespaces"].as_array().unwrap().iter().filter(|n| n["type"] != "network").cloned().collect();
        cfg["linux"]["namespaces"] = json!(ns);
        cfg["linux"]["cgroupsPath"] = json!(format!("/{id}"));
        cfg["annotations"] =
            json!(annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>());
        if let Some(socket) = hook.socket {
            let mut hargs =
                vec!["warden".to_string(), "--socket".into(), socket.display().to_string(), "oci-hook".into()];
            hargs.extend(hook.extra_args.iter().map(|s| s.to_string()));
            let h = json!([{ "path": bin("warden"), "args": hargs, "env": ["WARDEN_LOG=warn"], "timeout": 30 }]);
            cfg["hooks"] = json!({ "createRuntime": h, "poststop": h });
        }
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        Bundle { dir, root, id }
    }

    fn runc(&self) -> Command {
        let mut c = Command::new(RUNC);
        c.arg("--root").arg(&self.root);
        c
    }

    /// `runc run` in the foreground: create, hooks, start, wait, delete (poststop).
    fn run(&self) -> Output {
        self.runc().args(["run", "--bundle"]).arg(&self.dir).arg(&self.id).stdin(Stdio::null()).output().unwrap()
    }

    /// `runc create`: the init process waits before the entrypoint; createRuntime has run.
    fn create(&self) -> Output {
        let log = std::fs::File::create(self.dir.join("stdout")).unwrap();
        self.runc()
            .args(["create", "--bundle"])
            .arg(&self.dir)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .output()
            .unwrap()
    }

    fn cgroup(&self) -> PathBuf {
        cgroup2_mount().unwrap().join(&self.id)
    }

    fn delete(&self) -> Output {
        self.runc().args(["delete", "-f", &self.id]).output().unwrap()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.delete();
        let _ = std::fs::remove_dir(self.cgroup());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn pinned_cgroups(w: &WardenDaemon) -> usize {
    std::fs::read_dir(w.warden.pin_dir.join("cgroups")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn hook_confines_before_the_entrypoint_and_poststop_releases() {
    if !skip_unless(OCI) {
        return;
    }
    let (_l, allowed) = listener();
    let (_l2, other) = listener();
    let mut w = WardenDaemon::configure_without_nri(&[("web", net_profile("web", allowed))], "");
    w.start();
    let socket = w.warden.socket();
    let b = Bundle::new(
        "ok",
        Hook { socket: Some(&socket), ..Default::default() },
        &[("warden.io/profile", "web")],
        // The very first thing the entrypoint does is refused: the policy was in place before it.
        &[format!("connect 127.0.0.1 {other}"), format!("connect 127.0.0.1 {allowed}"), "getpid".into()],
    );
    let out = b.run();
    let t = text(&out);
    assert!(out.status.success(), "{t}\n--- daemon ---\n{}", w.log_text());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("connect 127.0.0.1 {other} => errno=EPERM")), "{t}");
    assert!(stdout.contains(&format!("connect 127.0.0.1 {allowed} => ok")), "{t}");
    assert!(stdout.contains("getpid => ok"), "{t}");
    let log = w.log_text();
    assert!(log.contains("confined (oci-hook)") && log.contains(&b.id), "{log}");
    // `runc run` deleted the container: poststop released it, nothing is left pinned.
    eventually(Duration::from_secs(5), "release after poststop", || {
        (pinned_cgroups(&w) == 0 && w.confined_ids().is_empty()).then_some(())
    });
    assert!(w.log_text().contains("released (control socket)"), "{}", w.log_text());
    let st = w.warden.status();
    assert_eq!(st["containers"], json!([]), "{st}");
}

#[test]
fn unknown_profile_or_no_daemon_does_not_start() {
    if !skip_unless(OCI) {
        return;
    }
    let mut w = WardenDaemon::configure_without_nri(&[], "");
    w.start();
    let socket = w.warden.socket();
    let b = Bundle::new(
        "unknown",
        Hook { socket: Some(&socket), ..Default::default() },
        &[("warden.io/profile", "no-such-profile")],
        &["getpid".into()],
    );
    let out = b.run();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("getpid =>"), "the entrypoint ran: {t}");
    assert!(
        t.contains("no-such-profile") && t.contains("unknown profile"),
        "runc's error does not name the profile: {t}"
    );
    assert!(t.contains("fail closed"), "{t}");

    // A bad annotation value is refused the same way, with the annotation named.
    let b = Bundle::new(
        "badmode",
        Hook { socket: Some(&socket), ..Default::default() },
        &[("warden.io/profile", "x"), ("warden.io/mode", "audit")],
        &["getpid".into()],
    );
    let out = b.run();
    assert!(!out.status.success() && text(&out).contains("warden.io/mode"), "{}", text(&out));

    // No daemon: nothing listens on the socket.
    w.terminate();
    let b = Bundle::new(
        "nodaemon",
        Hook { socket: Some(&socket), ..Default::default() },
        &[("warden.io/profile", "web")],
        &["getpid".into()],
    );
    let out = b.run();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("getpid =>"), "the entrypoint ran: {t}");
    assert!(t.contains("daemon is not running"), "{t}");

    // --fail-open: starts, unconfined (the warning goes to the hook's stderr, which runc only
    // shows for a failing hook).
    let b = Bundle::new(
        "failopen",
        Hook { socket: Some(&socket), extra_args: &["--fail-open"] },
        &[("warden.io/profile", "web")],
        &["getpid".into()],
    );
    let out = b.run();
    let t = text(&out);
    assert!(out.status.success() && t.contains("getpid => ok"), "{t}");

    // Unannotated: the hook does nothing, even without a daemon.
    let b = Bundle::new("plain", Hook { socket: Some(&socket), ..Default::default() }, &[], &["getpid".into()]);
    let out = b.run();
    assert!(out.status.success() && text(&out).contains("getpid => ok"), "{}", text(&out));
}

#[test]
fn the_operators_rules_bind_the_oci_hook_too() {
    if !skip_unless(OCI) {
        return;
    }
    let (_l, port) = listener();
    let rules = "[[policy.rules]]\nname = \"strict\"\nnamespaces = [\"*\"]\nprofiles = [\"web\"]\n";
    let mut w = WardenDaemon::configure_without_nri(
        &[("web", net_profile("web", port)), ("wide", r#"{"name":"wide"}"#.into())],
        rules,
    );
    w.start();
    let socket = w.warden.socket();
    // Even the hook's --fail-open (meant for a daemon that cannot answer) does not start a
    // container whose annotations break the operator's rules.
    for (tag, ann, why) in [
        ("optout", vec![("warden.io/profile", "web"), ("warden.io/mode", "learn")], "mode learn is not allowed"),
        ("weak", vec![("warden.io/profile", "wide")], "profile wide is not allowed"),
    ] {
        let b =
            Bundle::new(tag, Hook { socket: Some(&socket), extra_args: &["--fail-open"] }, &ann, &["getpid".into()]);
        let out = b.run();
        let t = text(&out);
        assert!(!out.status.success(), "{tag}: {t}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("getpid =>"), "{tag}: the entrypoint ran: {t}");
        // runc quotes the hook's stderr, escaping its quotes.
        assert!(t.contains(why) && (t.contains("rule \"strict\"") || t.contains("rule \\\"strict\\\"")), "{tag}: {t}");
    }
    // What the rule allows starts, confined.
    let b = Bundle::new(
        "allowed",
        Hook { socket: Some(&socket), ..Default::default() },
        &[("warden.io/profile", "web")],
        &[format!("connect 127.0.0.1 {port}")],
    );
    let out = b.run();
    assert!(out.status.success() && text(&out).contains("=> ok"), "{}", text(&out));
}

/// What a CRI-O container carries: pod annotations and the kubernetes names.
fn pod_annotations<'a>(pod: &'a str, profile: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("warden.io/profile", profile),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.pod.name", pod),
        ("io.kubernetes.container.name", "app"),
    ]
}

#[test]
fn control_socket_is_root_only_and_reports_containers_and_events_by_pod() {
    if !skip_unless(OCI) {
        return;
    }
    let (_l, allowed) = listener();
    let (_l2, other) = listener();
    let mut w = WardenDaemon::configure_without_nri(&[("web", net_profile("web", allowed))], "");
    w.start();
    let socket = w.warden.socket();
    let warden = bin("warden");

    // Non-root, with plain file permissions in the way: the kernel refuses the connect.
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&warden)
        .arg("--socket")
        .arg(&socket)
        .arg("status")
        .output()
        .expect("setpriv (util-linux)");
    assert!(!out.status.success() && text(&out).contains("root-only"), "{}", text(&out));
    // Non-root that can get past file permissions (CAP_DAC_OVERRIDE kept as an ambient
    // capability): the daemon's own check (SO_PEERCRED) refuses it.
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(["--inh-caps", "+dac_override,+dac_read_search", "--ambient-caps", "+dac_override,+dac_read_search"])
        .arg(&warden)
        .arg("--socket")
        .arg(&socket)
        .arg("status")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("serves root (uid 0) only; you are uid 65534"), "{t}");
    assert!(w.log_text().contains("refused a non-root peer"), "{}", w.log_text());

    // Followers before anything runs: one for pod web-a only, one for everything.
    let mut only_a = w.warden.follow_events_with(&["--pod", "web-a"]);
    let mut all = w.warden.follow_events();
    eventually(Duration::from_secs(5), "two event subscribers", || {
        (w.warden.status()["daemon"]["subscribers"] == json!(2)).then_some(())
    });

    // `runc create`: confined at createRuntime, entrypoint not started yet; status lists it.
    let a = Bundle::new(
        "a",
        Hook { socket: Some(&socket), ..Default::default() },
        &pod_annotations("web-a", "web"),
        &[format!("connect 127.0.0.1 {other}")],
    );
    let out = a.create();
    assert!(out.status.success(), "{}\n{}", text(&out), w.log_text());
    let st = w.warden.status();
    let cs = st["containers"].as_array().unwrap();
    assert_eq!(cs.len(), 1, "{st}");
    let c = &cs[0];
    assert_eq!(
        (c["id"].as_str(), c["namespace"].as_str(), c["pod"].as_str(), c["container"].as_str()),
        (Some(a.id.as_str()), Some("shop"), Some("web-a"), Some("app")),
        "{st}"
    );
    assert_eq!(
        (c["profile"].as_str(), c["mode"].as_str(), c["via"].as_str()),
        (Some("web"), Some("enforce"), Some("oci-hook")),
        "{st}"
    );
    assert_eq!(c["cgroup_id"].as_u64(), Some(cgroup_id(&a.cgroup())), "{st}");
    assert_eq!(c["version"].as_str().map(str::len), Some(12), "{st}");
    assert!(st["kernel"]["layers"].as_array().is_some_and(|l| !l.is_empty()), "{st}");
    // The human form says the same.
    let human = w.warden.ok(&["status"]);
    assert!(human.contains("shop/web-a") && human.contains("oci-hook") && human.contains("NRI off"), "{human}");
    // `report --container` finds it by id prefix through the daemon.
    let prefix = &a.id[..a.id.len() - 2];
    let rep: Value = serde_json::from_str(&w.warden.ok(&["report", "--container", prefix, "--json"])).unwrap();
    assert_eq!(rep["cgroup_id"].as_u64(), Some(cgroup_id(&a.cgroup())), "{rep}");
    let miss = w.warden.run(&["report", "--container", "nope"]);
    assert!(!miss.status.success() && text(&miss).contains("no confined container"), "{}", text(&miss));

    // Root, but inside a confined container's cgroup: refused too (a workload must never reach
    // the switch of its own policy).
    let cg = a.cgroup();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec {} --socket {} status",
            cg.display(),
            warden.display(),
            socket.display()
        ))
        .output()
        .unwrap();
    let t = text(&out);
    assert!(!out.status.success() && t.contains("inside a confined container"), "{t}");

    // Pod web-b's container is denied too, before web-a's starts.
    let b = Bundle::new(
        "b",
        Hook { socket: Some(&socket), ..Default::default() },
        &pod_annotations("web-b", "web"),
        &[format!("connect 127.0.0.1 {other}")],
    );
    let out = b.run();
    assert!(out.status.success() && text(&out).contains("errno=EPERM"), "{}", text(&out));
    let ev_b = all.wait_for(Duration::from_secs(10), |e| e["pod"] == "web-b" && e["verdict"] == "denied");
    assert!(ev_b.is_some(), "no event of pod web-b: {:?}\n{}", all.seen, w.log_text());

    let out = a.runc().args(["start", &a.id]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let ev = only_a
        .wait_for(Duration::from_secs(10), |e| e["pod"] == "web-a")
        .unwrap_or_else(|| panic!("no event of pod web-a\n{}", w.log_text()));
    assert_eq!(
        (ev["namespace"].as_str(), ev["container"].as_str(), ev["container_id"].as_str()),
        (Some("shop"), Some("app"), Some(a.id.as_str())),
        "{ev}"
    );
    assert_eq!(
        (ev["verdict"].as_str(), ev["kind"].as_str(), ev["port"].as_u64()),
        (Some("denied"), Some("connect"), Some(other as u64)),
        "{ev}"
    );
    only_a.drain(Duration::from_millis(300));
    assert!(only_a.seen.iter().all(|e| e["pod"] == "web-a"), "--pod web-a let other pods through: {:?}", only_a.seen);
    let out_a = eventually(Duration::from_secs(5), "container a's output", || {
        std::fs::read_to_string(a.dir.join("stdout")).ok().filter(|s| s.contains("=>") && s.ends_with('\n'))
    });
    assert!(out_a.contains("errno=EPERM"), "{out_a}");

    // poststop on delete releases a; nothing stays pinned.
    let out = a.delete();
    assert!(out.status.success(), "{}", text(&out));

    // Learn mode without a profile, and `profile generate --container` through the daemon.
    let l = Bundle::new(
        "learn",
        Hook { socket: Some(&socket), ..Default::default() },
        &[("warden.io/mode", "learn")],
        &["getpid".into()],
    );
    let out = l.create();
    assert!(out.status.success(), "{}\n{}", text(&out), w.log_text());
    let gen = w.warden.run(&["profile", "generate", "--container", &l.id]);
    let t = text(&gen);
    assert!(gen.status.success(), "{t}");
    let p: Value = serde_json::from_slice(&gen.stdout).unwrap_or_else(|e| panic!("{e}: {t}"));
    assert!(p["name"].as_str().is_some_and(|n| n.starts_with("learned-")), "{p}");
    assert!(t.contains(&format!("container {}", l.id)), "the report names the container: {t}");
    let out = l.delete();
    assert!(out.status.success(), "{}", text(&out));
    eventually(Duration::from_secs(5), "release after delete", || (pinned_cgroups(&w) == 0).then_some(()));
    assert_eq!(w.warden.status()["containers"], json!([]));
}

#[test]
fn a_restarted_daemon_adopts_oci_containers_and_releases_them() {
    if !skip_unless(OCI) {
        return;
    }
    let (_l, allowed) = listener();
    let (_l2, other) = listener();
    let mut w = WardenDaemon::configure_without_nri(&[("web", net_profile("web", allowed))], "");
    w.start();
    let socket = w.warden.socket();
    let hook = || Hook { socket: Some(&socket), ..Default::default() };
    let a = Bundle::new("adopt", hook(), &[("warden.io/profile", "web")], &[format!("connect 127.0.0.1 {other}")]);
    let b = Bundle::new("gone", hook(), &[("warden.io/profile", "web")], &["getpid".into()]);
    for x in [&a, &b] {
        let out = x.create();
        assert!(out.status.success(), "{}\n{}", text(&out), w.log_text());
    }
    assert_eq!(pinned_cgroups(&w), 2);

    // The daemon dies; b goes away meanwhile (its poststop cannot reach the daemon).
    w.kill();
    let _ = b.delete();
    assert!(!b.cgroup().exists());
    w.start();
    let log = w.log_text();
    assert!(log.contains("adopted an OCI-hook container") && log.contains(&a.id), "{log}");
    assert!(log.contains("OCI-hook container is gone: releasing its pinned entry"), "{log}");
    assert_eq!(pinned_cgroups(&w), 1, "b's entry released at adoption");
    let st = w.warden.status();
    assert_eq!(st["containers"][0]["id"].as_str(), Some(a.id.as_str()), "{st}");

    // Still enforced, and released by its poststop through the new daemon.
    let out = a.runc().args(["start", &a.id]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out_a = eventually(Duration::from_secs(5), "container a's output", || {
        std::fs::read_to_string(a.dir.join("stdout")).ok().filter(|s| s.contains("=>") && s.ends_with('\n'))
    });
    assert!(out_a.contains("errno=EPERM"), "{out_a}");
    let out = a.delete();
    assert!(out.status.success(), "{}", text(&out));
    eventually(Duration::from_secs(5), "release after delete", || (pinned_cgroups(&w) == 0).then_some(()));
    let records = std::fs::read_dir(w.warden.tmp.join("oci-containers")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(records, 0, "records left behind");
}

/// A profile reload reaches OCI-hook containers: one confined before the reload switches to
/// the new version, one confined after it starts with the new version, never the old one, and
/// the new rules hold for its entrypoint. (The race of a reload with a confine in progress is
/// driven in-process: hook/src/daemon/tests.rs.)
#[test]
fn after_a_reload_oci_hook_containers_get_the_new_version() {
    if !skip_unless(OCI) {
        return;
    }
    let (_l, first) = listener();
    let (_l2, second) = listener();
    // No file watch: the reload is the SIGHUP below, nothing earlier.
    let mut w = WardenDaemon::configure_without_nri(&[("web", net_profile("web", first))], "watch_profiles = false");
    w.start();
    let socket = w.warden.socket();
    let attempts = [format!("connect 127.0.0.1 {first}"), format!("connect 127.0.0.1 {second}")];
    let hook = || Hook { socket: Some(&socket), ..Default::default() };
    let version_of = |id: &str| -> String {
        let st = w.warden.status();
        let c = st["containers"].as_array().unwrap().iter().find(|c| c["id"] == id).cloned();
        c.and_then(|c| c["version"].as_str().map(String::from)).unwrap_or_else(|| panic!("{id} not in {st}"))
    };

    let before = Bundle::new("before", hook(), &[("warden.io/profile", "web")], &attempts);
    let out = before.create();
    assert!(out.status.success(), "{}\n{}", text(&out), w.log_text());
    let v1 = version_of(&before.id);

    std::fs::write(w.profiles.join("web.json"), net_profile("web", second)).unwrap();
    unsafe { libc::kill(w.pid().unwrap() as i32, libc::SIGHUP) };
    eventually(Duration::from_secs(10), "the reload", || w.log_text().contains("profile reloaded").then_some(()));
    let v2 = version_of(&before.id);
    assert_ne!(v1, v2, "the running container switched versions");

    let after = Bundle::new("after", hook(), &[("warden.io/profile", "web")], &attempts);
    let out = after.create();
    assert!(out.status.success(), "{}\n{}", text(&out), w.log_text());
    assert_eq!(version_of(&after.id), v2, "confined after the reload: the new version");
    let out = after.runc().args(["start", &after.id]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let got = eventually(Duration::from_secs(5), "the entrypoint's output", || {
        // Two whole lines: the helper writes "ATTEMPT => " before it tries and the result after
        // (CI once read the second line between the two).
        std::fs::read_to_string(after.dir.join("stdout"))
            .ok()
            .filter(|s| s.lines().filter(|l| l.contains("=>")).count() == 2 && s.ends_with('\n'))
    });
    assert!(got.contains(&format!("connect 127.0.0.1 {first} => errno=EPERM")), "{got}");
    assert!(got.contains(&format!("connect 127.0.0.1 {second} => ok")), "{got}");
}
