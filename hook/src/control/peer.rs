//! Whether the process at the other end of a control connection may be served: never when it
//! is inside a confined container, and never when the daemon cannot tell (issue 15, item 7).
//!
//! The kernel names the process that called connect(), not whoever holds the socket now, and
//! SO_PEERCRED gives only its pid: a number, read in the daemon's pid namespace, free for reuse
//! once that process is reaped. Every way of not finding the peer's cgroup used to count as
//! "not confined", so root in a confined container that could reach the socket could `release`
//! itself by connecting from a process that then exits (handing the connection to another), or
//! from a pid namespace the daemon cannot see into (pid 0: a DaemonSet without hostPID sees
//! every peer so). Now:
//!
//! 1. [`identify`]: the peer's cgroup2 id, by the strongest means the kernel has:
//!    - SO_PEERPIDFD (Linux 6.5+) pins the very process that connected, whatever its pid
//!      namespace; PIDFD_GET_INFO (6.13+) then gives its cgroup id straight from the kernel,
//!      independent of cgroup namespaces and of /proc, for a process in the daemon's pid
//!      namespace or below (else EREMOTE);
//!    - 6.5-6.12, and a peer PIDFD_GET_INFO will not describe: the pidfd's pid from
//!      /proc/self/fdinfo (in the namespace of the /proc that is read next), then
//!      /proc/<pid>/cgroup, then the pidfd's pid again: unchanged means the process was alive
//!      (not reaped) throughout, so the pid was still its own;
//!    - before 6.5: SO_PEERCRED's pid, pinned with pidfd_open (5.3+) before /proc is read. The
//!      process that connected may have exited and its pid been reused before that: a window
//!      these kernels give no way to close.
//! 2. [`decide`]: refused when the cgroup is (below) a confined root, when it is unknown for any
//!    reason, and for pid 0 unless the request only reads (the reason is at [`decide`]).
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::cgroup;

/// What a request can do to confinement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `status`, `container`, `events`: reads.
    ReadOnly,
    /// `confine`, `release`: changes whether and how a container is confined.
    Mutating,
    /// The NRI backstop's `confine` (daemon/backstop.rs): puts in force, for a container the
    /// runtime is creating, the policy the daemon itself chose at CreateContainer, at the cgroup
    /// NRI named. It can only tighten: it never releases, never changes a confined container,
    /// and picks nothing the daemon did not.
    Tighten,
}

/// Where the peer process is, as far as the daemon could tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCgroup {
    /// The peer's cgroup2 id; `via` says how it was found (for the log).
    Known { id: u64, via: &'static str },
    /// The peer is in a pid namespace the daemon's is not an ancestor of, and the /proc the
    /// daemon reads cannot name it either (pid 0).
    OtherPidNamespace,
    /// Could not be determined: why.
    Unknown(String),
}

/// The answer to one request of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// `client`: the error the client gets; `log`: why, for the daemon's warning.
    Refuse {
        client: String,
        log: String,
    },
}

/// Whether a request with `access` from `peer` is served. `confined_root` maps a cgroup id to
/// the confined root it is (below), if any.
pub fn decide(peer: &PeerCgroup, access: Access, confined_root: impl FnOnce(u64) -> Option<u64>) -> Decision {
    match peer {
        PeerCgroup::Known { id, via } => match confined_root(*id) {
            Some(root) => Decision::Refuse {
                client: "permission denied: processes inside a confined container may not use the warden control socket"
                    .into(),
                log: format!("the peer is inside a confined container (cgroup {id}, confined root {root}, found by {via})"),
            },
            None => Decision::Allow,
        },
        // Pid 0 is not an anomaly but where every peer of a daemon without hostPID is (a
        // DaemonSet: the node's `warden status` comes from the host's pid namespace). The daemon
        // cannot judge such a peer, so nothing that changes confinement is done for it. Reads
        // are served: they cannot loosen any policy (the invariant of the threat model), the
        // peer already passed the uid-0 check in the daemon's user namespace and reached a
        // socket that is 0600 in a 0700 folder (only a host path mounted into a container by
        // the operator exposes it), and refusing them would take `warden status` and `warden
        // events` away from every such node. What it could learn: the confined containers'
        // names and profiles and their denials, not a way out.
        //
        // The backstop hook is such a peer too: runc runs it in the host's pid namespace. Its
        // request can only put the daemon's own decision in force ([`Access::Tighten`]), so it
        // is served as reads are; without this a DaemonSet would refuse every annotated start.
        PeerCgroup::OtherPidNamespace => match access {
            Access::ReadOnly | Access::Tighten => Decision::Allow,
            Access::Mutating => Decision::Refuse {
                client: "permission denied: the process that connected is in a pid namespace the warden daemon cannot see into (its pid is 0 to the daemon) so the daemon cannot find its cgroup and cannot tell whether it is inside a confined container: it serves such a peer status, container and events only; run this from the daemon's pid namespace".into(),
                log: "pid 0 (a pid namespace the daemon cannot see into): a request that changes confinement".into(),
            },
        },
        PeerCgroup::Unknown(why) => Decision::Refuse {
            client: format!(
                "permission denied: the warden daemon cannot tell whether the process that connected is inside a confined container ({why}), so it refuses the request"
            ),
            log: why.clone(),
        },
    }
}

/// The cgroup of the process that connected `s`; `cred_pid` is its SO_PEERCRED pid, `cgroup2`
/// the cgroup2 mount for the /proc fallbacks.
pub fn identify(s: &UnixStream, cred_pid: i32, cgroup2: &Path) -> PeerCgroup {
    match peer_pidfd(s) {
        Ok(pidfd) => from_pidfd(&pidfd, cgroup2),
        // Linux before 6.5.
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => from_pid(cred_pid, cgroup2),
        Err(e) if gone(&e) => PeerCgroup::Unknown(format!("the process that connected has exited (SO_PEERPIDFD: {e})")),
        Err(e) => PeerCgroup::Unknown(format!("SO_PEERPIDFD: {e}")),
    }
}

/// Errors that mean the process is gone: SO_PEERPIDFD of a reaped peer is EINVAL before 6.9
/// and ESRCH after; ENODATA when no pid was recorded.
fn gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ESRCH | libc::EINVAL | libc::ENODATA))
}

fn peer_pidfd(s: &UnixStream) -> io::Result<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: fd and len are valid for the kernel to write an int.
    let rc = unsafe {
        libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERPIDFD, &mut fd as *mut _ as *mut _, &mut len)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The process behind `pidfd`.
pub fn from_pidfd(pidfd: &OwnedFd, cgroup2: &Path) -> PeerCgroup {
    match pidfd_cgroup_id(pidfd) {
        Ok(Some(id)) => PeerCgroup::Known { id, via: "pidfd" },
        Ok(None) => PeerCgroup::Unknown("PIDFD_GET_INFO gave no cgroup id".into()),
        // 6.5-6.12: no PIDFD_GET_INFO. EREMOTE: the process lives in a pid namespace that is
        // not the daemon's or below it (the host, seen from a DaemonSet): the kernel answers
        // only for processes the caller can name. /proc may still name it (fdinfo's pid is in
        // the namespace of the /proc mounted here), else that is pid 0.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL | libc::EREMOTE)) => {
            from_pidfd_proc(pidfd, cgroup2)
        }
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            PeerCgroup::Unknown(format!("the process that connected has exited (PIDFD_GET_INFO: {e})"))
        }
        Err(e) => PeerCgroup::Unknown(format!("PIDFD_GET_INFO: {e}")),
    }
}

/// struct pidfd_info of linux/pidfd.h, its first published size (PIDFD_INFO_SIZE_VER0).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    ruid: u32,
    rgid: u32,
    euid: u32,
    egid: u32,
    suid: u32,
    sgid: u32,
    fsuid: u32,
    fsgid: u32,
    exit_code: i32,
}
const PIDFD_INFO_CGROUPID: u64 = 1 << 2;
/// _IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info of 64 bytes).
const PIDFD_GET_INFO: libc::c_ulong = (3 << 30) | (64 << 16) | (0xFF << 8) | 11;
const _: () = assert!(std::mem::size_of::<PidfdInfo>() == 64);

/// The cgroup2 id of the process, from the kernel (Linux 6.13+); ESRCH once it is reaped.
fn pidfd_cgroup_id(pidfd: &OwnedFd) -> io::Result<Option<u64>> {
    let mut info = PidfdInfo { mask: PIDFD_INFO_CGROUPID, ..Default::default() };
    // SAFETY: info is a valid, writable pidfd_info of the size the command encodes.
    let rc = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &mut info as *mut PidfdInfo) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((info.mask & PIDFD_INFO_CGROUPID != 0).then_some(info.cgroupid))
}

/// The `Pid:` of a pidfd in /proc/self/fdinfo: in the pid namespace of that /proc (the one
/// /proc/<pid>/cgroup is read from next), -1 once the process is reaped, 0 when it is not in
/// that namespace.
fn fdinfo_pid(pidfd: &OwnedFd) -> Result<i32, String> {
    let f = format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd());
    let text = std::fs::read_to_string(&f).map_err(|e| format!("reading {f}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("{f} has no Pid: line"))
}

/// Through /proc, with the process pinned by `pidfd`: its pid, its cgroup, its pid again.
pub fn from_pidfd_proc(pidfd: &OwnedFd, cgroup2: &Path) -> PeerCgroup {
    let pid = match fdinfo_pid(pidfd) {
        Ok(p) => p,
        Err(e) => return PeerCgroup::Unknown(e),
    };
    match pid {
        -1 => return PeerCgroup::Unknown("the process that connected has exited".into()),
        0 => return PeerCgroup::OtherPidNamespace,
        _ => {}
    }
    let id = match cgroup::cgroup_of_pid(cgroup2, pid).and_then(|p| cgroup::cgroup_id(&p)) {
        Ok(id) => id,
        Err(e) => return PeerCgroup::Unknown(format!("{e:#}")),
    };
    // The pidfd keeps the process, not its pid number, which is free again once the process is
    // reaped. The same pid after the read: it was alive throughout, /proc/<pid> was its own.
    match fdinfo_pid(pidfd) {
        Ok(p) if p == pid => PeerCgroup::Known { id, via: "pidfd and /proc" },
        Ok(_) => PeerCgroup::Unknown("the process that connected exited while its cgroup was read".into()),
        Err(e) => PeerCgroup::Unknown(e),
    }
}

/// From SO_PEERCRED's pid alone (Linux before 6.5).
pub fn from_pid(pid: i32, cgroup2: &Path) -> PeerCgroup {
    if pid == 0 {
        return PeerCgroup::OtherPidNamespace;
    }
    if pid < 0 {
        return PeerCgroup::Unknown(format!("SO_PEERCRED gave pid {pid}"));
    }
    // SAFETY: plain syscall, no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd >= 0 {
        // SAFETY: the kernel just gave us this descriptor.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        return from_pidfd_proc(&pidfd, cgroup2);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ESRCH) => PeerCgroup::Unknown(format!("the process that connected (pid {pid}) has exited")),
        // Before 5.3 there is nothing to pin a process with.
        Some(libc::ENOSYS) => match cgroup::cgroup_of_pid(cgroup2, pid).and_then(|p| cgroup::cgroup_id(&p)) {
            Ok(id) => PeerCgroup::Known { id, via: "pid and /proc" },
            Err(e) => PeerCgroup::Unknown(format!("{e:#}")),
        },
        _ => PeerCgroup::Unknown(format!("pidfd_open({pid}): {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    const CONFINED: u64 = 7001;
    fn roots(id: u64) -> Option<u64> {
        (id == CONFINED || id == CONFINED + 1).then_some(CONFINED)
    }
    fn known(id: u64) -> PeerCgroup {
        PeerCgroup::Known { id, via: "test" }
    }
    fn refused(d: &Decision) -> bool {
        matches!(d, Decision::Refuse { client, .. } if client.starts_with("permission denied"))
    }

    #[test]
    fn confined_peers_are_refused_everything() {
        for access in [Access::ReadOnly, Access::Mutating, Access::Tighten] {
            assert!(refused(&decide(&known(CONFINED), access, roots)), "{access:?}");
            // Below the confined root (a sub-cgroup made inside the container).
            assert!(refused(&decide(&known(CONFINED + 1), access, roots)), "{access:?}");
            assert_eq!(decide(&known(42), access, roots), Decision::Allow, "{access:?}");
        }
    }

    #[test]
    fn a_peer_that_cannot_be_placed_is_refused_everything() {
        for why in [
            "the process that connected has exited (SO_PEERPIDFD: No such process (os error 3))",
            "reading /proc/77/cgroup (is process 77 running, in this pid namespace?)",
            "process 77's cgroup ../../other is outside this cgroup namespace's view",
            "PIDFD_GET_INFO gave no cgroup id",
        ] {
            for access in [Access::ReadOnly, Access::Mutating, Access::Tighten] {
                let d = decide(&PeerCgroup::Unknown(why.into()), access, |_| panic!("no cgroup to look up"));
                let Decision::Refuse { client, log } = &d else { panic!("{why}: {d:?}") };
                assert!(client.contains(why) && client.starts_with("permission denied"), "{client}");
                assert_eq!(log, why);
            }
        }
    }

    #[test]
    fn pid_zero_may_read_but_not_change_confinement() {
        assert_eq!(from_pid(0, Path::new("/nonexistent")), PeerCgroup::OtherPidNamespace);
        let p = PeerCgroup::OtherPidNamespace;
        assert_eq!(decide(&p, Access::ReadOnly, |_| panic!("no cgroup to look up")), Decision::Allow);
        // The backstop hook (runc runs it in the host's pid namespace, a DaemonSet has its own).
        assert_eq!(decide(&p, Access::Tighten, |_| panic!("no cgroup to look up")), Decision::Allow);
        let d = decide(&p, Access::Mutating, |_| panic!("no cgroup to look up"));
        assert!(refused(&d), "{d:?}");
        let Decision::Refuse { client, .. } = d else { unreachable!() };
        assert!(client.contains("pid namespace"), "{client}");
    }

    fn own_cgroup() -> Option<(std::path::PathBuf, u64)> {
        let Ok(mount) = cgroup::cgroup2_mount() else {
            eprintln!("no cgroup2 mount: the real-peer cases of this test did not run");
            return None;
        };
        let own = cgroup::cgroup_of_pid(&mount, std::process::id() as i32).and_then(|p| cgroup::cgroup_id(&p)).ok()?;
        Some((mount, own))
    }

    #[test]
    fn a_live_peer_is_placed_by_every_means() {
        let Some((mount, own)) = own_cgroup() else { return };
        let (a, _b) = UnixStream::pair().unwrap();
        let me = std::process::id() as i32;
        match identify(&a, me, &mount) {
            PeerCgroup::Known { id, .. } => assert_eq!(id, own),
            other => panic!("{other:?}"),
        }
        // The fallbacks of older kernels.
        assert!(matches!(from_pid(me, &mount), PeerCgroup::Known { id, .. } if id == own));
        if let Ok(pidfd) = peer_pidfd(&a) {
            assert!(matches!(from_pidfd_proc(&pidfd, &mount), PeerCgroup::Known { id, .. } if id == own));
        }
        // No such process.
        assert!(matches!(from_pid(1 << 30, &mount), PeerCgroup::Unknown(_)));
    }

    /// A child process connects, hands its connection to us with SCM_RIGHTS and exits; we reap
    /// it and only then ask who connected.
    #[test]
    fn a_peer_that_handed_its_connection_on_and_exited_is_unknown() {
        let Some((mount, _)) = own_cgroup() else { return };
        let dir = std::env::temp_dir().join(format!("warden-peer-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let (to_child, from_child) = UnixStream::pair().unwrap();
        let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // Everything the child needs is prepared before fork: it only makes async-signal-safe
        // calls (socket, connect, sendmsg, _exit).
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(cpath.as_bytes()) {
            *d = *s as libc::c_char;
        }
        let space = unsafe { libc::CMSG_SPACE(4) } as usize;
        let mut cbuf = vec![0u8; space];
        let mut byte = [b'x'];
        let mut iov = libc::iovec { iov_base: byte.as_mut_ptr() as *mut _, iov_len: 1 };
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut _;
        msg.msg_controllen = space;
        let via = to_child.as_raw_fd();
        // SAFETY: the child runs only async-signal-safe calls on memory prepared above.
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            unsafe {
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let rc = libc::connect(
                    fd,
                    &addr as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
                );
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut i32, fd);
                let sent = libc::sendmsg(via, &msg, 0);
                libc::_exit(if rc == 0 && sent == 1 { 0 } else { 1 });
            }
        }
        let mut st = 0;
        assert_eq!(unsafe { libc::waitpid(child, &mut st, 0) }, child);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "child status {st}");
        let (server_end, _) = listener.accept().unwrap();
        // The connection now lives on in this process (the passed descriptor); its peer is the
        // reaped child.
        let mut rbuf = vec![0u8; space];
        let mut rbyte = [0u8];
        let mut riov = libc::iovec { iov_base: rbyte.as_mut_ptr() as *mut _, iov_len: 1 };
        let mut rmsg: libc::msghdr = unsafe { std::mem::zeroed() };
        rmsg.msg_iov = &mut riov;
        rmsg.msg_iovlen = 1;
        rmsg.msg_control = rbuf.as_mut_ptr() as *mut _;
        rmsg.msg_controllen = space;
        assert_eq!(unsafe { libc::recvmsg(from_child.as_raw_fd(), &mut rmsg, libc::MSG_CMSG_CLOEXEC) }, 1);
        let c = unsafe { libc::CMSG_FIRSTHDR(&rmsg) };
        assert!(!c.is_null(), "no descriptor came");
        // SAFETY: SCM_RIGHTS just installed this descriptor in this process.
        let _client_end = unsafe { OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32)) };
        let cred = crate::control::peer_cred(&server_end).unwrap();
        assert_eq!(cred.pid, child, "SO_PEERCRED names the process that connected");
        let p = identify(&server_end, cred.pid, &mount);
        assert!(matches!(&p, PeerCgroup::Unknown(why) if why.contains("exited")), "{p:?}");
        assert!(refused(&decide(&p, Access::ReadOnly, |_| None)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
