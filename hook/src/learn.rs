//! Learn mode in userspace: read what the kernel recorded for a confined cgroup (syscall bytes
//! in `WARDEN_LEARN_SC`, deduplicated network items in `WARDEN_LEARN_NET`, the bound counters
//! in `WARDEN_LEARN_INFO`), turn it into a profile, and union profiles.
//!
//! Generation rules (each one is stated in the generated profile's `description` when it
//! applied, and printed as the report):
//! - syscalls: exactly the learned ones, `default: kill`, plus [`ALWAYS_SYSCALLS`] (process
//!   end, signal return, and the housekeeping calls the container runtime's Go init makes only
//!   depending on timing before the entrypoint's exec).
//! - connect/sendmsg: one rule per destination address and protocol, the address exact (`/32`,
//!   `/128`; loopback included), its ports listed (adjacent ports joined into ranges). IPv4-mapped
//!   IPv6 destinations are written as IPv4 (enforce judges them by the IPv4 rules). No source
//!   port is ever involved. An address with more port ranges than the kernel table holds gets
//!   one range from its lowest to its highest port.
//! - bind: the ports bound, per protocol (0 = a kernel-chosen port, kept as 0). Ports in Linux's
//!   default ephemeral range 32768-60999 are collapsed into that whole range only when the run
//!   bound at least [`EPHEMERAL_COLLAPSE_MIN`] distinct ports there (plainly random ports);
//!   otherwise they stay exact.
//! - socket families: the ones created; raw inet sockets allowed only if one was created.
//! - files and execs (recorded by the BPF-LSM programs in `WARDEN_LEARN_FILES`, deduplicated
//!   and bounded in the kernel): one rule per path with the uses seen (`r`, `w`, `x`), as the
//!   kernel resolved it (symlinks followed). Generalised: `/proc/<pid>/...` (the kernel writes
//!   `/proc/self` as the pid) becomes `/proc/`; a directory with more than
//!   [`GenerateOptions::collapse_dir_files`] entries used becomes a `dir/` prefix rule with
//!   their uses; a listed directory (opendir) needs its `dir/` prefix (the only rule that covers
//!   it), which covers what is below it too; a path the record had to cut becomes a rule for its
//!   longest directory; ` (deleted)` suffixes are dropped; paths a rule cannot name (not
//!   absolute) are left out. Where BPF-LSM is unavailable nothing is recorded and the section
//!   is left out (not restricted), and the report says so.
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Result};
use ipnet::IpNet;
use warden_common::{
    kind, LearnFileUse, LearnInfo, LearnKey, LEARN_FILES_PER_CGROUP, LEARN_ITEMS_PER_CGROUP, MAX_PORT_RULES,
};

use crate::enforcer::{kind_name, Maps};
use crate::profile::{
    family_name, family_number, BindRule, ConnectRule, DefaultAction, FileRuleSpec, Network, PortRange, Profile,
    Protocol, Syscalls, SyscallsSpec,
};

/// Distinct bind ports in 32768-60999 (per protocol) from which they count as ephemeral.
pub const EPHEMERAL_COLLAPSE_MIN: usize = 4;
pub const EPHEMERAL: PortRange = PortRange { lo: 32768, hi: 60999 };
/// Always added to a learned syscall list (those the host knows): a process must be able to
/// end and return from a signal handler even if it did not while learning; and the container
/// runtime's init (runc, a Go program) runs in the container's cgroup between StartContainer
/// and the entrypoint's exec, where its Go runtime makes some of these housekeeping calls only
/// depending on timing (seen: `epoll_pwait` in one start and not another). None of them gives
/// a process anything new; without them a learned profile could break the container's start.
pub const ALWAYS_SYSCALLS: &[&str] = &[
    "exit",
    "exit_group",
    "restart_syscall",
    "rt_sigreturn",
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

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
const SOCK_RAW: u16 = libc::SOCK_RAW as u16;

/// What the kernel recorded for one confined cgroup.
#[derive(Debug, Clone, Default)]
pub struct Learned {
    pub cgroup_id: u64,
    /// Mode of the cgroup when read (`learn`, or `complain`: then these are would-deny items).
    pub mode: Option<crate::enforcer::Mode>,
    /// Profile name the cgroup is confined to.
    pub profile: String,
    /// Host syscall numbers seen.
    pub syscalls: Vec<usize>,
    pub items: Vec<LearnKey>,
    pub info: LearnInfo,
    /// Paths used, with their uses; None when the BPF-LSM file programs were not attached
    /// (this kernel cannot run them): files and execs were not recorded at all.
    pub files: Option<Vec<(String, LearnFileUse)>>,
}

impl Learned {
    /// `pin_dir`: where the enforcer pins its links (the file_open link tells whether files
    /// were being recorded).
    pub fn read(maps: &Maps, pin_dir: &std::path::Path, cgid: u64) -> Result<Learned> {
        let pol = maps.roots().into_iter().find(|(id, _)| *id == cgid).map(|(_, p)| p);
        let Some(pol) = pol else {
            bail!("cgroup id {cgid} is not confined by this warden (learn records live as long as the confinement)");
        };
        let syscalls = match maps.learn.get(&cgid, 0) {
            Ok(set) => set.seen.iter().enumerate().filter(|(_, b)| **b != 0).map(|(n, _)| n).collect(),
            Err(_) => Vec::new(),
        };
        Ok(Learned {
            cgroup_id: cgid,
            mode: crate::enforcer::Mode::from_raw(pol.mode),
            profile: maps.meta_of(pol.profile_id).map(|m| crate::enforcer::maps::name_of(&m)).unwrap_or_default(),
            syscalls,
            items: maps.learned_items(cgid),
            info: maps.learn_info_of(cgid),
            files: if pin_dir.join("links").join("lsm_file_open").exists() {
                Some(maps.learned_files(cgid))
            } else {
                None
            },
        })
    }

    pub fn syscall_names(&self) -> Vec<String> {
        self.syscalls.iter().filter_map(|n| syscalls::Sysno::new(*n).map(|s| s.name().to_string())).collect()
    }
}

fn proto_of(p: u8) -> Protocol {
    match p {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => Protocol::Any,
    }
}

/// The destination of a connect/sendmsg/bind item; IPv4-mapped IPv6 as IPv4.
pub fn item_addr(k: &LearnKey) -> Option<IpAddr> {
    match k.family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3]))),
        AF_INET6 => {
            let a = Ipv6Addr::from(k.addr);
            Some(match a.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(a),
            })
        }
        _ => None,
    }
}

/// One line per item, for reports.
pub fn item_text(k: &LearnKey) -> String {
    match k.kind {
        kind::CONNECT | kind::SENDMSG | kind::BIND => {
            let proto = match proto_of(k.proto) {
                Protocol::Tcp => "tcp".to_string(),
                Protocol::Udp => "udp".to_string(),
                Protocol::Any => format!("proto{}", k.proto),
            };
            let addr = item_addr(k).map(|a| a.to_string()).unwrap_or_else(|| format!("af{}", k.family));
            format!("{} {proto} {addr} port {}", kind_name(k.kind), k.port)
        }
        kind::SOCKET => {
            let mut s = format!("socket family {}", family_name(k.family as u32));
            if k.port != 0 {
                s += &format!(" type {}", if k.port == SOCK_RAW { "raw".to_string() } else { k.port.to_string() });
            }
            s
        }
        _ => format!("{} item", kind_name(k.kind)),
    }
}

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

/// Access letters of a use, in the profile format's order.
pub fn use_letters(read: bool, write: bool, exec: bool) -> String {
    let mut s = String::new();
    if read {
        s.push('r');
    }
    if write {
        s.push('w');
    }
    if exec {
        s.push('x');
    }
    s
}

const R: u8 = 1;
const W: u8 = 2;
const X: u8 = 4;

fn bits_letters(b: u8) -> String {
    use_letters(b & R != 0, b & W != 0, b & X != 0)
}

fn letters_bits(s: &str) -> u8 {
    s.chars().fold(0, |b, c| {
        b | match c {
            'r' => R,
            'w' => W,
            'x' => X,
            _ => 0,
        }
    })
}

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

pub struct Generated {
    pub profile: Profile,
    /// What was generalised or left out, one line each (also in the description).
    pub notes: Vec<String>,
    /// Items the kernel could not record (bound reached): the profile is incomplete.
    pub truncated: u64,
}

/// Sorted, joined port ranges.
pub fn join_ranges(mut v: Vec<PortRange>) -> Vec<PortRange> {
    v.sort();
    let mut out: Vec<PortRange> = Vec::new();
    for r in v {
        match out.last_mut() {
            Some(l) if (r.lo as u32) <= l.hi as u32 + 1 => l.hi = l.hi.max(r.hi),
            _ => out.push(r),
        }
    }
    out
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
        "syscalls: the {} learned, plus always (process end, signal return, the container runtime's Go housekeeping): {}",
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
    let mut mapped = 0;
    for k in &l.items {
        match k.kind {
            kind::CONNECT | kind::SENDMSG => match item_addr(k) {
                Some(a) => {
                    if k.family == AF_INET6 && a.is_ipv4() {
                        mapped += 1;
                    }
                    connect.entry((a, proto_of(k.proto))).or_default().insert(k.port);
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
                if k.port == SOCK_RAW && (k.family == AF_INET || k.family == AF_INET6) {
                    raw = true;
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

    // Connect rules, at most MAX_PORT_RULES ranges per address.
    let mut per_addr: BTreeMap<IpAddr, Vec<(Protocol, Vec<PortRange>)>> = BTreeMap::new();
    for ((a, p), set) in &connect {
        per_addr.entry(*a).or_default().push((*p, ports(set)));
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
        }),
    };
    Generated { profile: canonical(profile), notes, truncated: l.info.truncated + l.info.file_truncated }
}

// ---- union -----------------------------------------------------------------------------------

fn canon_connect(rules: Vec<ConnectRule>) -> Vec<ConnectRule> {
    // Ports None (every port) absorbs the listed ones of the same address and protocol.
    let mut m: BTreeMap<(IpNet, Protocol), Option<Vec<PortRange>>> = BTreeMap::new();
    for r in rules {
        let e = m.entry((r.cidr.trunc(), r.protocol)).or_insert(Some(Vec::new()));
        match (e.as_mut(), r.ports) {
            (Some(v), Some(p)) => v.extend(p),
            _ => *e = None,
        }
    }
    m.into_iter()
        .map(|((cidr, protocol), ports)| ConnectRule { cidr, protocol, ports: ports.map(join_ranges) })
        .collect()
}

fn canon_bind(rules: Vec<BindRule>) -> Vec<BindRule> {
    let mut m: BTreeMap<Protocol, Vec<PortRange>> = BTreeMap::new();
    for r in rules {
        m.entry(r.protocol).or_default().extend(r.ports);
    }
    m.into_iter().map(|(protocol, ports)| BindRule { ports: join_ranges(ports), protocol }).collect()
}

fn sorted_dedup<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

/// The canonical form of a profile: every list sorted and deduplicated, ports joined into
/// ranges, the description's lines a sorted set. Two profiles allowing the same by the same
/// rules have one canonical form, which is what makes [`union`] idempotent and
/// order-independent.
pub fn canonical(mut p: Profile) -> Profile {
    p.extends = sorted_dedup(std::mem::take(&mut p.extends));
    if let Some(d) = &p.description {
        let lines: BTreeSet<&str> = d.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        p.description = Some(lines.into_iter().collect::<Vec<_>>().join("\n"));
    }
    if let Some(spec) = p.syscalls.take() {
        let (s, _) = spec.to_allow();
        p.syscalls = Some(SyscallsSpec::Allow(Syscalls { default: s.default, allow: sorted_dedup(s.allow) }));
    }
    if let Some(f) = p.files.take() {
        // One rule per path, with every access any rule for it gave.
        let mut m: BTreeMap<String, u8> = BTreeMap::new();
        for r in f {
            *m.entry(r.path).or_default() |= letters_bits(&r.access);
        }
        p.files = Some(m.into_iter().map(|(path, b)| FileRuleSpec { path, access: bits_letters(b) }).collect());
    }
    if let Some(n) = p.network.take() {
        p.network = Some(Network {
            connect: n.connect.map(canon_connect),
            bind: n.bind.map(canon_bind),
            families: n.families.map(sorted_dedup),
            raw_sockets: n.raw_sockets,
        });
    }
    p
}

/// Union of optional lists where absent means "not restricted": absent if any is absent.
fn union_opt<T: Clone>(all: &[&Option<Vec<T>>]) -> Option<Vec<T>> {
    let mut out = Vec::new();
    for o in all {
        out.extend(o.as_ref()?.iter().cloned());
    }
    Some(out)
}

/// What any of `profiles` allows (as written; `extends` are unioned as names). A section or
/// list absent from one profile (not restricted there) is absent from the union.
/// `syscalls.default` is `log` if any says `log`. The name is `name`, or the profiles' common
/// name. Idempotent and order-independent (the result is [`canonical`]).
pub fn union(profiles: &[Profile], name: Option<&str>) -> Result<Profile> {
    if profiles.is_empty() {
        bail!("nothing to merge");
    }
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            let names: BTreeSet<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
            if names.len() > 1 {
                bail!(
                    "the profiles have different names ({}): give the result's with --name",
                    names.into_iter().collect::<Vec<_>>().join(", ")
                );
            }
            profiles[0].name.clone()
        }
    };
    let descriptions: Vec<&str> = profiles.iter().filter_map(|p| p.description.as_deref()).collect();
    let syscalls = if profiles.iter().all(|p| p.syscalls.is_some()) {
        let mut default = DefaultAction::Kill;
        let mut allow = Vec::new();
        for p in profiles {
            let (s, _) = p.syscalls.as_ref().expect("checked").to_allow();
            if s.default == DefaultAction::Log {
                default = DefaultAction::Log;
            }
            allow.extend(s.allow);
        }
        Some(SyscallsSpec::Allow(Syscalls { default, allow }))
    } else {
        None
    };
    let files = union_opt(&profiles.iter().map(|p| &p.files).collect::<Vec<_>>());
    let network = if profiles.iter().all(|p| p.network.is_some()) {
        let nets: Vec<&Network> = profiles.iter().map(|p| p.network.as_ref().expect("checked")).collect();
        Some(Network {
            connect: union_opt(&nets.iter().map(|n| &n.connect).collect::<Vec<_>>()),
            bind: union_opt(&nets.iter().map(|n| &n.bind).collect::<Vec<_>>()),
            families: union_opt(&nets.iter().map(|n| &n.families).collect::<Vec<_>>()),
            raw_sockets: nets.iter().any(|n| n.raw_sockets),
        })
    } else {
        None
    };
    Ok(canonical(Profile {
        name,
        description: if descriptions.is_empty() { None } else { Some(descriptions.join("\n")) },
        extends: profiles.iter().flat_map(|p| p.extends.iter().cloned()).collect(),
        syscalls,
        files,
        network,
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: u8, fam: u16, proto: u8, port: u16, addr: &[u8]) -> LearnKey {
        let mut a = [0u8; 16];
        a[..addr.len()].copy_from_slice(addr);
        LearnKey { root_cgroup: 7, kind: k, proto, family: fam, port, _pad: [0; 2], addr: a }
    }

    fn learned(items: Vec<LearnKey>, sc: &[&str]) -> Learned {
        Learned {
            cgroup_id: 7,
            syscalls: sc.iter().map(|s| s.parse::<syscalls::Sysno>().unwrap().id() as usize).collect(),
            items,
            ..Default::default()
        }
    }

    fn opts() -> GenerateOptions {
        GenerateOptions {
            name: "t".into(),
            extends: vec![],
            source: "test".into(),
            collapse_dir_files: COLLAPSE_DIR_FILES,
        }
    }

    #[test]
    fn generated_profile_is_valid_and_generalised_as_stated() {
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[127, 0, 0, 2]);
        let mut items = vec![
            key(kind::CONNECT, AF_INET, 6, 80, &[127, 0, 0, 1]),
            key(kind::CONNECT, AF_INET, 6, 81, &[127, 0, 0, 1]),
            key(kind::SENDMSG, AF_INET, 17, 53, &[10, 0, 0, 1]),
            key(kind::CONNECT, AF_INET6, 6, 443, &mapped),
            key(kind::BIND, AF_INET, 6, 8080, &[0, 0, 0, 0]),
            key(kind::BIND, AF_INET, 17, 40000, &[0, 0, 0, 0]),
            key(kind::SOCKET, AF_INET, 6, 1, &[]),
            key(kind::SOCKET, 1, 0, 0, &[]),
        ];
        for p in [33000u16, 34000, 35000, 36000] {
            items.push(key(kind::BIND, AF_INET, 6, p, &[0, 0, 0, 0]));
        }
        let g = generate(&learned(items, &["read", "write"]), &opts());
        assert!(
            crate::profile::check(&g.profile).iter().all(|d| !d.is_error()),
            "{:?}",
            crate::profile::check(&g.profile)
        );
        crate::profile::compile(&g.profile).unwrap();
        let n = g.profile.network.as_ref().unwrap();
        let c = n.connect.as_ref().unwrap();
        assert!(c
            .iter()
            .any(|r| r.cidr.to_string() == "127.0.0.1/32" && r.ports == Some(vec![PortRange { lo: 80, hi: 81 }])));
        assert!(c.iter().any(|r| r.cidr.to_string() == "127.0.0.2/32"), "mapped written as v4: {c:?}");
        assert!(c.iter().any(|r| r.cidr.to_string() == "10.0.0.1/32" && r.protocol == Protocol::Udp));
        let b = n.bind.as_ref().unwrap();
        let tcp = b.iter().find(|r| r.protocol == Protocol::Tcp).unwrap();
        assert_eq!(tcp.ports, vec![PortRange { lo: 8080, hi: 8080 }, EPHEMERAL]);
        let udp = b.iter().find(|r| r.protocol == Protocol::Udp).unwrap();
        assert_eq!(udp.ports, vec![PortRange { lo: 40000, hi: 40000 }], "one high port is not collapsed");
        assert_eq!(n.families.as_ref().unwrap(), &vec!["inet".to_string(), "unix".to_string()]);
        let Some(SyscallsSpec::Allow(s)) = &g.profile.syscalls else { panic!() };
        assert!(s.allow.contains(&"exit_group".to_string()) && s.allow.contains(&"read".to_string()));
        assert!(g.profile.description.as_ref().unwrap().contains("collapsed"));
    }

    fn used(path: &str, how: &str) -> (String, LearnFileUse) {
        let u = LearnFileUse {
            read: how.contains('r') as u8,
            write: how.contains('w') as u8,
            exec: how.contains('x') as u8,
            cut: how.contains('c') as u8,
            _pad: [0; 4],
        };
        (path.to_string(), u)
    }

    fn rules(p: &Profile) -> Vec<(String, String)> {
        p.files.as_ref().unwrap().iter().map(|r| (r.path.clone(), r.access.clone())).collect()
    }

    #[test]
    fn files_are_generated_and_generalised_as_stated() {
        let mut files = vec![
            used("/usr/bin/httpd", "x"),
            used("/etc/hosts", "r"),
            used("/proc/4242/status", "r"),
            used("/proc/4242/fd/", "r"),
            used("/var/log/app.log", "rw"),
            used("/tmp/gone (deleted)", "w"),
            used("anon_inode:[eventfd]", "r"),
            used(&format!("/deep/{}", "d".repeat(240)), "rc"),
        ];
        for i in 0..20 {
            files.push(used(&format!("/srv/www/page{i}.html"), "r"));
        }
        let mut l = learned(vec![], &["read"]);
        l.files = Some(files);
        let g = generate(&l, &opts());
        let errors: Vec<_> = crate::profile::check(&g.profile).into_iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        crate::profile::compile(&g.profile).unwrap();
        let r = rules(&g.profile);
        let has = |p: &str, a: &str| r.iter().any(|(rp, ra)| rp == p && ra == a);
        assert!(has("/usr/bin/httpd", "x"), "{r:?}");
        assert!(has("/etc/hosts", "r"), "{r:?}");
        assert!(has("/proc/", "r"), "per-pid paths generalised: {r:?}");
        assert!(!r.iter().any(|(p, _)| p.starts_with("/proc/4242")), "{r:?}");
        assert!(has("/var/log/app.log", "rw"), "{r:?}");
        assert!(has("/tmp/gone", "w"), "{r:?}");
        assert!(has("/srv/www/", "r"), "more than {COLLAPSE_DIR_FILES} entries collapsed: {r:?}");
        assert!(has("/deep/", "r"), "a cut path becomes its directory: {r:?}");
        assert!(!r.iter().any(|(p, _)| p.starts_with("anon_inode")), "{r:?}");
        let d = g.profile.description.unwrap();
        for said in ["/proc/<pid>/", "collapsed into `/srv/www/`", "longest directory", "anon_inode", "deleted"] {
            assert!(d.contains(said), "the description says what was generalised ({said}): {d}");
        }
        // exact below the threshold
        let mut l2 = learned(vec![], &["read"]);
        l2.files = Some((0..3).map(|i| used(&format!("/srv/www/page{i}.html"), "r")).collect());
        let r2 = rules(&generate(&l2, &opts()).profile);
        assert_eq!(r2.len(), 3, "{r2:?}");
    }

    #[test]
    fn files_not_recorded_leave_the_section_out() {
        let g = generate(&learned(vec![], &["read"]), &opts());
        assert!(g.profile.files.is_none());
        assert!(g.profile.description.unwrap().contains("BPF-LSM is not usable"));
    }

    #[test]
    fn union_merges_the_access_of_one_path() {
        let mut a = learned(vec![], &["read"]);
        a.files = Some(vec![used("/data/x", "r")]);
        let mut b = learned(vec![], &["read"]);
        b.files = Some(vec![used("/data/x", "w"), used("/bin/sh", "x")]);
        let (a, b) = (generate(&a, &opts()).profile, generate(&b, &opts()).profile);
        let ab = union(&[a.clone(), b.clone()], None).unwrap();
        assert_eq!(
            rules(&ab),
            vec![("/bin/sh".to_string(), "x".to_string()), ("/data/x".to_string(), "rw".to_string())]
        );
        assert_eq!(ab, union(&[b, a, ab.clone()], None).unwrap(), "idempotent, order-independent");
    }

    #[test]
    fn file_truncation_is_marked() {
        let mut l = learned(vec![], &["read"]);
        l.files = Some(vec![]);
        l.info = LearnInfo { file_items: LEARN_FILES_PER_CGROUP, file_truncated: 3, ..Default::default() };
        let g = generate(&l, &opts());
        assert_eq!(g.truncated, 3);
        assert!(g.profile.description.unwrap().contains("INCOMPLETE: 3 file"));
    }

    #[test]
    fn truncation_is_marked() {
        let mut l = learned(vec![], &["read"]);
        l.info = LearnInfo { items: LEARN_ITEMS_PER_CGROUP, truncated: 5, ..Default::default() };
        let g = generate(&l, &opts());
        assert_eq!(g.truncated, 5);
        assert!(g.profile.description.unwrap().contains("INCOMPLETE: 5"));
    }

    #[test]
    fn union_is_idempotent_and_order_independent() {
        let a =
            generate(&learned(vec![key(kind::CONNECT, AF_INET, 6, 80, &[127, 0, 0, 1])], &["read"]), &opts()).profile;
        let b = generate(
            &learned(
                vec![key(kind::CONNECT, AF_INET, 6, 81, &[127, 0, 0, 1]), key(kind::BIND, AF_INET, 6, 9000, &[0; 4])],
                &["write"],
            ),
            &opts(),
        )
        .profile;
        let ab = union(&[a.clone(), b.clone()], None).unwrap();
        assert_eq!(ab, union(&[b.clone(), a.clone()], None).unwrap());
        assert_eq!(ab, union(&[ab.clone(), a.clone()], None).unwrap());
        assert_eq!(ab, union(&[ab.clone(), ab.clone()], None).unwrap());
        assert_eq!(ab, union(std::slice::from_ref(&ab), None).unwrap());
        let Some(SyscallsSpec::Allow(s)) = &ab.syscalls else { panic!() };
        assert!(s.allow.contains(&"read".into()) && s.allow.contains(&"write".into()));
        let c = ab.network.as_ref().unwrap().connect.as_ref().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].ports, Some(vec![PortRange { lo: 80, hi: 81 }]));
        // A section absent (not restricted) in one stays absent in the union.
        let open = Profile {
            name: "t".into(),
            description: None,
            extends: vec![],
            syscalls: None,
            files: None,
            network: None,
        };
        assert!(union(&[ab.clone(), open], None).unwrap().syscalls.is_none());
        assert!(union(&[a, Profile { name: "other".into(), ..b }], None).is_err(), "names differ");
    }

    #[test]
    fn container_names() {
        assert_eq!(container_profile_name("default", "web-1", "app"), "default_web-1_app");
        assert_eq!(container_profile_name("NS", "a/b", "c"), "ns_a-b_c");
        assert!(container_profile_name("x", &"p".repeat(100), "c").len() <= 63);
    }
}
