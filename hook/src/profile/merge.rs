//! Merging profiles (`warden profile merge`): the union of what several profiles allow, and
//! the canonical form that makes it idempotent and order-independent.
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use ipnet::IpNet;

use super::files::{bits_letters, letters_bits};
use super::{
    BindRule, ConnectRule, DefaultAction, FileRuleSpec, Network, PortRange, Profile, Protocol, Syscalls, SyscallsSpec,
};

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
            protocols: sorted_dedup(n.protocols),
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
            // Absent means none here (not "unrestricted"): the union is the concatenation.
            protocols: nets.iter().flat_map(|n| n.protocols.iter().cloned()).collect(),
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
