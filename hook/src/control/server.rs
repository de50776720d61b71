//! The daemon's control socket: `warden status`, `warden events --follow`, container look-ups
//! for the CLI, and `confine`/`release` for `warden oci-hook` (runtimes without NRI).
//!
//! Protocol: the client sends one JSON request line (`{"op":"status"}`, ...); the daemon answers
//! with JSON lines, the first one `{"ok":true,...}` or `{"ok":false,"error":"..."}`. `events`
//! with `follow` then streams `{"event":{...}}` lines, and `{"dropped":N}` when this client was
//! too slow and lost N events.
//!
//! Who may talk to it: root only. The socket is 0600 in a 0700 folder, and on top of that every
//! connection's peer credentials (SO_PEERCRED) are checked: uid 0, and a process that is not
//! itself inside a confined container. Why both: whoever reaches this socket can release any
//! container's confinement, so file modes alone are one mistake away (a socket bind-mounted into
//! a container, a folder made group-writable by hand, an inherited descriptor) from letting a
//! workload switch its own policy off. SO_PEERCRED is the kernel's word on who connected, in the
//! daemon's user namespace: root inside a user-namespaced container is not uid 0 here.
//!
//! The ring buffer has a single consumer position: two readers would each see part of the
//! events. The daemon is that consumer and fans every event out to its subscribers through a
//! bounded queue each; a slow subscriber loses events (and is told how many), it never slows
//! the daemon down.
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{error, info, warn};

use crate::{
    cgroup,
    daemon::{Confined, Daemon},
    enforcer::{self, Maps},
    events::EventView,
    policy::{self, Pod, Selection},
    profile::{self, Profile},
};

pub const DEFAULT_SOCKET: &str = "/run/warden/warden.sock";
/// A request line longer than this is refused (requests are small; annotations included).
const MAX_REQUEST: u64 = 256 * 1024;
/// Events queued per subscriber before it starts losing them.
pub const SUBSCRIBER_QUEUE: usize = 1024;
/// Connections served at once; more are refused (root-only clients, so a bound, not a defence).
const MAX_CONNECTIONS: usize = 64;

// ---- protocol --------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Daemon version, kernel layers, confined containers.
    Status,
    /// Events of confined containers; with `follow`, a stream.
    Events(EventFilter),
    /// A confined container by id or unique id prefix.
    Container { id: String },
    /// From `warden oci-hook` at createRuntime.
    Confine(ConfineRequest),
    /// From `warden oci-hook` at poststop.
    Release { id: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventFilter {
    pub follow: bool,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    /// Container name, or a container id prefix.
    pub container: Option<String>,
    /// Root cgroup id of the confined cgroup.
    pub cgroup_id: Option<u64>,
}

impl EventFilter {
    fn matches(&self, ev: &ContainerEvent) -> bool {
        self.namespace.as_ref().is_none_or(|n| *n == ev.namespace)
            && self.pod.as_ref().is_none_or(|p| *p == ev.pod)
            && self.container.as_ref().is_none_or(|c| {
                *c == ev.container
                    || (!ev.container_id.is_empty() && !c.is_empty() && ev.container_id.starts_with(c.as_str()))
            })
            && self.cgroup_id.is_none_or(|id| id == ev.event.root_cgroup)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfineRequest {
    /// The runtime's container id.
    pub id: String,
    /// The container's init process (the OCI state's pid): the daemon reads its cgroup itself.
    pub pid: i32,
    /// The cgroup2 directory the hook found; must agree with the pid's.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// The container's OCI annotations (pod annotations included, as CRI-O passes them).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// An event with the container it belongs to (empty names for a cgroup confined by hand).
#[derive(Debug, Clone, Serialize)]
pub struct ContainerEvent {
    pub container_id: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    #[serde(flatten)]
    pub event: EventView,
}

/// A confined container, as `status` and `container` report it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub profile: String,
    /// First bytes of the compiled profile's hash, as in the pinned state.
    pub version: String,
    pub mode: String,
    pub cgroup_id: u64,
    pub cgroup_path: PathBuf,
    /// `nri` or `oci-hook`.
    pub via: String,
    /// Denials (enforce) or would-be denials (complain) per kind, from the kernel's counters.
    pub violations: BTreeMap<String, u64>,
    pub events_sent: u64,
    pub events_dropped: u64,
}

// ---- event fan-out ---------------------------------------------------------------------------

struct Subscriber {
    filter: EventFilter,
    tx: SyncSender<Arc<ContainerEvent>>,
    dropped: Arc<AtomicU64>,
}

/// The daemon's subscribers of `events --follow`.
#[derive(Default)]
pub struct EventHub {
    subs: Mutex<Vec<Subscriber>>,
    /// Containers released lately: their last events may be read from the ring after the
    /// release (a container's final denial, then its exit and poststop/StopContainer), and must
    /// still carry its names. cgroup ids are never reused within a boot.
    released: Mutex<std::collections::VecDeque<(String, Confined)>>,
}

/// How many released containers keep naming their late events.
const RELEASED_KEPT: usize = 256;

pub struct Subscription {
    pub rx: Receiver<Arc<ContainerEvent>>,
    /// Events lost since last taken (queue full).
    pub dropped: Arc<AtomicU64>,
}

impl EventHub {
    pub fn subscribe(&self, filter: EventFilter, queue: usize) -> Subscription {
        let (tx, rx) = sync_channel(queue);
        let dropped = Arc::new(AtomicU64::new(0));
        self.subs.lock().unwrap().push(Subscriber { filter, tx, dropped: dropped.clone() });
        Subscription { rx, dropped }
    }

    /// Called when container `id` is released.
    pub fn remember_released(&self, id: &str, rec: &Confined) {
        let mut r = self.released.lock().unwrap();
        if r.len() >= RELEASED_KEPT {
            r.pop_front();
        }
        r.push_back((id.to_string(), rec.clone()));
    }

    pub fn subscribers(&self) -> usize {
        self.subs.lock().unwrap().len()
    }

    /// Hands `ev` to every matching subscriber without ever blocking: a full queue counts a
    /// drop, a gone subscriber is removed. `containers` names the container of the event.
    pub fn publish(&self, containers: &HashMap<String, Confined>, ev: &EventView) {
        let mut subs = self.subs.lock().unwrap();
        if subs.is_empty() {
            return;
        }
        let released = self.released.lock().unwrap();
        let who = containers
            .iter()
            .find(|(_, r)| r.cgroup_id == ev.root_cgroup)
            .or_else(|| released.iter().rev().find(|(_, r)| r.cgroup_id == ev.root_cgroup).map(|(k, r)| (k, r)));
        let ev = Arc::new(ContainerEvent {
            container_id: who.map(|(k, _)| k.clone()).unwrap_or_default(),
            namespace: who.map(|(_, r)| r.namespace.clone()).unwrap_or_default(),
            pod: who.map(|(_, r)| r.pod.clone()).unwrap_or_default(),
            container: who.map(|(_, r)| r.container.clone()).unwrap_or_default(),
            event: ev.clone(),
        });
        drop(released);
        subs.retain(|s| {
            if !s.filter.matches(&ev) {
                return true;
            }
            match s.tx.try_send(ev.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
    }
}

// ---- the server ------------------------------------------------------------------------------

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

/// Makes the socket's folder (0700, owned by root) or checks an existing one is not writable by
/// others; removes a stale socket (no one listening), refuses a live one.
fn prepare(path: &Path) -> Result<()> {
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
    Ok(())
}

/// Listens on `path` and serves each connection on its own thread. First adopts the records
/// of containers an earlier daemon confined through the OCI hook.
pub fn serve(daemon: Arc<Daemon>, path: &Path) -> Result<Server> {
    prepare(path)?;
    adopt_oci(&daemon, &oci_state_dir(path));
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
            let (d, a) = (daemon.clone(), active.clone());
            let spawned = std::thread::Builder::new().name("control-conn".into()).spawn(move || {
                if let Err(e) = handle(&d, s) {
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
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    s.write_all(&line)
}

fn reply_err(s: &mut UnixStream, msg: &str) -> std::io::Result<()> {
    reply(s, &json!({"ok": false, "error": msg}))
}

/// The cgroup2 directory of process `pid` (the `0::` line of /proc/PID/cgroup), under `mount`.
pub fn cgroup_of_pid(mount: &Path, pid: i32) -> Result<PathBuf> {
    let f = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&f)
        .with_context(|| format!("reading {f} (is process {pid} running, in this pid namespace?)"))?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| anyhow!("{f} has no cgroup2 (0::) line"))?
        .trim();
    if rel.ends_with(" (deleted)") {
        bail!("process {pid}'s cgroup {rel} was deleted");
    }
    let rel = Path::new(rel.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        bail!("process {pid}'s cgroup {} is outside this cgroup namespace's view", rel.display());
    }
    Ok(mount.join(rel))
}

/// The confined root a cgroup belongs to (itself or as a descendant), if any.
fn confined_root(maps: &Maps, id: u64) -> Option<u64> {
    maps.roots().into_iter().map(|(r, _)| r).find(|r| *r == id || maps.inherited_of(*r).contains(&id))
}

fn handle(d: &Daemon, mut s: UnixStream) -> Result<()> {
    let cred = peer_cred(&s)?;
    if cred.uid != 0 {
        warn!(peer_pid = cred.pid, peer_uid = cred.uid, "control socket: refused a non-root peer");
        reply_err(
            &mut s,
            &format!("permission denied: the warden control socket serves root (uid 0) only; you are uid {}", cred.uid),
        )?;
        return Ok(());
    }
    // A confined workload must never reach the switch of its own policy, even as root.
    if let Ok(id) = cgroup_of_pid(&d.cgroup2, cred.pid).and_then(|p| cgroup::cgroup_id(&p)) {
        let root = confined_root(d.enforcer.lock().unwrap().maps(), id);
        if let Some(root) = root {
            warn!(
                peer_pid = cred.pid,
                cgroup_id = id,
                confined_root = root,
                "control socket: refused a peer inside a confined container"
            );
            reply_err(
                &mut s,
                "permission denied: processes inside a confined container may not use the warden control socket",
            )?;
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
    match req {
        Request::Status => reply(&mut s, &status(d))?,
        Request::Container { id } => match lookup(d, &id) {
            Ok(c) => reply(&mut s, &json!({"ok": true, "container": c}))?,
            Err(e) => reply_err(&mut s, &format!("{e:#}"))?,
        },
        Request::Events(filter) => return stream_events(d, s, filter),
        Request::Confine(r) => {
            let v = confine_reply(d, &r, cred);
            reply(&mut s, &v)?;
        }
        Request::Release { id } => {
            let released = d.release_id(&id);
            remove_record(&oci_state_dir(&d.cfg.control_socket), &id);
            if released {
                info!(container_id = %id, peer_pid = cred.pid, "released (control socket)");
            }
            reply(&mut s, &json!({"ok": true, "released": released}))?;
        }
    }
    Ok(())
}

fn stream_events(d: &Daemon, mut s: UnixStream, filter: EventFilter) -> Result<()> {
    if !filter.follow {
        // Nothing is kept: the daemon hands each event to the log and to live subscribers.
        reply(
            &mut s,
            &json!({"ok": true, "follow": false, "note": "the daemon consumes the event ring; only --follow streams events (past ones are in the daemon's log)"}),
        )?;
        return Ok(());
    }
    let sub = d.hub.subscribe(filter, SUBSCRIBER_QUEUE);
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

fn infos(d: &Daemon) -> Vec<ContainerInfo> {
    let recs = d.confined();
    let pinned = enforcer::list(d.enforcer.lock().unwrap().maps());
    let mut out: Vec<ContainerInfo> = recs
        .into_iter()
        .map(|(id, r)| {
            let p = pinned.iter().find(|p| p.cgroup_id == r.cgroup_id);
            ContainerInfo {
                id,
                namespace: r.namespace,
                pod: r.pod,
                container: r.container,
                profile: r.profile,
                version: p.map(|p| p.version.clone()).unwrap_or_default(),
                mode: r.mode.as_str().into(),
                cgroup_id: r.cgroup_id,
                cgroup_path: r.cgroup_path,
                via: r.via.into(),
                violations: p
                    .map(|p| p.violations.iter().map(|(k, v)| (k.to_string(), *v)).collect())
                    .unwrap_or_default(),
                events_sent: p.map(|p| p.events_sent).unwrap_or(0),
                events_dropped: p.map(|p| p.events_dropped).unwrap_or(0),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.pod, &a.container, &a.id).cmp(&(&b.namespace, &b.pod, &b.container, &b.id)));
    out
}

fn status(d: &Daemon) -> Value {
    let mut v = {
        let enf = d.enforcer.lock().unwrap();
        pin_status(enf.maps(), enf.pin_dir())
    };
    v["ok"] = json!(true);
    v["daemon"] = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "pin_dir": d.cfg.pin_dir,
        "nri": d.cfg.nri.enabled,
        "subscribers": d.hub.subscribers(),
    });
    v["kernel"] = serde_json::to_value(&d.probe).unwrap_or(Value::Null);
    v["containers"] = serde_json::to_value(infos(d)).unwrap_or(Value::Null);
    v
}

/// What `warden status --json` prints from the pins alone (also part of the daemon's answer).
pub fn pin_status(maps: &Maps, pin_dir: &Path) -> Value {
    let list = enforcer::list(maps);
    let learned_syscalls = |cgid: u64| -> Vec<&'static str> {
        match maps.learn.get(&cgid, 0) {
            Ok(set) => set
                .seen
                .iter()
                .enumerate()
                .filter(|(_, b)| **b != 0)
                .filter_map(|(n, _)| syscalls::Sysno::new(n).map(|s| s.name()))
                .collect(),
            Err(_) => Vec::new(),
        }
    };
    json!({
        "confined": list,
        "sys_enter_attached": pin_dir.join("links/sys_enter").exists(),
        "inherit_failures": maps.inherit_failures(),
        "learned_syscalls": list.iter().filter(|c| c.mode == "learn").map(|c| {
            (c.cgroup_id.to_string(), learned_syscalls(c.cgroup_id))
        }).collect::<BTreeMap<_, _>>(),
        // Learn and complain records: distinct network items held, and attempts whose new item
        // did not fit (the truncation marker).
        "learn_records": list.iter().filter(|c| c.mode == "learn" || c.mode == "complain").map(|c| {
            let i = maps.learn_info_of(c.cgroup_id);
            (c.cgroup_id.to_string(), json!({
                "items": i.items, "truncated": i.truncated, "bound": warden_common::LEARN_ITEMS_PER_CGROUP,
                "file_items": i.file_items, "file_truncated": i.file_truncated, "file_bound": warden_common::LEARN_FILES_PER_CGROUP,
            }))
        }).collect::<BTreeMap<_, _>>(),
    })
}

fn lookup(d: &Daemon, id: &str) -> Result<ContainerInfo> {
    if id.is_empty() {
        bail!("empty container id");
    }
    let all = infos(d);
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

// ---- confine / release for the OCI hook ------------------------------------------------------

/// Pod and container names of an OCI container, from the annotations CRI-O and containerd's
/// CRI set; a plain runc or Podman container has none: its id stands for the container name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciMeta {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    /// The pod's infrastructure (pause) container: never confined, as with NRI.
    pub sandbox: bool,
}

pub fn oci_meta(ann: &BTreeMap<String, String>, id: &str) -> OciMeta {
    let first = |keys: &[&str]| keys.iter().find_map(|k| ann.get(*k)).cloned().unwrap_or_default();
    let container = first(&["io.kubernetes.container.name", "io.kubernetes.cri.container-name"]);
    let kind = first(&["io.kubernetes.cri-o.ContainerType", "io.kubernetes.cri.container-type"]);
    OciMeta {
        namespace: first(&["io.kubernetes.pod.namespace", "io.kubernetes.cri.sandbox-namespace"]),
        pod: first(&["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"]),
        pod_uid: first(&["io.kubernetes.pod.uid", "io.kubernetes.cri.sandbox-uid"]),
        container: if container.is_empty() { id.to_string() } else { container },
        sandbox: kind == "sandbox",
    }
}

/// Container ids as runtimes make them: no path tricks, bounded.
fn valid_container_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 256
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
    {
        bail!("invalid container id {id:?}");
    }
    Ok(())
}

fn confine_reply(d: &Daemon, r: &ConfineRequest, cred: PeerCred) -> Value {
    let t = std::time::Instant::now();
    match d.confine_oci(r) {
        Ok(Some(c)) => {
            info!(namespace = %c.namespace, pod = %c.pod, container = %c.container, container_id = %r.id, profile = %c.profile,
                  mode = c.mode.as_str(), cgroup_id = c.cgroup_id, peer_pid = cred.pid, micros = t.elapsed().as_micros() as u64, "confined (oci-hook)");
            json!({"ok": true, "confined": true, "profile": c.profile, "mode": c.mode.as_str(), "cgroup_id": c.cgroup_id})
        }
        Ok(None) => json!({"ok": true, "confined": false}),
        Err(e) => {
            let msg = match e.downcast_ref::<policy::PolicyError>() {
                Some(pe) => format!("warden: {pe}"),
                None => format!("warden: container {}: {e:#}", r.id),
            };
            if d.cfg.fail_open {
                warn!(container_id = %r.id, error = %msg, "FAIL-OPEN: policy refused but the container starts UNCONFINED (fail_open = true)");
                json!({"ok": true, "confined": false, "fail_open": msg})
            } else {
                error!(container_id = %r.id, error = %msg, "container start refused (oci-hook)");
                json!({"ok": false, "error": msg})
            }
        }
    }
}

impl Daemon {
    /// `confine` from the OCI hook: the same annotations, validation and profiles as NRI; the
    /// cgroup is the one the container's init process is in, read by the daemon itself.
    pub fn confine_oci(&self, r: &ConfineRequest) -> Result<Option<Confined>> {
        valid_container_id(&r.id)?;
        let meta = oci_meta(&r.annotations, &r.id);
        if meta.sandbox {
            return Ok(None);
        }
        let pod = Pod {
            name: meta.pod.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.pod_uid.clone(),
            annotations: r.annotations.clone(),
        };
        let (profile, mode, source) = match policy::select(&self.cfg.policy, &pod, &meta.container)? {
            Selection::Unconfined(why) => {
                tracing::debug!(container_id = %r.id, why, "not confined");
                return Ok(None);
            }
            Selection::Confine { profile, mode, source } => (profile, mode, source),
        };
        let compiled = match &profile {
            Some(name) => self.load_profile(name).with_context(|| format!("annotation {source}"))?,
            None => profile::compile(&Profile::from_json(r#"{"name":"learning"}"#)?)?,
        };
        if r.pid <= 0 {
            bail!("invalid pid {} in the container state", r.pid);
        }
        let dir = cgroup_of_pid(&self.cgroup2, r.pid)?;
        if let Some(claimed) = &r.cgroup {
            if *claimed != dir {
                bail!("the hook's cgroup {} is not process {}'s cgroup {}", claimed.display(), r.pid, dir.display());
            }
        }
        // The root cgroup would be the whole machine.
        if dir == self.cgroup2 {
            bail!("process {} is in the root cgroup: refusing to confine the whole machine (no per-container cgroup; check the runtime's cgroupsPath)", r.pid);
        }
        let mut containers = self.containers.lock().unwrap();
        if containers.contains_key(&r.id) {
            bail!("container id {} is already confined", r.id);
        }
        let cgroup_id = self.enforcer.lock().unwrap().apply(&dir, &compiled, mode)?;
        let rec = Confined {
            cgroup_id,
            namespace: meta.namespace,
            pod: meta.pod,
            container: meta.container,
            profile: compiled.name.clone(),
            mode,
            cgroup_path: dir,
            via: "oci-hook",
        };
        let record = OciRecord {
            id: r.id.clone(),
            namespace: rec.namespace.clone(),
            pod: rec.pod.clone(),
            container: rec.container.clone(),
            profile: rec.profile.clone(),
            mode,
            cgroup_id,
            cgroup_path: rec.cgroup_path.clone(),
        };
        // Without the record a restarted daemon could not release this container at poststop:
        // undo and refuse rather than confine something nobody can find again.
        if let Err(e) = write_record(&oci_state_dir(&self.cfg.control_socket), &record) {
            let _ = self.enforcer.lock().unwrap().release(cgroup_id);
            return Err(e.context("recording the container for daemon restarts"));
        }
        containers.insert(r.id.clone(), rec.clone());
        Ok(Some(rec))
    }
}

// ---- OCI-hook records across daemon restarts -------------------------------------------------

/// NRI tells a restarted daemon which containers run (Synchronize); for OCI-hook containers no
/// one does, so the daemon keeps one small file per container beside its socket (a tmpfs under
/// /run: gone at reboot, like the cgroups and pins it describes).
fn oci_state_dir(socket: &Path) -> PathBuf {
    socket.parent().unwrap_or(Path::new("/")).join("oci-containers")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OciRecord {
    id: String,
    namespace: String,
    pod: String,
    container: String,
    profile: String,
    mode: crate::enforcer::Mode,
    cgroup_id: u64,
    cgroup_path: PathBuf,
}

fn write_record(dir: &Path, r: &OciRecord) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.json", r.id));
    let tmp = dir.join(format!(".{}.json.tmp", r.id));
    std::fs::write(&tmp, serde_json::to_vec(r)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))
}

fn remove_record(dir: &Path, id: &str) {
    if valid_container_id(id).is_ok() {
        let _ = std::fs::remove_file(dir.join(format!("{id}.json")));
    }
}

/// Takes back the containers of the records whose cgroup still exists and is still confined
/// in the pins; releases the pinned entry of a container whose cgroup is gone.
fn adopt_oci(d: &Daemon, dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let rec: OciRecord =
            match std::fs::read(&path).map_err(anyhow::Error::from).and_then(|b| Ok(serde_json::from_slice(&b)?)) {
                Ok(r) => r,
                Err(e) => {
                    warn!(file = %path.display(), error = %format!("{e:#}"), "unreadable OCI-hook record; removed");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
        let pinned = d.enforcer.lock().unwrap().maps().roots().iter().any(|(id, _)| *id == rec.cgroup_id);
        let alive = cgroup::cgroup_id(&rec.cgroup_path).ok() == Some(rec.cgroup_id);
        if pinned && alive {
            info!(container_id = %rec.id, namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, profile = %rec.profile,
                  cgroup_id = rec.cgroup_id, "adopted an OCI-hook container confined by an earlier daemon");
            d.containers.lock().unwrap().insert(
                rec.id.clone(),
                Confined {
                    cgroup_id: rec.cgroup_id,
                    namespace: rec.namespace,
                    pod: rec.pod,
                    container: rec.container,
                    profile: rec.profile,
                    mode: rec.mode,
                    cgroup_path: rec.cgroup_path,
                    via: "oci-hook",
                },
            );
            continue;
        }
        if pinned {
            info!(container_id = %rec.id, cgroup_id = rec.cgroup_id, "OCI-hook container is gone: releasing its pinned entry");
            if let Err(e) = d.enforcer.lock().unwrap().release(rec.cgroup_id) {
                error!(container_id = %rec.id, error = %format!("{e:#}"), "release failed");
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

// ---- the client ------------------------------------------------------------------------------

pub struct Client {
    reader: BufReader<UnixStream>,
    /// A line begun before a read timed out, completed by the next `next`.
    partial: String,
    pub path: PathBuf,
}

impl Client {
    /// `Ok(None)` when no daemon listens at `path` (no socket file, or a stale one).
    pub fn connect(path: &Path) -> Result<Option<Client>> {
        match UnixStream::connect(path) {
            Ok(s) => Ok(Some(Client { reader: BufReader::new(s), partial: String::new(), path: path.to_path_buf() })),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(e).with_context(|| {
                format!("connecting to the warden daemon at {} (the control socket is root-only)", path.display())
            }),
            Err(e) => Err(e).with_context(|| format!("connecting to the warden daemon at {}", path.display())),
        }
    }

    /// Sends `req` and returns the first answer line; an `ok: false` answer is an error.
    pub fn request(&mut self, req: &Request, timeout: Duration) -> Result<Value> {
        let s = self.reader.get_mut();
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        // A refused peer is answered and hung up on before its request is read: the write can
        // fail (EPIPE) while the refusal waits to be read.
        let sent = s.write_all(&line);
        let v = match (self.next_line(), sent) {
            (Ok(Some(v)), _) => v,
            (_, Err(e)) => return Err(e).context("sending the request"),
            (Ok(None), Ok(())) => bail!("the daemon closed the connection without an answer"),
            (Err(e), Ok(())) => return Err(e),
        };
        if v["ok"] != json!(true) {
            bail!("{}", v["error"].as_str().unwrap_or("the daemon refused the request"));
        }
        Ok(v)
    }

    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<()> {
        Ok(self.reader.get_mut().set_read_timeout(t)?)
    }

    /// The next answer line; `None` at end of stream. A read timeout is an error whose source
    /// is the io::Error (WouldBlock/TimedOut); what was read of the line so far is kept.
    pub fn next_line(&mut self) -> Result<Option<Value>> {
        let n = self.reader.read_line(&mut self.partial).context("reading from the warden daemon")?;
        if n == 0 && self.partial.is_empty() {
            return Ok(None);
        }
        let line = std::mem::take(&mut self.partial);
        Ok(Some(serde_json::from_str(line.trim()).context("the daemon's answer is not JSON")?))
    }
}

/// One request to the daemon at `socket`; an error if none is running.
pub fn call(socket: &Path, req: &Request) -> Result<Value> {
    let mut c = Client::connect(socket)?
        .ok_or_else(|| anyhow!("the warden daemon is not running (no control socket at {})", socket.display()))?;
    c.request(req, Duration::from_secs(30))
}

/// The cgroup id of a confined container, by id or unique id prefix, from the daemon.
pub fn container_cgroup(socket: &Path, id: &str) -> Result<(u64, ContainerInfo)> {
    let v = call(socket, &Request::Container { id: id.to_string() })
        .with_context(|| format!("looking up container {id}"))?;
    let info: ContainerInfo =
        serde_json::from_value(v["container"].clone()).context("the daemon's container answer")?;
    Ok((info.cgroup_id, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_mistakes_are_errors() {
        let r: Request = serde_json::from_str(r#"{"op":"status"}"#).unwrap();
        assert_eq!(r, Request::Status);
        let r: Request = serde_json::from_str(r#"{"op":"events","follow":true,"pod":"web"}"#).unwrap();
        assert_eq!(r, Request::Events(EventFilter { follow: true, pod: Some("web".into()), ..Default::default() }));
        let r: Request =
            serde_json::from_str(r#"{"op":"confine","id":"c1","pid":42,"annotations":{"warden.io/profile":"web"}}"#)
                .unwrap();
        let Request::Confine(c) = r else { panic!() };
        assert_eq!((c.id.as_str(), c.pid, c.annotations.len()), ("c1", 42, 1));
        // Round trip of what the client sends.
        for r in [
            Request::Release { id: "x".into() },
            Request::Container { id: "ab".into() },
            Request::Events(EventFilter::default()),
        ] {
            assert_eq!(serde_json::from_str::<Request>(&serde_json::to_string(&r).unwrap()).unwrap(), r);
        }
        assert!(serde_json::from_str::<Request>(r#"{"op":"shutdown"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"events","folow":true}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"release"}"#).is_err());
    }

    #[test]
    fn oci_metadata_from_cri_o_containerd_and_plain_runc() {
        let m =
            |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let crio = oci_meta(
            &m(&[
                ("io.kubernetes.pod.namespace", "shop"),
                ("io.kubernetes.pod.name", "web-1"),
                ("io.kubernetes.container.name", "app"),
            ]),
            "abc",
        );
        assert_eq!(
            (crio.namespace.as_str(), crio.pod.as_str(), crio.container.as_str(), crio.sandbox),
            ("shop", "web-1", "app", false)
        );
        let ctrd = oci_meta(
            &m(&[("io.kubernetes.cri.sandbox-namespace", "ns"), ("io.kubernetes.cri.container-type", "sandbox")]),
            "p",
        );
        assert!(ctrd.sandbox);
        assert_eq!(ctrd.namespace, "ns");
        let plain = oci_meta(&m(&[("warden.io/profile", "web")]), "my-ctr");
        assert_eq!((plain.namespace.as_str(), plain.pod.as_str(), plain.container.as_str()), ("", "", "my-ctr"));
    }

    #[test]
    fn container_ids() {
        assert!(valid_container_id("abc-1_2.3").is_ok());
        for bad in ["", "../x", "a/b", "a b", &"x".repeat(257)] {
            assert!(valid_container_id(bad).is_err(), "{bad}");
        }
    }

    fn event(root: u64) -> EventView {
        crate::events::view(&warden_common::Event { root_cgroup: root, ..unsafe { std::mem::zeroed() } }, "p".into())
    }

    fn rec(pod: &str, ctr: &str, cg: u64) -> Confined {
        Confined {
            cgroup_id: cg,
            namespace: "ns".into(),
            pod: pod.into(),
            container: ctr.into(),
            profile: "p".into(),
            mode: crate::enforcer::Mode::Enforce,
            cgroup_path: PathBuf::new(),
            via: "nri",
        }
    }

    #[test]
    fn fan_out_filters_and_a_slow_subscriber_loses_events_without_blocking() {
        let hub = EventHub::default();
        let recs: HashMap<String, Confined> =
            [("id-a".to_string(), rec("a", "app", 1)), ("id-b".to_string(), rec("b", "app", 2))].into();
        let only_a = hub.subscribe(EventFilter { follow: true, pod: Some("a".into()), ..Default::default() }, 8);
        let by_id =
            hub.subscribe(EventFilter { follow: true, container: Some("id-b".into()), ..Default::default() }, 8);
        let slow = hub.subscribe(EventFilter { follow: true, ..Default::default() }, 2);
        for _ in 0..5 {
            hub.publish(&recs, &event(1));
            hub.publish(&recs, &event(2));
        }
        let got: Vec<_> = only_a.rx.try_iter().collect();
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|e| e.pod == "a" && e.container_id == "id-a" && e.event.root_cgroup == 1));
        assert_eq!(by_id.rx.try_iter().count(), 5);
        assert_eq!(slow.rx.try_iter().count(), 2);
        assert_eq!(slow.dropped.load(Ordering::Relaxed), 8);
        // Late events of a released container keep its names.
        let mut recs = recs;
        let gone = recs.remove("id-b").unwrap();
        hub.remember_released("id-b", &gone);
        hub.publish(&recs, &event(2));
        assert_eq!(by_id.rx.try_iter().map(|e| e.pod.clone()).collect::<Vec<_>>(), ["b"]);
        // A gone subscriber is removed at the next event.
        drop(only_a);
        hub.publish(&recs, &event(1));
        assert_eq!(hub.subscribers(), 2);
    }
}
