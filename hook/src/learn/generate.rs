//! Generating a profile from a [`Learned`] record (the rules are in the module docs of
//! [`crate::learn`]).
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use warden_common::{kind, learn_kind, LearnFileUse, LEARN_FILES_PER_CGROUP, LEARN_ITEMS_PER_CGROUP, MAX_PORT_RULES};

use super::record::{item_addr, item_text, proto_of, Learned, AF_INET, AF_INET6, SOCK_RAW};
use crate::profile::files::{bits_letters, R, W, X};
use crate::profile::merge::{canonical, join_ranges};
use crate::profile::{
    family_name, family_number, protocol_name, BindRule, ConnectRule, DefaultAction, FileRuleSpec, Network, PortRange,
    Profile, Protocol, Syscalls, SyscallsSpec,
};

/// Distinct bind ports in 32768-60999 (per protocol) from which they count as ephemeral.
pub const EPHEMERAL_COLLAPSE_MIN: usize = 4;
pub const EPHEMERAL: PortRange = PortRange { lo: 32768, hi: 60999 };
/// Always added to a learned syscall list (those the host knows): a process must be able to
/// end and return from a signal handler even if it did not while learning; and the container
/// runtime's init (runc, a Go program) runs in the container's cgroup between StartContainer
/// and the entrypoint's exec, where its Go runtime makes some of these housekeeping calls only
/// depending on timing (seen: `epoll_pwait` in one start and not another); and the waits for
/// a signal (`rt_sigsuspend`, `pause`), which shells use to wait for a child only when it has
/// not ended yet (seen in the learn corpus: busybox ash's `wait` killed in one run of ten).
/// None of them gives a process anything new; without them a learned profile could break the
/// container's start or a run that happened to be faster or slower.
pub const ALWAYS_SYSCALLS: &[&str] = &[
    "exit",
    "exit_group",
    "restart_syscall",
    "rt_sigreturn",
    // waiting for a signal (shells, depending on whether the child already ended)
    "pause",
    "rt_sigsuspend",
    // Go runtime housekeeping (runc init)
    "clock_gettime",
    "clock_nanosleep",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "futex",
    "getpid",
    "gettid",
    "madvise",
    "mmap",
    "munmap",
    "nanosleep",
    "rt_sigaction",
    "rt_sigprocmask",
    "sched_yield",
    "sigaltstack",
    "tgkill",
];

pub struct GenerateOptions {
    pub name: String,
    pub extends: Vec<String>,
    /// Where it was learned, for the description (cgroup path or pod/container).
    pub source: String,
    /// A directory with more than this many distinct entries used becomes one prefix rule.
    pub collapse_dir_files: usize,
}

/// Default of [`GenerateOptions::collapse_dir_files`].
pub const COLLAPSE_DIR_FILES: usize = 16;

/// The parent directory prefix of a rule path (`/a/b` and `/a/b/` -> `/a/`; `/` -> None).
fn parent_dir(p: &str) -> Option<&str> {
    let t = p.strip_suffix('/').unwrap_or(p);
    if t.is_empty() {
        return None;
    }
    t.rfind('/').map(|i| &t[..=i])
}

/// The `files` section from the recorded paths (rules described in the module docs).
fn file_rules(files: &[(String, LearnFileUse)], collapse: usize, notes: &mut Vec<String>) -> Vec<FileRuleSpec> {
    let mut m: BTreeMap<String, u8> = BTreeMap::new();
    let (mut procs, mut cut, mut deleted) = (0usize, 0usize, 0usize);
    let mut temps: BTreeSet<String> = BTreeSet::new();
    for (path, u) in files {
        let bits =
            (if u.read != 0 { R } else { 0 }) | (if u.write != 0 { W } else { 0 }) | (if u.exec != 0 { X } else { 0 });
        if bits == 0 {
            continue;
        }
        let mut p = path.clone();
        if let Some(s) = p.strip_suffix(" (deleted)") {
            p = s.to_string();
            deleted += 1;
        }
        if !p.starts_with('/') || crate::profile::files::check_path(&p).is_err() && u.cut == 0 {
            notes.push(format!("files: left out `{p}` (not a path a rule can name)"));
            continue;
        }
        if u.cut != 0 {
            match parent_dir(&p) {
                Some(d) => p = d.to_string(),
                None => continue,
            }
            cut += 1;
        }
        if let Some(dir) = temp_name_dir(&p) {
            temps.insert(p.clone());
            p = dir;
        }
        if let Some(rest) = p.strip_prefix("/proc/") {
            let first = rest.split('/').next().unwrap_or("");
            if !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()) {
                p = "/proc/".into();
                procs += 1;
            }
        }
        *m.entry(p).or_default() |= bits;
    }
    if procs > 0 {
        notes.push(format!(
            "files: {procs} per-process /proc/<pid>/ path(s) generalised to /proc/ (the pid differs in every run)"
        ));
    }
    if !temps.is_empty() {
        let shown: Vec<&str> = temps.iter().take(3).map(String::as_str).collect();
        notes.push(format!(
            "files: {} path(s) with a generated name (temp files and folders, per-run sockets: a new name every run, e.g. {}) generalised to the folder that holds the generated name",
            temps.len(),
            shown.join(", ")
        ));
    }
    if cut > 0 {
        notes.push(format!("files: {cut} path(s) longer than the record holds written as their longest directory"));
    }
    if deleted > 0 {
        notes.push(format!("files: {deleted} path(s) of files deleted meanwhile kept under their name"));
    }
    // Directories with many entries used: one prefix rule with the union of their uses.
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in m.keys() {
        if let Some(d) = parent_dir(p) {
            children.entry(d.to_string()).or_default().push(p.clone());
        }
    }
    for (d, kids) in children {
        if kids.len() > collapse {
            let mut bits = m.get(&d).copied().unwrap_or(0);
            for k in &kids {
                bits |= m.remove(k).unwrap_or(0);
            }
            notes.push(format!(
                "files: {} entries used in {d} collapsed into `{d}` {}",
                kids.len(),
                bits_letters(bits)
            ));
            *m.entry(d).or_default() |= bits;
        }
    }
    let listed: Vec<&String> = m.keys().filter(|p| p.ends_with('/') && p.as_str() != "/proc/").collect();
    if !listed.is_empty() {
        notes.push(format!(
            "files: directories listed (opendir) need their prefix rule, which also covers what is below them: {}",
            listed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    // Rules a directory rule already grants are redundant.
    let dirs: Vec<(String, u8)> = m.iter().filter(|(p, _)| p.ends_with('/')).map(|(p, b)| (p.clone(), *b)).collect();
    m.retain(|p, b| !dirs.iter().any(|(d, db)| d != p && p.starts_with(d.as_str()) && *db & *b == *b));
    m.into_iter().map(|(path, b)| FileRuleSpec { path, access: bits_letters(b) }).collect()
}

/// Whether a connect to `addr`:`port` went to one of the workload's own listeners whose port the
/// kernel chose (`own`), on loopback and inside the ephemeral range: then the port is the
/// kernel's choice of that run, and the rule follows the choice instead of the number. Only
/// loopback: a listener reached through another address may be someone else's on that port.
pub(super) fn follows_kernel_choice(addr: IpAddr, p: Protocol, port: u16, own: &BTreeSet<(Protocol, u16)>) -> bool {
    addr.is_loopback() && (EPHEMERAL.lo..=EPHEMERAL.hi).contains(&port) && own.contains(&(p, port))
}

fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Any => "any protocol",
    }
}

/// Folders where programs make files and folders with generated names (mkstemp, mkdtemp,
/// Python's tempfile, per-run sockets).
pub const TEMP_ROOTS: &[&str] = &["/tmp/", "/var/tmp/", "/dev/shm/", "/run/"];

/// For a path under one of [`TEMP_ROOTS`] with a component whose name looks generated
/// ([`looks_generated`]), the folder that holds the first such component (a `dir/` prefix
/// rule): the narrowest rule that names no run's own random name. None otherwise.
pub fn temp_name_dir(path: &str) -> Option<String> {
    let root = TEMP_ROOTS.iter().find(|r| path.starts_with(**r))?;
    let mut dir = root.to_string();
    for comp in path[root.len()..].split('/') {
        if comp.is_empty() {
            break;
        }
        if looks_generated(comp) {
            return Some(dir);
        }
        dir.push_str(comp);
        dir.push('/');
    }
    None
}

/// Whether a file name carries a generated part: Python's `tmp` + 8 characters of
/// `[a-z0-9_]` (tempfile), or a run of at least 6 letters and digits that mixes letters with
/// digits or lower with upper case (mkstemp's and mktemp's `XXXXXX`, hex ids). Plain words
/// (`db.sqlite`, `nginx.conf`) are not, and neither are numbers alone (`app-2024`, a pid in a
/// folder's name): a number is as often a fixed version or port as a per-run pid, and a
/// guess that widens a rule must have the stronger evidence.
pub fn looks_generated(name: &str) -> bool {
    let b = name.as_bytes();
    if let Some(rest) = name.strip_prefix("tmp") {
        let r = rest.as_bytes();
        if r.len() >= 8 && r[..8].iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_') {
            return true;
        }
    }
    for run in b.split(|c| !c.is_ascii_alphanumeric()) {
        let digits = run.iter().filter(|c| c.is_ascii_digit()).count();
        let lower = run.iter().filter(|c| c.is_ascii_lowercase()).count();
        let upper = run.iter().filter(|c| c.is_ascii_uppercase()).count();
        if run.len() >= 6 && ((digits > 0 && lower + upper > 0) || (lower > 0 && upper > 0)) {
            return true;
        }
    }
    false
}

pub struct Generated {
    pub profile: Profile,
    /// What was generalised or left out, one line each (also in the description).
    pub notes: Vec<String>,
    /// Items the kernel could not record (bound reached): the profile is incomplete.
    pub truncated: u64,
}

fn ports(set: &BTreeSet<u16>) -> Vec<PortRange> {
    join_ranges(set.iter().map(|p| PortRange { lo: *p, hi: *p }).collect())
}

pub fn generate(l: &Learned, opts: &GenerateOptions) -> Generated {
    let mut notes = Vec::new();

    // Syscalls.
    let mut names: BTreeSet<String> = l.syscall_names().into_iter().collect();
    let unnamed: Vec<usize> = l.syscalls.iter().copied().filter(|n| syscalls::Sysno::new(*n).is_none()).collect();
    if !unnamed.is_empty() {
        notes.push(format!("syscall numbers without a name on this host left out: {unnamed:?}"));
    }
    let added: Vec<&str> = ALWAYS_SYSCALLS
        .iter()
        .copied()
        .filter(|s| s.parse::<syscalls::Sysno>().is_ok() && !names.contains(*s))
        .collect();
    names.extend(added.iter().map(|s| s.to_string()));
    notes.push(format!(
        "syscalls: the {} learned, plus always (process end, signal return and waits, the container runtime's Go housekeeping): {}",
        l.syscalls.len(),
        ALWAYS_SYSCALLS.join(", ")
    ));

    // Network.
    let mut connect: BTreeMap<(IpAddr, Protocol), BTreeSet<u16>> = BTreeMap::new();
    let mut bind: BTreeMap<Protocol, BTreeSet<u16>> = BTreeMap::new();
    let mut families: BTreeSet<String> = BTreeSet::new();
    // Families seen at socket()/socketpair() by the syscall hook (unix, netlink, ...).
    for (n, seen) in l.info.families.iter().enumerate() {
        if *seen != 0 {
            let name = family_name(n as u32);
            if family_number(&name).is_some() {
                families.insert(name);
            }
        }
    }
    let mut raw = false;
    let mut protocols: BTreeSet<String> = BTreeSet::new();
    let mut mapped = 0;
    // Ports the kernel chose for the workload's own listeners (learn_kind::KERNEL_CHOSEN_LISTENER).
    let own: BTreeSet<(Protocol, u16)> = l
        .items
        .iter()
        .filter(|k| k.kind == learn_kind::KERNEL_CHOSEN_LISTENER)
        .map(|k| (proto_of(k.proto), k.port))
        .collect();
    // Loopback destinations connected to on such ports: (address, protocol) -> ports seen.
    let mut own_loopback: BTreeMap<(IpAddr, Protocol), BTreeSet<u16>> = BTreeMap::new();
    for k in &l.items {
        match k.kind {
            kind::CONNECT | kind::SENDMSG => match item_addr(k) {
                Some(a) => {
                    if k.family == AF_INET6 && a.is_ipv4() {
                        mapped += 1;
                    }
                    let p = proto_of(k.proto);
                    if k.kind == kind::CONNECT && follows_kernel_choice(a, p, k.port, &own) {
                        own_loopback.entry((a, p)).or_default().insert(k.port);
                        continue;
                    }
                    connect.entry((a, p)).or_default().insert(k.port);
                }
                None => notes.push(format!("left out (not inet): {}", item_text(k))),
            },
            kind::BIND => {
                bind.entry(proto_of(k.proto)).or_default().insert(k.port);
            }
            kind::SOCKET => {
                let name = family_name(k.family as u32);
                if family_number(&name).is_some() {
                    families.insert(name);
                } else {
                    notes.push(format!("socket family {} has no profile name: left out (it stays blocked)", k.family));
                }
                let inet = k.family == AF_INET || k.family == AF_INET6;
                if k.port == SOCK_RAW && inet {
                    raw = true;
                } else if inet && k.port != 0 && k.proto != 6 && k.proto != 17 {
                    // Seen at socket creation with its resolved protocol (learn records the
                    // protocol truncated to 8 bits: MPTCP, 262, reads as TCP and is not learned;
                    // refused under the generated profile, Go's listeners fall back to TCP).
                    match protocol_name(k.proto as u32) {
                        Some(name) => {
                            protocols.insert(name.to_string());
                        }
                        None => notes.push(format!(
                            "inet protocol {} has no profile name: left out (it stays blocked)",
                            k.proto
                        )),
                    }
                }
            }
            _ => {}
        }
    }
    if mapped > 0 {
        notes.push(format!(
            "{mapped} IPv4-mapped IPv6 destination(s) written as IPv4 (enforce judges them by the IPv4 rules)"
        ));
    }
    notes.push("addresses kept exact (/32, /128), loopback included; source ports are never recorded".into());
    for ((a, p), seen) in &own_loopback {
        notes.push(format!(
            "connect {a} {}: port(s) {} were the kernel's choice for the workload's own listener (it bound port 0) and differ every run: generalised to that loopback address and the ephemeral range {}-{}",
            protocol_label(*p),
            seen.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
            EPHEMERAL.lo,
            EPHEMERAL.hi
        ));
        connect.entry((*a, *p)).or_default();
    }

    // Connect rules, at most MAX_PORT_RULES ranges per address.
    let mut per_addr: BTreeMap<IpAddr, Vec<(Protocol, Vec<PortRange>)>> = BTreeMap::new();
    for ((a, p), set) in &connect {
        let mut r = ports(set);
        if own_loopback.contains_key(&(*a, *p)) {
            r.push(EPHEMERAL);
            r = join_ranges(r);
        }
        per_addr.entry(*a).or_default().push((*p, r));
    }
    let mut connect_rules = Vec::new();
    for (a, list) in per_addr {
        let total: usize = list.iter().map(|(_, r)| r.len()).sum();
        for (p, mut r) in list {
            if total > MAX_PORT_RULES {
                let span =
                    PortRange { lo: r.first().map(|x| x.lo).unwrap_or(0), hi: r.last().map(|x| x.hi).unwrap_or(0) };
                notes.push(format!("{a}: {total} port ranges, more than the kernel table's {MAX_PORT_RULES}: {p:?} ports joined into {}-{}", span.lo, span.hi));
                r = vec![span];
            }
            connect_rules.push(ConnectRule { cidr: IpNet::from(a), ports: Some(r), protocol: p });
        }
    }

    // Bind rules, with the ephemeral collapse.
    let mut bind_rules = Vec::new();
    for (p, set) in &bind {
        let eph: Vec<u16> = set.iter().copied().filter(|x| *x >= EPHEMERAL.lo && *x <= EPHEMERAL.hi).collect();
        let mut r: Vec<PortRange> = if eph.len() >= EPHEMERAL_COLLAPSE_MIN {
            notes.push(format!(
                "bind {p:?}: {} distinct ports in the ephemeral range {}-{} collapsed into that range",
                eph.len(),
                EPHEMERAL.lo,
                EPHEMERAL.hi
            ));
            let mut v: Vec<PortRange> =
                set.iter().filter(|x| !eph.contains(x)).map(|x| PortRange { lo: *x, hi: *x }).collect();
            v.push(EPHEMERAL);
            join_ranges(v)
        } else {
            ports(set)
        };
        if r.len() > MAX_PORT_RULES / 2 {
            let span = PortRange { lo: r[0].lo, hi: r[r.len() - 1].hi };
            notes.push(format!("bind {p:?}: {} port ranges joined into {}-{}", r.len(), span.lo, span.hi));
            r = vec![span];
        }
        bind_rules.push(BindRule { ports: r, protocol: *p });
    }
    notes.push(format!(
        "bind: ports exact (0 = kernel-chosen); ports {}-{} collapsed into that range only from {EPHEMERAL_COLLAPSE_MIN} distinct ones",
        EPHEMERAL.lo, EPHEMERAL.hi
    ));
    let files = match &l.files {
        Some(f) => Some(file_rules(f, opts.collapse_dir_files, &mut notes)),
        None => {
            notes.push("files and execs: not recorded (BPF-LSM is not usable on this kernel): section left out, not restricted".into());
            None
        }
    };
    if l.info.file_truncated > 0 {
        notes.insert(
            0,
            format!(
                "INCOMPLETE: {} file or exec use(s) of a new path were not recorded (bound of {LEARN_FILES_PER_CGROUP} paths per container reached, or the kernel map full): the workload did more than this profile allows",
                l.info.file_truncated
            ),
        );
    }

    if l.info.truncated > 0 {
        notes.insert(
            0,
            format!(
                "INCOMPLETE: {} attempt(s) with a new item were not recorded (bound of {LEARN_ITEMS_PER_CGROUP} items per container reached, or the kernel map full): the workload did more than this profile allows",
                l.info.truncated
            ),
        );
    }
    if l.mode == Some(crate::enforcer::Mode::Complain) {
        notes.insert(
            0,
            format!(
                "learned in complain mode: only what profile `{}` would deny was recorded; extend that profile",
                l.profile
            ),
        );
    }

    let mut description = vec![format!("Learned by warden from {}.", opts.source)];
    description.extend(notes.iter().cloned());
    let profile = Profile {
        name: opts.name.clone(),
        description: Some(description.join("\n")),
        extends: opts.extends.clone(),
        syscalls: Some(SyscallsSpec::Allow(Syscalls {
            default: DefaultAction::Kill,
            allow: names.into_iter().collect(),
        })),
        files,
        network: Some(Network {
            connect: Some(connect_rules),
            bind: Some(bind_rules),
            families: Some(families.into_iter().collect()),
            raw_sockets: raw,
            protocols: protocols.into_iter().collect(),
        }),
    };
    Generated { profile: canonical(profile), notes, truncated: l.info.truncated + l.info.file_truncated }
}

/// The file (and profile) name the daemon writes for a container: `<namespace>_<pod>_<container>`,
/// lowercased, other characters than `[a-z0-9._-]` as `-`, at most 63 characters.
pub fn container_profile_name(namespace: &str, pod: &str, container: &str) -> String {
    let raw = format!("{namespace}_{pod}_{container}").to_lowercase();
    let mut s: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    while s.starts_with(['.', '_', '-']) {
        s.remove(0);
    }
    s.truncate(63);
    s = s.replace("..", "._");
    if s.is_empty() {
        s = "learned".into();
    }
    s
}
