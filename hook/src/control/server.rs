//! The control socket's server: the listening socket, who may connect, and one thread per
//! connection that reads one request and answers it through a [`Handler`] (the daemon), the
//! way the NRI client serves the runtime through `nri::Handler`.
//!
//! Who may talk to it: root only. The socket is 0600 in a 0700 folder, and on top of that every
//! connection's peer credentials (SO_PEERCRED) are checked: uid 0, and a process that is not
//! itself inside a confined container. Why both: whoever reaches this socket can release any
//! container's confinement, so file modes alone are one mistake away (a socket bind-mounted into
//! a container, a folder made group-writable by hand, an inherited descriptor) from letting a
//! workload switch its own policy off. SO_PEERCRED is the kernel's word on who connected, in the
//! daemon's user namespace: root inside a user-namespaced container is not uid 0 here. Where the
//! peer is, and what is refused when the daemon cannot tell: [`super::peer`] (fail closed).
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};
use tracing::{error, info, warn};

use super::hub::EventHub;
use super::peer::{self, Access, Decision, PeerCgroup};
use super::protocol::{ConfineAnswer, ConfineRequest, ContainerInfo, EventFilter, Refusal, Request};

/// A request line longer than this is refused (requests are small; annotations included).
const MAX_REQUEST: u64 = 256 * 1024;
/// Events queued per subscriber before it starts losing them.
pub const SUBSCRIBER_QUEUE: usize = 1024;
/// Connections served at once; more are refused (root-only clients, so a bound, not a defence).
const MAX_CONNECTIONS: usize = 64;

/// What the server asks of the daemon. Called from the connection threads, concurrently.
pub trait Handler: Send + Sync + 'static {
    /// The confined root cgroup that cgroup `id` belongs to (itself or as a descendant), if
    /// any. A peer in such a cgroup is refused whatever its uid.
    fn confined_root_of(&self, id: u64) -> Option<u64>;
    /// The cgroup2 mount (to read a peer's cgroup from /proc on kernels without pidfd info).
    fn cgroup2_mount(&self) -> &Path;
    /// The `status` answer (without `ok`).
    fn status(&self) -> Value;
    /// The confined containers (for `container` look-ups).
    fn containers(&self) -> Vec<ContainerInfo>;
    /// Where `events --follow` subscribes.
    fn hub(&self) -> &EventHub;
    /// `confine` from `warden oci-hook` at createRuntime; `Err` refuses the start with that message.
    fn on_confine(&self, req: &ConfineRequest, peer: PeerCred) -> Result<ConfineAnswer, Refusal>;
    /// `release` from `warden oci-hook` at poststop; false when `id` was not confined.
    fn on_release(&self, id: &str, peer: PeerCred) -> bool;
}

/// The listening socket; removes its file when dropped (daemon exit).
pub struct Server {
    path: PathBuf,
    ino: u64,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only our own socket: a newer daemon may have replaced it.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// First step of serving: makes the socket's folder (0700, owned by root) or checks an existing
/// one is not writable by others; removes a stale socket (no one listening), refuses a live one.
pub fn prepare(path: &Path) -> Result<Prepared> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| anyhow!("control socket {} has no folder", path.display()))?;
    match std::fs::symlink_metadata(dir) {
        Ok(m) => {
            if !m.is_dir() {
                bail!("control socket folder {} is not a directory", dir.display());
            }
            if m.uid() != 0 || m.mode() & 0o022 != 0 {
                bail!(
                    "control socket folder {} must be owned by root and writable by root only (uid {}, mode {:o}): anyone who can replace the socket can impersonate the daemon",
                    dir.display(),
                    m.uid(),
                    m.mode() & 0o7777
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("chmod 0700 {}", dir.display()))?;
        }
        Err(e) => return Err(e).with_context(|| format!("stat {}", dir.display())),
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                bail!("another warden daemon is serving {} (stop it first, or set control_socket)", path.display());
            }
            std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
        }
        Ok(_) => bail!("{} exists and is not a socket; not replacing it", path.display()),
        Err(_) => {}
    }
    Ok(Prepared { path: path.to_path_buf() })
}

/// A socket path made ready by [`prepare`], not listened on yet.
pub struct Prepared {
    path: PathBuf,
}

/// Listens on the prepared path and serves each connection on its own thread.
pub fn serve<H: Handler>(prepared: Prepared, handler: Arc<H>) -> Result<Server> {
    let path = prepared.path.as_path();
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding the control socket {}", path.display()))?;
    // The folder is 0700 already; the socket mode is the second fence.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    let ino = std::fs::symlink_metadata(path)?.ino();
    info!(socket = %path.display(), "control socket listening (root only)");
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("control".into()).spawn(move || {
        for conn in listener.incoming() {
            let mut s = match conn {
                Ok(s) => s,
                Err(e) => {
                    error!(error = %e, "control socket accept failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                let _ = reply_err(&mut s, &format!("busy: {MAX_CONNECTIONS} connections already open"));
                continue;
            }
            active.fetch_add(1, Ordering::Relaxed);
            let (h, a) = (handler.clone(), active.clone());
            let spawned = std::thread::Builder::new().name("control-conn".into()).spawn(move || {
                if let Err(e) = handle(&*h, s) {
                    tracing::debug!(error = %format!("{e:#}"), "control connection ended with an error");
                }
                a.fetch_sub(1, Ordering::Relaxed);
            });
            if let Err(e) = spawned {
                error!(error = %e, "cannot start a control connection thread");
            }
        }
    })?;
    Ok(Server { path: path.to_path_buf(), ino })
}

#[derive(Debug, Clone, Copy)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

pub fn peer_cred(s: &UnixStream) -> Result<PeerCred> {
    let mut c = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: c and len are valid for the kernel to write a ucred.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut c as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_PEERCRED");
    }
    Ok(PeerCred { pid: c.pid, uid: c.uid, gid: c.gid })
}

fn reply(s: &mut UnixStream, v: &Value) -> std::io::Result<()> {
    // Names from annotations travel in these lines: no raw bidi or C1 even in the JSON.
    let mut line = crate::escape::json_inert(&v.to_string()).into_owned();
    line.push('\n');
    s.write_all(line.as_bytes())
}

fn reply_err(s: &mut UnixStream, msg: &str) -> std::io::Result<()> {
    reply(s, &json!({"ok": false, "error": msg}))
}

fn handle<H: Handler>(h: &H, mut s: UnixStream) -> Result<()> {
    let cred = peer_cred(&s)?;
    if cred.uid != 0 {
        warn!(peer_pid = cred.pid, peer_uid = cred.uid, "control socket: refused a non-root peer");
        reply_err(
            &mut s,
            &format!("permission denied: the warden control socket serves root (uid 0) only; you are uid {}", cred.uid),
        )?;
        return Ok(());
    }
    // A confined workload must never reach the switch of its own policy, even as root; nor may
    // a peer the daemon cannot place. Refused before its request is read, so that a confined
    // peer cannot hold one of the MAX_CONNECTIONS for the read timeout; only a peer in a pid
    // namespace the daemon cannot see into waits for its request (reads are served to it).
    let found = peer::identify(&s, cred.pid, h.cgroup2_mount());
    let deferred = found == PeerCgroup::OtherPidNamespace;
    if !deferred {
        if let Decision::Refuse { client, log } = peer::decide(&found, Access::Mutating, |id| h.confined_root_of(id)) {
            warn!(peer_pid = cred.pid, why = %log, "control socket: refused a peer");
            reply_err(&mut s, &client)?;
            return Ok(());
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new((&s).take(MAX_REQUEST)).read_line(&mut line).context("reading the request")?;
    if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST {
        reply_err(&mut s, &format!("request longer than {MAX_REQUEST} bytes"))?;
        return Ok(());
    }
    let req: Request = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(e) => {
            reply_err(&mut s, &format!("bad request: {e}"))?;
            return Ok(());
        }
    };
    if deferred {
        if let Decision::Refuse { client, log } = peer::decide(&found, req.access(), |id| h.confined_root_of(id)) {
            warn!(peer_pid = cred.pid, op = req.op(), why = %log, "control socket: refused a peer");
            reply_err(&mut s, &client)?;
            return Ok(());
        }
    }
    match req {
        Request::Status => {
            let mut v = h.status();
            v["ok"] = json!(true);
            reply(&mut s, &v)?
        }
        Request::Container { id } => match lookup(&h.containers(), &id) {
            Ok(c) => reply(&mut s, &json!({"ok": true, "container": c}))?,
            Err(e) => reply_err(&mut s, &format!("{e:#}"))?,
        },
        Request::Events(filter) => return stream_events(h.hub(), s, filter),
        Request::Confine(r) => {
            let v = match h.on_confine(&r, cred) {
                Ok(ConfineAnswer::Confined { profile, mode, cgroup_id }) => {
                    json!({"ok": true, "confined": true, "profile": profile, "mode": mode, "cgroup_id": cgroup_id})
                }
                Ok(ConfineAnswer::NotConfined) => json!({"ok": true, "confined": false}),
                Ok(ConfineAnswer::FailOpen(msg)) => json!({"ok": true, "confined": false, "fail_open": msg}),
                Err(r) => json!({"ok": false, "error": r.message, "violation": r.violation}),
            };
            reply(&mut s, &v)?;
        }
        Request::Release { id } => {
            let released = h.on_release(&id, cred);
            reply(&mut s, &json!({"ok": true, "released": released}))?;
        }
    }
    Ok(())
}

fn stream_events(hub: &EventHub, mut s: UnixStream, filter: EventFilter) -> Result<()> {
    if !filter.follow {
        // Nothing is kept: the daemon hands each event to the log and to live subscribers.
        reply(
            &mut s,
            &json!({"ok": true, "follow": false, "note": "the daemon consumes the event ring; only --follow streams events (past ones are in the daemon's log)"}),
        )?;
        return Ok(());
    }
    let sub = hub.subscribe(filter, SUBSCRIBER_QUEUE);
    reply(&mut s, &json!({"ok": true, "follow": true}))?;
    loop {
        let lost = sub.dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            reply(&mut s, &json!({"dropped": lost}))?;
        }
        match sub.rx.recv_timeout(Duration::from_secs(1)) {
            Ok(ev) => reply(&mut s, &json!({"event": &*ev}))?,
            Err(RecvTimeoutError::Timeout) => {
                if peer_gone(&s) {
                    return Ok(());
                }
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// Whether the client hung up (so an idle follower's thread and queue go away).
fn peer_gone(s: &UnixStream) -> bool {
    let mut p = libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// A container by id, or by an id prefix that names only one.
fn lookup(all: &[ContainerInfo], id: &str) -> Result<ContainerInfo> {
    if id.is_empty() {
        bail!("empty container id");
    }
    if let Some(c) = all.iter().find(|c| c.id == id) {
        return Ok(c.clone());
    }
    let m: Vec<&ContainerInfo> = all.iter().filter(|c| c.id.starts_with(id)).collect();
    match m.as_slice() {
        [] => bail!("no confined container has id or id prefix {id:?} ({} confined)", all.len()),
        [one] => Ok((*one).clone()),
        many => bail!(
            "container id prefix {id:?} is ambiguous: {}",
            many.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}
