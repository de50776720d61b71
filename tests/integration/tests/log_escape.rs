//! Log and terminal injection (issue 15, item 9): a confined process names itself with a
//! newline, an ESC sequence and a bidi override (prctl PR_SET_NAME) and its pod's name carries
//! a newline; its denial must reach the daemon's log, `warden events` and `warden events --json`
//! with those written as escapes, never raw. The real daemon (`warden run`, NRI off, the
//! container confined over the control socket as the OCI hook does), the real kernel; needs
//! root. Under CI=true a missing piece fails the test.
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use warden_integration_tests::scenarios::listener;
use warden_integration_tests::*;

/// What the workload names itself: `evil`, newline, `ESC [2J` (clear screen), U+202E
/// (right-to-left override), `ok`: 14 bytes, within comm's 15.
const COMM: &[u8] = b"evil\n\x1b[2J\xe2\x80\xaeok";
/// How warden writes it.
const COMM_ESCAPED: &str = r"evil\n\x1b[2J\u{202e}ok";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// No raw control character (but the line ends), DEL, C1 or bidi override in `text`.
fn assert_inert(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        .collect();
    assert!(bad.is_empty(), "{what} carries raw {bad:?}:\n{text}");
}

#[test]
fn workload_names_with_newlines_esc_and_bidi_are_escaped_in_logs_and_cli() {
    if !skip_unless(KERNEL) {
        return;
    }
    let (_l, allowed) = listener();
    let (_l2, other) = listener();
    let profile = ProfileBuilder::new("web").connect("127.0.0.1/32", &[allowed], "tcp").no_bind().json();
    let mut w = WardenDaemon::configure_without_nri(&[("web", profile)], "");
    w.start();
    let socket = w.warden.socket();
    let cg = TestCgroup::new("esc-comm");
    let mut a = Attempt::spawn_in(&cg.path);
    let id = format!("esc-comm-{}", std::process::id());
    let s = UnixStream::connect(&socket).unwrap();
    let req = json!({"op": "confine", "id": id, "pid": a.pid(), "annotations": {
        "warden.io/profile": "web",
        "io.kubernetes.pod.namespace": "shop",
        "io.kubernetes.pod.name": "web\nFORGED warden line\u{1b}[31m",
        "io.kubernetes.container.name": "app",
    }});
    writeln!(&s, "{req}").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    assert!(line.contains(r#""confined":true"#), "{line}");

    // Text and JSON followers through the daemon, before the denial.
    let text = w
        .warden
        .command(&["events", "--follow", "--count", "1", "--timeout", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut js = w.warden.follow_events();
    eventually(Duration::from_secs(5), "two event subscribers", || {
        (w.warden.status()["daemon"]["subscribers"] == json!(2)).then_some(())
    });

    assert_eq!(a.attempt(&format!("set-comm-hex {}", hex(COMM))), Outcome::ok());
    assert_eq!(
        std::fs::read(format!("/proc/{}/comm", a.pid())).unwrap(),
        [COMM, b"\n"].concat(),
        "the kernel keeps the name as given"
    );
    assert_eq!(a.attempt(&format!("connect 127.0.0.1 {other}")), Outcome::errno("EPERM"));

    let ev = js.wait_for(Duration::from_secs(10), |e| e["port"] == other).expect("the denial event");
    assert_eq!(ev["comm"], json!(COMM_ESCAPED), "{ev}");
    assert_eq!(ev["pod"], json!("web\nFORGED warden line\u{1b}[31m"), "names are data in JSON: {ev}");

    let out = text.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), 1, "one event, one line: {stdout}");
    assert!(stdout.contains(&format!("comm={COMM_ESCAPED}")), "{stdout}");
    assert!(stdout.contains(r"shop/web\nFORGED warden line\x1b[31m/app"), "{stdout}");
    assert_inert("warden events", &stdout);

    // The daemon's log: the denial line and the confine line, escaped, no forged line.
    let log = eventually(Duration::from_secs(5), "the denial in the daemon's log", || {
        let l = w.log_text();
        l.contains(&format!("127.0.0.1:{other}")).then_some(l)
    });
    assert_inert("the daemon's log", &log);
    assert!(log.contains(COMM_ESCAPED), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("FORGED")), "{log}");

    // The JSON stream, as bytes on a terminal: no raw ESC or bidi either.
    let raw = w.warden.ok(&["status", "--json"]);
    assert_inert("warden status --json", &raw);
    drop(js);
    drop(a);
    let mut s = UnixStream::connect(&socket).unwrap();
    writeln!(s, "{}", json!({"op": "release", "id": id})).unwrap();
}
