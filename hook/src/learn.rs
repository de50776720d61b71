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
//! - files and execs: not learned yet (BPF-LSM); the section is left out, i.e. not restricted.
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Result};
use ipnet::IpNet;
use warden_common::{kind, LearnInfo, LearnKey, LEARN_ITEMS_PER_CGROUP, MAX_PORT_RULES};

use crate::enforcer::{kind_name, Maps};
use crate::profile::{
    family_name, family_number, BindRule, ConnectRule, DefaultAction, FileRuleSpec, Network, PortRange, Profile, Protocol,
    Syscalls, SyscallsSpec,
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
    "exit", "exit_group", "restart_syscall", "rt_sigreturn",
    // Go runtime housekeeping (runc init)
    "clock_gettime", "clock_nanosleep", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "futex", "getpid", "gettid", "madvise", "mmap", "munmap", "nanosleep", "rt_sigaction", "rt_sigprocmask",
    "sched_yield", "sigaltstack", "tgkill",
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
    // Hook for the BPF-LSM branch: `pub files: Vec<(String, Access)>` and `pub execs`, read
    // from their own deduplicating map and turned into the `files` section in `generate`.
}

impl Learned {
    pub fn read(maps: &Maps, cgid: u64) -> Result<Learned> {
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
    let added: Vec<&str> = ALWAYS_SYSCALLS.iter().copied().filter(|s| s.parse::<syscalls::Sysno>().is_ok() && !names.contains(*s)).collect();
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
        notes.push(format!("{mapped} IPv4-mapped IPv6 destination(s) written as IPv4 (enforce judges them by the IPv4 rules)"));
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
                let span = PortRange { lo: r.first().map(|x| x.lo).unwrap_or(0), hi: r.last().map(|x| x.hi).unwrap_or(0) };
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
            let mut v: Vec<PortRange> = set.iter().filter(|x| !eph.contains(x)).map(|x| PortRange { lo: *x, hi: *x }).collect();
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
    notes.push("files and execs: not learned yet (section left out: not restricted)".into());

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
            format!("learned in complain mode: only what profile `{}` would deny was recorded; extend that profile", l.profile),
        );
    }

    let mut description = vec![format!("Learned by warden from {}.", opts.source)];
    description.extend(notes.iter().cloned());
    let profile = Profile {
        name: opts.name.clone(),
        description: Some(description.join("\n")),
        extends: opts.extends.clone(),
        syscalls: Some(SyscallsSpec::Allow(Syscalls { default: DefaultAction::Kill, allow: names.into_iter().collect() })),
        files: None,
        network: Some(Network {
            connect: Some(connect_rules),
            bind: Some(bind_rules),
            families: Some(families.into_iter().collect()),
            raw_sockets: raw,
        }),
    };
    Generated { profile: canonical(profile), notes, truncated: l.info.truncated }
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
    m.into_iter().map(|((cidr, protocol), ports)| ConnectRule { cidr, protocol, ports: ports.map(join_ranges) }).collect()
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
        let mut f: Vec<(String, String)> = f.into_iter().map(|r| (r.path, r.access)).collect();
        f = sorted_dedup(f);
        p.files = Some(f.into_iter().map(|(path, access)| FileRuleSpec { path, access }).collect());
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
                bail!("the profiles have different names ({}): give the result's with --name", names.into_iter().collect::<Vec<_>>().join(", "));
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
    let mut s: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
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
        GenerateOptions { name: "t".into(), extends: vec![], source: "test".into() }
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
        assert!(crate::profile::check(&g.profile).iter().all(|d| !d.is_error()), "{:?}", crate::profile::check(&g.profile));
        crate::profile::compile(&g.profile).unwrap();
        let n = g.profile.network.as_ref().unwrap();
        let c = n.connect.as_ref().unwrap();
        assert!(c.iter().any(|r| r.cidr.to_string() == "127.0.0.1/32" && r.ports == Some(vec![PortRange { lo: 80, hi: 81 }])));
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
        let a = generate(&learned(vec![key(kind::CONNECT, AF_INET, 6, 80, &[127, 0, 0, 1])], &["read"]), &opts()).profile;
        let b = generate(
            &learned(vec![key(kind::CONNECT, AF_INET, 6, 81, &[127, 0, 0, 1]), key(kind::BIND, AF_INET, 6, 9000, &[0; 4])], &["write"]),
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
        let open = Profile { name: "t".into(), description: None, extends: vec![], syscalls: None, files: None, network: None };
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
