//! Who may use the control socket when the daemon cannot simply look the peer up (issue 15,
//! item 7): a confined process that connected and then handed its connection on and exited,
//! and a confined process in a pid namespace the daemon cannot see into (SO_PEERCRED pid 0,
//! the DaemonSet's situation without hostPID). Either one, as root, could `release` its own
//! container while the daemon skipped the check on any error. The real daemon (`warden run`,
//! NRI off), the real kernel; needs root. Under CI=true a missing piece fails the test.
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use warden_integration_tests::scenarios::listener;
use warden_integration_tests::*;

/// Network only (the holder and the attacker need no syscall rule to be confined).
fn net_profile(name: &str, port: u16) -> String {
    ProfileBuilder::new(name).connect("127.0.0.1/32", &[port], "tcp").no_bind().json()
}

/// One request line on `s`, the first answer line back.
fn call(s: &UnixStream, req: &Value) -> Value {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s;
    // A peer refused whatever it asks is answered and hung up on before its request is read:
    // the write may then fail (EPIPE), the answer is still there to read.
    let _ = writeln!(w, "{req}");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {line:?}: {e}"))
}

/// A fresh connection from this (unconfined, root) process.
fn call_new(socket: &Path, req: &Value) -> Value {
    call(&UnixStream::connect(socket).unwrap(), req)
}

/// Receives one descriptor sent with SCM_RIGHTS on `s`.
fn recv_fd(s: &UnixStream) -> OwnedFd {
    use std::os::fd::AsRawFd as _;
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) as usize;
        let mut cbuf = vec![0u8; space];
        let mut byte = [0u8];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr() as *mut _, iov_len: 1 };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut _;
        msg.msg_controllen = space;
        let n = libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        assert_eq!(n, 1, "recvmsg: {}", std::io::Error::last_os_error());
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(!c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS, "no descriptor came");
        OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32))
    }
}

/// A process in the confined cgroup connects to `socket` and hands the connection over; the
/// returned stream carries that process's credentials.
fn connection_of(a: &mut Attempt, socket: &Path, relay_dir: &Path) -> UnixStream {
    let relay_path = relay_dir.join(format!("relay-{}.sock", a.pid()));
    let relay = UnixListener::bind(&relay_path).unwrap();
    let out = a.attempt(&format!("pass-unix {} {}", socket.display(), relay_path.display()));
    assert_eq!(out, Outcome::ok(), "the confined process could not pass its connection");
    let (r, _) = relay.accept().unwrap();
    let fd = recv_fd(&r);
    let _ = std::fs::remove_file(&relay_path);
    UnixStream::from(fd)
}

/// Confines the cgroup of `pid` as container `id` through the socket (as the OCI hook does).
fn confine(socket: &Path, id: &str, pid: u32) {
    let a =
        call_new(socket, &json!({"op": "confine", "id": id, "pid": pid, "annotations": {"warden.io/profile": "web"}}));
    assert_eq!((a["ok"].as_bool(), a["confined"].as_bool()), (Some(true), Some(true)), "{a}");
}

fn listed(socket: &Path, id: &str) -> bool {
    let st = call_new(socket, &json!({"op": "status"}));
    st["containers"].as_array().is_some_and(|cs| cs.iter().any(|c| c["id"] == id))
}

/// SIGCONT on drop: a stopped daemon must not outlive a failed assertion.
struct Stopped(i32);
impl Stopped {
    fn new(pid: u32) -> Stopped {
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        Stopped(pid as i32)
    }
}
impl Drop for Stopped {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[test]
fn a_connection_handed_on_by_a_confined_process_that_exited_cannot_release() {
    if !skip_unless(KERNEL) {
        return;
    }
    let (_l, port) = listener();
    let mut w = WardenDaemon::configure_without_nri(&[("web", net_profile("web", port))], "");
    w.start();
    let socket = w.warden.socket();
    let cg = TestCgroup::new("peer-exited");
    let _init = Attempt::spawn_in(&cg.path);
    let id = format!("peer-exited-{}", std::process::id());
    confine(&socket, &id, _init.pid());

    // The attacker: root in the confined cgroup connects, hands the connection to another
    // process and exits (and is reaped) before the daemon looks at who connected. The daemon is
    // stopped meanwhile so that the order is certain, not a race the test may lose: an attacker
    // gets the same order by making the daemon slow.
    let mut a = Attempt::spawn_in(&cg.path);
    let a_pid = a.pid();
    let stopped = Stopped::new(w.pid().unwrap());
    let conn = connection_of(&mut a, &socket, &w.warden.tmp);
    drop(a);
    assert!(!Path::new(&format!("/proc/{a_pid}")).exists(), "the connecting process is gone");
    drop(stopped);

    let ans = call(&conn, &json!({"op": "release", "id": id}));
    assert_eq!(ans["ok"], json!(false), "a dead confined peer's connection released its container: {ans}");
    let err = ans["error"].as_str().unwrap_or_default();
    assert!(err.contains("permission denied") && err.contains("exited"), "{ans}");
    assert!(listed(&socket, &id), "the container is still confined");
    assert!(w.log_text().contains("control socket: refused"), "{}", w.log_text());

    // The same for a read-only request: a peer the daemon cannot place is served nothing.
    let mut a = Attempt::spawn_in(&cg.path);
    let stopped = Stopped::new(w.pid().unwrap());
    let conn = connection_of(&mut a, &socket, &w.warden.tmp);
    drop(a);
    drop(stopped);
    let ans = call(&conn, &json!({"op": "status"}));
    assert_eq!(ans["ok"], json!(false), "{ans}");

    // An unconfined root peer still releases it.
    let ans = call_new(&socket, &json!({"op": "release", "id": id}));
    assert_eq!(ans, json!({"ok": true, "released": true}));
}

/// The host pid of the only child of `pid` (the daemon under `unshare --fork`).
fn only_child(pid: u32) -> u32 {
    eventually(Duration::from_secs(5), "the daemon under unshare", || {
        let t = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        t.split_whitespace().next()?.parse().ok()
    })
}

#[test]
fn a_confined_peer_in_a_pid_namespace_the_daemon_cannot_see_cannot_release() {
    if !skip_unless(KERNEL) {
        return;
    }
    let (_l, port) = listener();
    let mut w = WardenDaemon::configure_without_nri(&[("web", net_profile("web", port))], "");
    // The daemon in a pid namespace of its own, the test and the workload in the host's: to the
    // daemon every peer's SO_PEERCRED pid is 0, as for a DaemonSet without hostPID. /proc stays
    // the host's so that the daemon can read the cgroup of the container's init by its host pid
    // (the `confine` request below); SO_PEERCRED's pid is what this test is about.
    w.start_wrapped(&["unshare", "--pid", "--fork", "--kill-child"]);
    let daemon = only_child(w.pid().unwrap());
    let socket = w.warden.socket();
    let cg = TestCgroup::new("peer-pidns");
    let init = Attempt::spawn_in(&cg.path);
    let id = format!("peer-pidns-{}", std::process::id());
    confine(&socket, &id, init.pid());
    assert!(listed(&socket, &id), "an unconfined root peer in the host's pid namespace is served");

    let mut a = Attempt::spawn_in(&cg.path);
    let conn = connection_of(&mut a, &socket, &w.warden.tmp);
    let ans = call(&conn, &json!({"op": "release", "id": id}));
    assert_eq!(ans["ok"], json!(false), "a confined peer with pid 0 released its container: {ans}");
    assert!(ans["error"].as_str().is_some_and(|e| e.contains("permission denied")), "{ans}");
    assert!(listed(&socket, &id), "the container is still confined");
    let log = w.log_text();
    assert!(log.contains("control socket: refused"), "{log}");

    drop(a);
    let ans = call_new(&socket, &json!({"op": "release", "id": id}));
    assert_eq!(ans, json!({"ok": true, "released": true}));
    w.kill();
    eventually(Duration::from_secs(5), "the daemon's exit", || {
        (!Path::new(&format!("/proc/{daemon}")).exists()).then_some(())
    });
}

#[test]
fn a_peer_the_daemon_cannot_name_may_read_but_never_confine_or_release() {
    if !skip_unless(KERNEL) {
        return;
    }
    let (_l, port) = listener();
    let mut w = WardenDaemon::configure_without_nri(&[("web", net_profile("web", port))], "");
    // The DaemonSet's view exactly: its own pid namespace and its own /proc, so neither
    // SO_PEERCRED (pid 0), PIDFD_GET_INFO (EREMOTE) nor /proc can name a peer on the host.
    w.start_wrapped(&["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]);
    let daemon = only_child(w.pid().unwrap());
    let socket = w.warden.socket();

    // Reads are served: `warden status` on a DaemonSet's node.
    let st = call_new(&socket, &json!({"op": "status"}));
    assert_eq!(st["ok"], json!(true), "{st}");
    let out = w.warden.run(&["status"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Nothing that changes confinement, from anyone the daemon cannot place.
    for req in [
        json!({"op": "release", "id": "anything"}),
        json!({"op": "confine", "id": "c1", "pid": std::process::id(), "annotations": {"warden.io/profile": "web"}}),
    ] {
        let ans = call_new(&socket, &req);
        assert_eq!(ans["ok"], json!(false), "{req} from a peer with pid 0 was served: {ans}");
        let err = ans["error"].as_str().unwrap_or_default();
        assert!(err.starts_with("permission denied") && err.contains("pid namespace"), "{ans}");
    }
    let log = w.log_text();
    assert!(log.contains("control socket: refused a peer") && log.contains("release"), "{log}");

    w.kill();
    eventually(Duration::from_secs(5), "the daemon's exit", || {
        (!Path::new(&format!("/proc/{daemon}")).exists()).then_some(())
    });
}
