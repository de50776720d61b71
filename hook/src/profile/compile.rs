//! Compilation of a profile into exactly what the kernel maps hold, with the limits checked,
//! and a content hash that identifies the profile version. Validation and warnings are the same
//! pass ([`check`]), so what `warden profile validate` accepts is what compiles.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{bail, Result};
use ipnet::IpNet;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
/// Port ranges one kernel port table holds (per connect CIDR, and for bind), after joining.
pub use warden_common::MAX_PORT_RULES;
use warden_common::{profile_flags, proto, protocol_bit, PortRule, PortRules, ProfileHeader, SYSCALL_BITMAP_BITS};

use super::files::{self, MAX_FILE_RULES};
use super::sysnames::{self, Lookup};
use super::{
    family_name, family_number, protocol_number, DefaultAction, Diagnostic, Invalid, PortRange, Profile, Protocol,
    SyscallsSpec, FAMILIES, PROTOCOLS,
};

/// Most `network.connect` rules one profile (after `extends`) may have. Each distinct CIDR
/// becomes one entry of the kernel's `WARDEN_CONNECT4` or `WARDEN_CONNECT6` LPM trie, which
/// hold 65,536 entries each for every loaded profile version together
/// (enforcer-ebpf/src/maps.rs). 1,024 per profile, the same share as files rules
/// ([`MAX_FILE_RULES`] against the 65,536-entry `WARDEN_FILES`), lets 64 versions at the limit
/// be loaded at once (a hot update holds the old and the new version for a moment); learn mode
/// records at most `LEARN_ITEMS_PER_CGROUP` = 1,024 network items per container, so a generated
/// profile stays within it.
pub const MAX_CONNECT_RULES: usize = 1024;
/// Most `network.bind` rules: they all end in one table of [`MAX_PORT_RULES`] ranges.
pub const MAX_BIND_RULES: usize = 1024;
/// Most `ports` entries over all `network.connect` rules (and, separately, over all
/// `network.bind` rules): every connect rule at the limit may list a full kernel table
/// ([`MAX_CONNECT_RULES`] x [`MAX_PORT_RULES`] = 32,768 ranges), twice over for lists whose
/// entries repeat or join. Bounds the port merging of [`build`].
pub const MAX_PORT_ENTRIES: usize = 2 * MAX_CONNECT_RULES * MAX_PORT_RULES;
/// Most syscall names a profile may list (`syscalls.allow`, or the names of all rules of a
/// seccomp profile): the x86_64 and aarch64 tables have some 500 names together and Docker's
/// default seccomp profile lists 425 in 31 rules; the kernel bitmap holds
/// [`SYSCALL_BITMAP_BITS`] numbers. 4,096 leaves room for repeats.
pub const MAX_SYSCALL_NAMES: usize = 4096;
/// Most rules of a seccomp profile used as the `syscalls` section.
pub const MAX_SECCOMP_RULES: usize = 4096;

/// Access bits of a file rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Access(pub u8);

impl Access {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const EXEC: u8 = 4;
    pub fn contains(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [(Self::READ, 'r'), (Self::WRITE, 'w'), (Self::EXEC, 'x')] {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for Access {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A compiled file rule. Rules are sorted by path, one per path (accesses of equal paths
/// joined). Not in kernel maps yet: the BPF-LSM layer will load them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FileRule {
    /// As written: a directory prefix keeps its trailing `/`.
    pub path: String,
    /// Whether `path` is a directory prefix (covers everything below it).
    pub prefix: bool,
    pub access: Access,
}

impl FileRule {
    /// Whether this rule covers `path` (exact, or below a prefix).
    pub fn covers(&self, path: &str) -> bool {
        if self.prefix {
            path.starts_with(&self.path)
        } else {
            path == self.path
        }
    }
}

/// A profile in kernel form. `connect4`/`connect6` entries are LPM prefixes whose value holds
/// the ports of every rule whose CIDR contains the prefix (so the longest match is complete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledProfile {
    pub name: String,
    pub header: ProfileHeader,
    pub connect4: Vec<(u8, [u8; 4], PortRules)>,
    pub connect6: Vec<(u8, [u8; 16], PortRules)>,
    pub bind: Option<PortRules>,
    /// File rules; None = the file layer is not restricted (absent section), Some(empty) =
    /// nothing allowed. An Option rather than a bare Vec because the kernel header has no flag
    /// for this layer yet and "absent" must stay distinct from "empty".
    pub files: Option<Vec<FileRule>>,
    /// SHA-256 over everything above: equal hashes mean identical kernel state.
    pub hash: [u8; 32],
}

impl CompiledProfile {
    pub fn version(&self) -> String {
        self.hash[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Names of the allowed syscalls (native arch), for display.
    pub fn allowed_syscalls(&self) -> Vec<&'static str> {
        (0..SYSCALL_BITMAP_BITS)
            .filter(|n| self.header.syscalls[n / 64] >> (n % 64) & 1 == 1)
            .filter_map(sysnames::host_name)
            .collect()
    }

    pub fn families(&self) -> Vec<String> {
        (0..64).filter(|n| self.header.families >> n & 1 == 1).map(family_name).collect()
    }

    /// `network.protocols` names the compiled profile allows (`raw` for SOCK_RAW).
    pub fn protocols(&self) -> Vec<&'static str> {
        PROTOCOLS
            .iter()
            .filter(|(name, n)| {
                if *name == "raw" {
                    self.restricts(profile_flags::RAW_SOCKETS)
                } else {
                    self.header.protocols & protocol_bit(*n) != 0
                }
            })
            .map(|(name, _)| *name)
            .collect()
    }

    pub fn restricts(&self, flag: u32) -> bool {
        self.header.flags & flag != 0
    }

    /// Connect entries as (CIDR, ports), IPv4 then IPv6.
    pub fn connect_rules(&self) -> Vec<(IpNet, PortRules)> {
        let v4 = self
            .connect4
            .iter()
            .map(|(l, a, r)| (IpNet::V4(ipnet::Ipv4Net::new((*a).into(), *l).expect("valid prefix")), *r));
        let v6 = self
            .connect6
            .iter()
            .map(|(l, a, r)| (IpNet::V6(ipnet::Ipv6Net::new((*a).into(), *l).expect("valid prefix")), *r));
        v4.chain(v6).collect()
    }

    /// The compiled view as JSON (`warden profile show --json`).
    pub fn to_json(&self) -> serde_json::Value {
        let flags = &self.header.flags;
        let layer = |f: u32| flags & f != 0;
        serde_json::json!({
            "name": self.name,
            "version": self.version(),
            "hash": self.hash.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "syscalls": if layer(profile_flags::SYSCALLS) {
                serde_json::json!({
                    "default": if layer(profile_flags::SYSCALLS_LOG_ONLY) { "log" } else { "kill" },
                    "arch": sysnames::HOST_ARCH,
                    "allow": self.allowed_syscalls(),
                })
            } else { serde_json::Value::Null },
            "files": self.files,
            "network": if layer(profile_flags::FAMILIES) {
                serde_json::json!({
                    "families": self.families(),
                    "raw_sockets": layer(profile_flags::RAW_SOCKETS),
                    "protocols": self.protocols(),
                    "connect": if layer(profile_flags::CONNECT) {
                        serde_json::Value::from(self.connect_rules().iter().map(|(n, r)| serde_json::json!({"cidr": n.to_string(), "ports": port_rules_json(r)})).collect::<Vec<_>>())
                    } else { serde_json::Value::Null },
                    "bind": self.bind.as_ref().map(port_rules_json),
                })
            } else { serde_json::Value::Null },
        })
    }
}

fn proto_name(p: u8) -> &'static str {
    match p {
        proto::TCP => "tcp",
        proto::UDP => "udp",
        _ => "any",
    }
}

fn port_rules_json(r: &PortRules) -> serde_json::Value {
    r.rules[..r.count as usize]
        .iter()
        .map(|p| serde_json::json!({"protocol": proto_name(p.proto), "lo": p.lo, "hi": p.hi}))
        .collect()
}

/// "tcp 80, any 1000-2000", or "nothing".
pub fn port_rules_text(r: &PortRules) -> String {
    if r.count == 0 {
        return "nothing".into();
    }
    r.rules[..r.count as usize]
        .iter()
        .map(|p| {
            let ports = match (p.lo, p.hi) {
                (0, 65535) => "all ports".to_string(),
                (lo, hi) if lo == hi => lo.to_string(),
                (lo, hi) => format!("{lo}-{hi}"),
            };
            format!("{} {ports}", proto_name(p.proto))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Syscalls that hand a workload the means to escape or blind its confinement.
const DANGEROUS: &[(&str, &str)] = &[
    ("bpf", "loads eBPF programs and can tamper with warden's own maps"),
    ("ptrace", "lets a process control others and run syscalls on their behalf"),
    ("mount", "changes what paths point to, defeating file rules"),
    ("unshare", "creates namespaces (user namespaces grant new capabilities)"),
    ("setns", "joins other namespaces"),
    ("init_module", "loads kernel code"),
    ("finit_module", "loads kernel code"),
    ("kexec_load", "replaces the running kernel"),
    ("kexec_file_load", "replaces the running kernel"),
];

/// Whether `name` is a usable profile name (file `<name>.json`, kernel meta holds 63 bytes).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > 63 {
        return Err(format!("name is {} bytes; the limit is 63", name.len()));
    }
    if name.starts_with(['.', '-']) || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!("`{name}` is not a profile name: use letters, digits, `.`, `_`, `-` (not first)"));
    }
    Ok(())
}

/// Every error and warning about `p` (one profile as written or merged; `extends` names are
/// only checked for form, resolving them is [`super::resolve`]'s job).
pub fn check(p: &Profile) -> Vec<Diagnostic> {
    build(p).1
}

/// Compiles a profile whose `extends` is resolved (see [`Profile::from_file`]). Fails with
/// every error found ([`Invalid`]).
pub fn compile(p: &Profile) -> Result<CompiledProfile> {
    let (compiled, mut diags) = build(p);
    if !p.extends.is_empty() {
        diags.push(Diagnostic::error(
            "extends",
            "not resolved: load the profile with Profile::from_file (or `warden profile`), which merges the profiles it extends",
        ));
    }
    let errors: Vec<Diagnostic> = diags.into_iter().filter(Diagnostic::is_error).collect();
    if !errors.is_empty() {
        return Err(Invalid { profile: Some(p.name.clone()), errors }.into());
    }
    Ok(compiled)
}

fn build(p: &Profile) -> (CompiledProfile, Vec<Diagnostic>) {
    let mut header = ProfileHeader::default();
    let mut d: Vec<Diagnostic> = Vec::new();

    if let Err(e) = check_name(&p.name) {
        d.push(Diagnostic::error("name", e));
    }
    let mut seen = BTreeSet::new();
    for (i, base) in p.extends.iter().enumerate() {
        if let Err(e) = check_name(base) {
            d.push(Diagnostic::error(format!("extends[{i}]"), e));
        } else if !seen.insert(base) {
            d.push(Diagnostic::warning(format!("extends[{i}]"), format!("`{base}` is listed twice")));
        }
    }

    // Counts first: an oversize profile is refused before any per-rule work.
    let over = limit_errors(p);
    if !over.is_empty() {
        d.extend(over);
        let hash = content_hash(&p.name, &header, &[], &[], None, None);
        let compiled = CompiledProfile {
            name: p.name.clone(),
            header,
            connect4: Vec::new(),
            connect6: Vec::new(),
            bind: None,
            files: None,
            hash,
        };
        return (compiled, d);
    }

    if let Some(spec) = &p.syscalls {
        header.flags |= profile_flags::SYSCALLS;
        let (sc, report) = spec.to_allow();
        if sc.default == DefaultAction::Log {
            header.flags |= profile_flags::SYSCALLS_LOG_ONLY;
        }
        let seccomp = matches!(spec, SyscallsSpec::Seccomp(_));
        if let Some(r) = report {
            use super::seccomp::Kind;
            d.push(Diagnostic::note(
                "syscalls",
                format!(
                    "OCI seccomp profile converted for {}: {} syscalls allowed, {} rule(s) skipped, {} deny rule(s) turned into kills; `warden profile import-seccomp` prints the full report",
                    sysnames::HOST_ARCH,
                    r.allowed,
                    r.of(Kind::Skipped).count(),
                    r.of(Kind::Denied).count()
                ),
            ));
            for l in r.of(Kind::Widened) {
                d.push(Diagnostic::warning("syscalls", l.text.clone()));
            }
        }
        for (i, name) in sc.allow.iter().enumerate() {
            // A converted seccomp profile has no per-name JSON path.
            let path = if seccomp { "syscalls".to_string() } else { format!("syscalls.allow[{i}]") };
            match sysnames::lookup(name) {
                Lookup::Host(n) if n < SYSCALL_BITMAP_BITS => header.syscalls[n / 64] |= 1 << (n % 64),
                Lookup::Host(n) => d.push(Diagnostic::error(
                    path.clone(),
                    format!("`{name}` is number {n}, above the {SYSCALL_BITMAP_BITS}-entry table"),
                )),
                Lookup::OtherArch(arches) => d.push(Diagnostic::note(
                    path.clone(),
                    format!(
                        "`{name}` is not a syscall on {} (only on {}): ignored on this host",
                        sysnames::HOST_ARCH,
                        arches.join(", ")
                    ),
                )),
                Lookup::Unknown(close) => {
                    d.push(Diagnostic::error(path.clone(), sysnames::unknown_message(name, &close)))
                }
            }
            if let Some((_, why)) = DANGEROUS.iter().find(|(n, _)| n == name) {
                d.push(Diagnostic::warning(path, format!("allows `{name}`, which {why}")));
            }
        }
    }

    let files = p.files.as_ref().map(|rules| {
        let mut merged: BTreeMap<&str, Access> = BTreeMap::new();
        for (i, r) in rules.iter().enumerate() {
            let path_ok =
                files::check_path(&r.path).map_err(|e| d.push(Diagnostic::error(format!("files[{i}].path"), e)));
            let access =
                files::parse_access(&r.access).map_err(|e| d.push(Diagnostic::error(format!("files[{i}].access"), e)));
            if let (Ok(()), Ok(a)) = (path_ok, access) {
                if r.path == "/" && a.contains(Access::WRITE) {
                    d.push(Diagnostic::warning(format!("files[{i}]"), "makes `/` writable: every file may be written"));
                }
                merged.entry(&r.path).or_default().0 |= a.0;
            }
        }
        merged
            .into_iter()
            .map(|(path, access)| FileRule { path: path.to_string(), prefix: path.ends_with('/'), access })
            .collect::<Vec<_>>()
    });

    let mut connect4 = Vec::new();
    let mut connect6 = Vec::new();
    let mut bind = None;
    if let Some(net) = &p.network {
        header.flags |= profile_flags::FAMILIES;
        if net.raw_sockets {
            header.flags |= profile_flags::RAW_SOCKETS;
        }
        for (i, name) in net.protocols.iter().enumerate() {
            match protocol_number(name) {
                Some(_) if name == "raw" => header.flags |= profile_flags::RAW_SOCKETS,
                Some(n) => header.protocols |= protocol_bit(n),
                None => d.push(Diagnostic::error(
                    format!("network.protocols[{i}]"),
                    format!(
                        "unknown protocol `{name}` (known: {}; tcp and udp need no entry)",
                        PROTOCOLS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ),
                )),
            }
        }
        header.families = match &net.families {
            None => {
                // Every family but packet: raw link-layer access is opt-in.
                let all = (0..64u32).fold(0u64, |m, n| m | 1 << n);
                all & !(1u64 << libc::AF_PACKET)
            }
            Some(names) => {
                let mut bits = 0u64;
                for (i, f) in names.iter().enumerate() {
                    match family_number(f) {
                        Some(n) => bits |= 1 << n,
                        None => d.push(Diagnostic::error(
                            format!("network.families[{i}]"),
                            format!(
                                "unknown family `{f}` (known: {})",
                                FAMILIES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                            ),
                        )),
                    }
                }
                bits
            }
        };
        if let Some(rules) = &net.connect {
            header.flags |= profile_flags::CONNECT;
            for (i, r) in rules.iter().enumerate() {
                if r.cidr.prefix_len() == 0 && r.ports.as_ref().is_none_or(|ps| covers_all(ps)) {
                    d.push(Diagnostic::warning(
                        format!("network.connect[{i}]"),
                        format!("allows connecting to every address ({}) on every port", r.cidr),
                    ));
                }
                let fam = if r.cidr.addr().is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
                if header.families >> fam & 1 == 0 {
                    d.push(Diagnostic::warning(
                        format!("network.connect[{i}]"),
                        format!(
                            "{} needs family `{}`, which network.families does not allow",
                            r.cidr,
                            family_name(fam as u32)
                        ),
                    ));
                }
            }
            for (net, pr) in connect_entries(rules) {
                match pr {
                    Ok(pr) => match net {
                        IpNet::V4(n) => connect4.push((n.prefix_len(), n.network().octets(), pr)),
                        IpNet::V6(n) => connect6.push((n.prefix_len(), n.network().octets(), pr)),
                    },
                    Err(e) => d.push(Diagnostic::error("network.connect", format!("{net}: {e}"))),
                }
            }
        }
        if let Some(rules) = &net.bind {
            header.flags |= profile_flags::BIND;
            let ranges: Vec<(Protocol, PortRange)> =
                rules.iter().flat_map(|r| r.ports.iter().map(move |p| (r.protocol, *p))).collect();
            match port_rules(&ranges) {
                Ok(pr) => bind = Some(pr),
                Err(e) => d.push(Diagnostic::error("network.bind", e.to_string())),
            }
        }
    }

    let hash = content_hash(&p.name, &header, &connect4, &connect6, bind.as_ref(), files.as_deref());
    (CompiledProfile { name: p.name.clone(), header, connect4, connect6, bind, files, hash }, d)
}

fn covers_all(ports: &[PortRange]) -> bool {
    let mut sorted = ports.to_vec();
    sorted.sort();
    let mut next: u32 = 0;
    for r in sorted {
        if r.lo as u32 > next {
            return false;
        }
        next = next.max(r.hi as u32 + 1);
    }
    next > 65535
}

/// SHA-256 over the kernel form. Every part is fixed-size or terminated, so distinct contents
/// cannot collide by concatenation; a profile without `files` hashes as before that layer
/// existed, so existing versions keep their identity.
pub(super) fn content_hash(
    name: &str,
    header: &ProfileHeader,
    connect4: &[(u8, [u8; 4], PortRules)],
    connect6: &[(u8, [u8; 16], PortRules)],
    bind: Option<&PortRules>,
    files: Option<&[FileRule]>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(bytes_of(header));
    for (len, a, r) in connect4 {
        h.update([4, *len]);
        h.update(a);
        h.update(bytes_of(r));
    }
    for (len, a, r) in connect6 {
        h.update([6, *len]);
        h.update(a);
        h.update(bytes_of(r));
    }
    if let Some(b) = bind {
        h.update([0xb]);
        h.update(bytes_of(b));
    }
    if let Some(files) = files {
        h.update([0xf]);
        h.update((files.len() as u32).to_le_bytes());
        for f in files {
            h.update(f.path.as_bytes());
            h.update([0, f.prefix as u8, f.access.0]);
        }
    }
    h.finalize().into()
}

/// Whether `p` is over one of the size limits (the errors are [`check`]'s).
pub fn exceeds_limits(p: &Profile) -> bool {
    !limit_errors(p).is_empty()
}

/// Every limit a profile's size is subject to, on the counts as written: one error per count
/// over its limit, naming the field, the count and the limit. Costs one pass over the rule
/// lists at most (the port and name totals are only summed once their rule count is within
/// its limit), so an oversize profile is refused at once.
fn limit_errors(p: &Profile) -> Vec<Diagnostic> {
    let mut d = Vec::new();
    let mut over = |path: &str, n: usize, what: &str, limit: usize| {
        if n > limit {
            d.push(Diagnostic::error(path, format!("{n} {what}; the limit is {limit}")));
            false
        } else {
            true
        }
    };
    if let Some(SyscallsSpec::Allow(s)) = &p.syscalls {
        over("syscalls.allow", s.allow.len(), "names", MAX_SYSCALL_NAMES);
    }
    if let Some(SyscallsSpec::Seccomp(sp)) = &p.syscalls {
        if over("syscalls.syscalls", sp.syscalls.len(), "rules", MAX_SECCOMP_RULES) {
            let names: usize = sp.syscalls.iter().map(|r| r.names.len() + r.name.is_some() as usize).sum();
            over("syscalls.syscalls", names, "syscall names", MAX_SYSCALL_NAMES);
        }
    }
    if let Some(rules) = &p.files {
        over("files", rules.len(), "rules", MAX_FILE_RULES);
    }
    if let Some(net) = &p.network {
        if let Some(rules) = &net.connect {
            if over("network.connect", rules.len(), "rules", MAX_CONNECT_RULES) {
                let ports: usize = rules.iter().map(|r| r.ports.as_ref().map_or(1, Vec::len)).sum();
                over("network.connect", ports, "port entries", MAX_PORT_ENTRIES);
            }
        }
        if let Some(rules) = &net.bind {
            if over("network.bind", rules.len(), "rules", MAX_BIND_RULES) {
                let ports: usize = rules.iter().map(|r| r.ports.len()).sum();
                over("network.bind", ports, "port entries", MAX_PORT_ENTRIES);
            }
        }
    }
    d
}

/// A port range in kernel terms: (protocol number, lo, hi).
type Range = (u8, u16, u16);

fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => proto::TCP,
        Protocol::Udp => proto::UDP,
        Protocol::Any => proto::ANY,
    }
}

/// Joins ranges sorted by (protocol, lo, hi): overlapping and adjacent ranges of one protocol
/// become one. The result is the canonical form of their union (sorted, disjoint, not
/// adjacent), whatever the input's repeats and splits.
fn join_sorted(sorted: impl IntoIterator<Item = Range>) -> Vec<Range> {
    let mut merged: Vec<Range> = Vec::new();
    for (p, lo, hi) in sorted {
        match merged.last_mut() {
            Some((lp, _, lhi)) if *lp == p && (lo as u32) <= *lhi as u32 + 1 => *lhi = (*lhi).max(hi),
            _ => merged.push((p, lo, hi)),
        }
    }
    merged
}

/// Canonical form of the union of two canonical lists, in linear time.
fn union_sorted(a: &[Range], b: &[Range]) -> Vec<Range> {
    let (mut i, mut j) = (0, 0);
    let mut both = Vec::with_capacity(a.len() + b.len());
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            both.push(a[i]);
            i += 1;
        } else {
            both.push(b[j]);
            j += 1;
        }
    }
    both.extend_from_slice(&a[i..]);
    both.extend_from_slice(&b[j..]);
    join_sorted(both)
}

/// The LPM entries of `network.connect`: one per distinct CIDR (truncated to its prefix), in
/// ascending order, holding the ports of every rule whose CIDR contains it, or the error of a
/// table too small for them.
///
/// Near-linear: rules are grouped by CIDR and each group's ports joined once; the CIDRs are
/// then walked in order (address, then prefix length), where every CIDR is directly followed
/// by the CIDRs it contains, so a stack holds the chain of containing CIDRs (at most 33 or 129
/// deep) with their joined ports, and each entry is its own ports joined with its nearest
/// container's, which already include every wider one.
pub(super) fn connect_entries(rules: &[super::ConnectRule]) -> Vec<(IpNet, Result<PortRules>)> {
    let mut own: BTreeMap<IpNet, Vec<Range>> = BTreeMap::new();
    for r in rules {
        let p = proto_number(r.protocol);
        let v = own.entry(r.cidr.trunc()).or_default();
        match &r.ports {
            Some(ports) => v.extend(ports.iter().map(|x| (p, x.lo, x.hi))),
            None => v.push((p, PortRange::ALL.lo, PortRange::ALL.hi)),
        }
    }
    let mut out = Vec::with_capacity(own.len());
    let mut stack: Vec<(IpNet, Vec<Range>)> = Vec::new();
    for (net, mut ranges) in own {
        while stack.last().is_some_and(|(top, _)| !top.contains(&net)) {
            stack.pop();
        }
        ranges.sort_unstable();
        let joined = join_sorted(ranges);
        let all = match stack.last() {
            Some((_, wider)) => union_sorted(wider, &joined),
            None => joined,
        };
        out.push((net, table(&all)));
        stack.push((net, all));
    }
    out
}

/// Merges port ranges per protocol (sorted, overlapping and adjacent ranges joined) into the
/// kernel's fixed-size table.
fn port_rules(ranges: &[(Protocol, PortRange)]) -> Result<PortRules> {
    let mut sorted: Vec<Range> = ranges.iter().map(|(p, r)| (proto_number(*p), r.lo, r.hi)).collect();
    sorted.sort_unstable();
    table(&join_sorted(sorted))
}

/// Joined ranges into the kernel's fixed-size table.
fn table(merged: &[Range]) -> Result<PortRules> {
    if merged.len() > MAX_PORT_RULES {
        bail!(
            "{} distinct port ranges (counting those of wider CIDRs containing it); the kernel table holds {MAX_PORT_RULES}: join ports into ranges",
            merged.len()
        );
    }
    let mut out = PortRules::default();
    for (i, (p, lo, hi)) in merged.iter().enumerate() {
        out.rules[i] = PortRule { lo: *lo, hi: *hi, proto: *p, _pad: [0; 3] };
    }
    out.count = merged.len() as u32;
    Ok(out)
}

fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: the kernel-shared types are repr(C) plain data with explicit padding fields.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
}

/// Number of `name` on the host; an error suggesting close names if there is none.
pub fn syscall_number(name: &str) -> Result<usize> {
    match sysnames::lookup(name) {
        Lookup::Host(n) => Ok(n),
        Lookup::OtherArch(a) => {
            bail!("`{name}` is not a syscall on {} (only on {})", sysnames::HOST_ARCH, a.join(", "))
        }
        Lookup::Unknown(close) => bail!("{}", sysnames::unknown_message(name, &close)),
    }
}
