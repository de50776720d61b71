//! Reading the events ring buffer: denials, complain-mode hits and learned items.
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use warden_common::{file_op, kind, verdict, Event, FileEvent};

use crate::enforcer::{kind_name, maps::name_of, Maps, Mode};
use crate::escape::escape_bytes;
use crate::profile::family_name;

/// One event as warden shows it. `comm` and `path` (and so `detail`) are the workload's bytes
/// made inert at the source ([`crate::escape::escape_bytes`]): control characters, bidi
/// controls and bytes that are not UTF-8 are written as escapes, in logs, on terminals and in
/// JSON alike (a JSON consumer's own display is protected too).
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub cgroup_id: u64,
    pub root_cgroup: u64,
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub profile: String,
    pub mode: String,
    pub kind: &'static str,
    pub verdict: &'static str,
    /// Human summary of the attempt: `syscall unshare (272)`, `connect tcp 127.0.0.1:9`.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// FILE and EXEC: the full path the kernel resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// FILE and EXEC: access needed (`r`, `w`, `rw`, `x`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// FILE and EXEC: the operation (`open`, `create`, `unlink`, `rename-to`, `exec`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<&'static str>,
    /// Refused by a node-wide deny list: its name, and the entry's line in its file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_list: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny_line: Option<u32>,
}

pub fn file_op_name(op: u16) -> &'static str {
    match op {
        file_op::OPEN => "open",
        file_op::CREATE => "create",
        file_op::MKDIR => "mkdir",
        file_op::UNLINK => "unlink",
        file_op::RMDIR => "rmdir",
        file_op::RENAME_FROM => "rename-from",
        file_op::RENAME_TO => "rename-to",
        file_op::LINK => "link",
        file_op::LINK_SOURCE => "link-source",
        file_op::SYMLINK => "symlink",
        file_op::TRUNCATE => "truncate",
        file_op::CHMOD => "chmod",
        file_op::CHOWN => "chown",
        file_op::EXEC => "exec",
        _ => "unknown",
    }
}

/// A FILE or EXEC record: the view with its path.
pub fn file_view(fe: &FileEvent, profile: String) -> EventView {
    let mut v = view(&fe.ev, profile);
    let end = fe.path.iter().position(|b| *b == 0).unwrap_or(fe.path.len());
    // The workload chose this path: escaped here, once, for every sink (see crate::escape).
    let path = escape_bytes(&fe.path[..end]);
    let acc = crate::enforcer::files::access_string(fe.ev.nr as u8);
    let op = file_op_name(fe.ev.port);
    v.detail = format!("{} {op} {path} (needs {acc})", kind_name(fe.ev.kind));
    v.path = Some(path);
    v.access = Some(acc);
    v.op = Some(op);
    v
}

fn proto_name(p: u32) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        262 => "mptcp".into(),
        255 => "raw".into(),
        n => format!("proto{n}"),
    }
}

pub fn view(ev: &Event, profile: String) -> EventView {
    let comm_end = ev.comm.iter().position(|b| *b == 0).unwrap_or(16);
    let mut v = EventView {
        cgroup_id: ev.cgroup_id,
        root_cgroup: ev.root_cgroup,
        pid: ev.pid,
        tgid: ev.tgid,
        comm: escape_bytes(&ev.comm[..comm_end]),
        profile,
        mode: Mode::from_raw(ev.mode).map(|m| m.as_str().to_string()).unwrap_or_default(),
        kind: kind_name(ev.kind),
        verdict: match ev.verdict {
            verdict::DENIED => "denied",
            verdict::WOULD_DENY => "would-deny",
            verdict::LEARNED => "learned",
            _ => "allowed",
        },
        detail: String::new(),
        syscall: None,
        address: None,
        port: None,
        protocol: None,
        family: None,
        path: None,
        access: None,
        op: None,
        deny_list: None,
        deny_line: None,
    };
    match ev.kind {
        kind::SYSCALL => {
            let name = syscalls::Sysno::new(ev.nr as usize)
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| format!("nr{}", ev.nr));
            v.detail = format!("syscall {name} ({})", ev.nr);
            v.syscall = Some(name);
        }
        kind::COMPAT_SYSCALL => {
            v.detail = format!("32-bit compat syscall nr {}", ev.nr);
            v.syscall = Some(format!("compat:{}", ev.nr));
        }
        kind::CONNECT | kind::SENDMSG | kind::BIND => {
            let addr = if ev.family == libc::AF_INET6 as u16 {
                format!("[{}]", Ipv6Addr::from(ev.addr))
            } else {
                Ipv4Addr::new(ev.addr[0], ev.addr[1], ev.addr[2], ev.addr[3]).to_string()
            };
            let proto = proto_name(ev.nr);
            v.detail = format!("{} {proto} {addr}:{}", kind_name(ev.kind), ev.port);
            v.address = Some(addr.trim_matches(['[', ']']).to_string());
            v.port = Some(ev.port);
            v.protocol = Some(proto);
        }
        kind::SOCKET => {
            let fam = family_name(ev.family as u32);
            v.detail = if ev.port != 0 {
                // Seen at socket creation (cgroup sock_create): type and resolved protocol.
                v.protocol = Some(proto_name(ev.nr));
                format!("socket family {fam} type {} protocol {}", ev.port, proto_name(ev.nr))
            } else {
                format!("socket family {fam} (syscall {})", ev.nr)
            };
            v.family = Some(fam);
        }
        _ => v.detail = format!("kind {} nr {}", ev.kind, ev.nr),
    }
    v
}

/// Reads events from the pinned ring buffer and hands each to `sink`; returns when `sink`
/// returns false, when `follow` is off and the buffer is empty, or after `timeout`.
pub fn read(
    pin_dir: &Path,
    follow: bool,
    timeout: Option<Duration>,
    mut sink: impl FnMut(EventView) -> bool,
) -> Result<()> {
    let start = Instant::now();
    // Following before anything is confined: wait until the state is complete (maps are
    // pinned one by one while a warden loads).
    let (mut rb, maps) = loop {
        match (Maps::events(pin_dir), Maps::open(pin_dir)) {
            (Ok(rb), Ok(maps)) => break (rb, maps),
            (r1, r2) => {
                if !follow || timeout.is_some_and(|t| start.elapsed() >= t) {
                    r2?;
                    r1?;
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    loop {
        let mut got = false;
        while let Some(item) = rb.next() {
            got = true;
            if item.len() < std::mem::size_of::<Event>() {
                continue;
            }
            // SAFETY: the kernel wrote an Event (repr(C), any bit pattern valid).
            let ev: Event = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const Event) };
            let fe: Option<FileEvent> = ((ev.kind == kind::FILE || ev.kind == kind::EXEC)
                && item.len() >= std::mem::size_of::<FileEvent>())
            .then(|| unsafe { std::ptr::read_unaligned(item.as_ptr() as *const FileEvent) });
            drop(item);
            let profile = maps.meta_of(ev.profile_id).map(|m| name_of(&m)).unwrap_or_default();
            let mut v = match &fe {
                Some(fe) => file_view(fe, profile),
                None => view(&ev, profile),
            };
            if ev.deny_list != 0 {
                let list = maps.deny_list_name(ev.deny_list - 1);
                v.detail = format!("{} (deny list {list}, line {})", v.detail, ev.deny_line);
                v.deny_list = Some(list);
                v.deny_line = Some(ev.deny_line);
                if v.profile.is_empty() {
                    v.profile = "(not confined)".into();
                }
            }
            if !sink(v) {
                return Ok(());
            }
        }
        if let Some(t) = timeout {
            if start.elapsed() >= t {
                return Ok(());
            }
        }
        if !follow && !got {
            return Ok(());
        }
        let mut pfd = libc::pollfd { fd: rb.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        unsafe { libc::poll(&mut pfd, 1, 200) };
    }
}
