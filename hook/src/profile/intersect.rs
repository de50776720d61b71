//! The intersection of two compiled profiles: what both allow (an operator's baseline and a
//! pod's profile, issue 16). Works on the kernel form, so the result is exactly what the
//! kernel would allow if it judged each action against both profiles and required both to
//! say yes.
//!
//! Per layer: a layer one profile does not restrict is the other's; where both restrict,
//! - syscalls and socket families: the bitmaps are ANDed; a `log` default survives only if
//!   both are `log` (a kill in either is a kill);
//! - raw sockets and `network.protocols`: allowed only if both allow them;
//! - files: every rule path of either, with the access both grant on that path. The kernel
//!   ORs every rule covering a path (directory rules are folded into longer ones), so what a
//!   profile grants a path is the OR of its rules covering it; the most specific rule of the
//!   union covering a path sees exactly what each profile grants that path;
//! - connect: every CIDR of either, with the ports both allow on it (each side's longest
//!   prefix containing the CIDR holds its complete answer, as in `diff`);
//! - bind: the ports both allow.
use anyhow::{bail, Result};
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use warden_common::{profile_flags as pf, proto, PortRule, PortRules, MAX_PORT_RULES};

use super::compile::{Access, CompiledProfile, FileRule};

/// The name of the intersection of `profile` and `baseline`: `profile&baseline`. `&` is not a
/// profile-name character, so it cannot collide with a profile file; over the kernel's
/// 63-byte name limit the profile part is shortened and tagged with a hash of it.
pub fn combined_name(profile: &str, baseline: &str) -> String {
    let full = format!("{profile}&{baseline}");
    if full.len() <= 63 {
        return full;
    }
    let h: String = Sha256::digest(profile.as_bytes())[..3].iter().map(|b| format!("{b:02x}")).collect();
    let keep = 63usize.saturating_sub(baseline.len() + 1 + 7).min(profile.len());
    format!("{}~{h}&{baseline}", &profile[..keep])
}

/// What both `a` and `b` allow, named `name`.
pub fn intersect(name: &str, a: &CompiledProfile, b: &CompiledProfile) -> Result<CompiledProfile> {
    let (ha, hb) = (&a.header, &b.header);
    let mut h = warden_common::ProfileHeader::default();

    // Syscalls.
    match (a.restricts(pf::SYSCALLS), b.restricts(pf::SYSCALLS)) {
        (false, false) => {}
        (true, false) => copy_syscalls(&mut h, ha),
        (false, true) => copy_syscalls(&mut h, hb),
        (true, true) => {
            // One default per profile in the kernel: a call only a `log` profile leaves out
            // is killed when the other is `kill` (stricter than either alone, never looser).
            h.flags |= pf::SYSCALLS;
            if a.restricts(pf::SYSCALLS_LOG_ONLY) && b.restricts(pf::SYSCALLS_LOG_ONLY) {
                h.flags |= pf::SYSCALLS_LOG_ONLY;
            }
            for (w, (x, y)) in h.syscalls.iter_mut().zip(ha.syscalls.iter().zip(hb.syscalls.iter())) {
                *w = x & y;
            }
        }
    }

    // Socket families, raw sockets, protocols (FAMILIES marks a present `network` section).
    let (na, nb) = (a.restricts(pf::FAMILIES), b.restricts(pf::FAMILIES));
    if na || nb {
        h.flags |= pf::FAMILIES;
        let fam = |p: &CompiledProfile, restricts: bool| if restricts { p.header.families } else { u64::MAX };
        h.families = fam(a, na) & fam(b, nb);
        let raw = |p: &CompiledProfile, restricts: bool| !restricts || p.restricts(pf::RAW_SOCKETS);
        if raw(a, na) && raw(b, nb) {
            h.flags |= pf::RAW_SOCKETS;
        }
        let protos = |p: &CompiledProfile, restricts: bool| if restricts { p.header.protocols } else { u32::MAX };
        h.protocols = protos(a, na) & protos(b, nb);
    }

    // Files.
    let files = match (&a.files, &b.files) {
        (None, None) => None,
        (Some(f), None) | (None, Some(f)) => Some(f.clone()),
        (Some(fa), Some(fb)) => {
            let paths: BTreeSet<&str> = fa.iter().chain(fb.iter()).map(|r| r.path.as_str()).collect();
            Some(
                paths
                    .into_iter()
                    .filter_map(|p| {
                        let access = granted(fa, p) & granted(fb, p);
                        (access != 0).then(|| FileRule {
                            path: p.to_string(),
                            prefix: p.ends_with('/'),
                            access: Access(access),
                        })
                    })
                    .collect(),
            )
        }
    };

    // Connect.
    let (ca, cb) = (a.restricts(pf::CONNECT), b.restricts(pf::CONNECT));
    let mut connect4 = Vec::new();
    let mut connect6 = Vec::new();
    if ca || cb {
        h.flags |= pf::CONNECT;
        let rules = match (ca, cb) {
            (true, false) => a.connect_rules(),
            (false, true) => b.connect_rules(),
            _ => {
                let (ra, rb) = (a.connect_rules(), b.connect_rules());
                let nets: BTreeSet<IpNet> = ra.iter().chain(rb.iter()).map(|(n, _)| *n).collect();
                let mut out = Vec::new();
                for net in nets {
                    let ports = both(&longest(&ra, &net), &longest(&rb, &net))
                        .map_err(|e| anyhow::anyhow!("connect {net}: {e}"))?;
                    if ports.count > 0 {
                        out.push((net, ports));
                    }
                }
                out
            }
        };
        for (net, r) in rules {
            match net {
                IpNet::V4(n) => connect4.push((n.prefix_len(), n.network().octets(), r)),
                IpNet::V6(n) => connect6.push((n.prefix_len(), n.network().octets(), r)),
            }
        }
    }

    // Bind.
    let bind = match (&a.bind, &b.bind) {
        (None, None) => None,
        (Some(r), None) | (None, Some(r)) => Some(*r),
        (Some(x), Some(y)) => Some(both(x, y).map_err(|e| anyhow::anyhow!("bind: {e}"))?),
    };
    if bind.is_some() {
        h.flags |= pf::BIND;
    }

    let hash = super::compile::content_hash(name, &h, &connect4, &connect6, bind.as_ref(), files.as_deref());
    Ok(CompiledProfile { name: name.to_string(), header: h, connect4, connect6, bind, files, hash })
}

fn copy_syscalls(h: &mut warden_common::ProfileHeader, from: &warden_common::ProfileHeader) {
    h.flags |= from.flags & (pf::SYSCALLS | pf::SYSCALLS_LOG_ONLY);
    h.syscalls = from.syscalls;
}

/// What the file rules grant `path` (a rule path itself): the OR of every rule covering it.
fn granted(rules: &[FileRule], path: &str) -> u8 {
    rules.iter().filter(|r| r.covers(path)).fold(0u8, |m, r| m | r.access.0)
}

/// The ports of the longest CIDR of `rules` containing `net` (none: no port): what the
/// kernel's connect trie answers for an address of `net` (values are folded from wider CIDRs).
pub fn longest(rules: &[(IpNet, PortRules)], net: &IpNet) -> PortRules {
    rules
        .iter()
        .filter(|(n, _)| n.contains(net))
        .max_by_key(|(n, _)| n.prefix_len())
        .map(|(_, r)| *r)
        .unwrap_or_default()
}

type Ranges = Vec<(u16, u16)>;

/// Ports per protocol (tcp, udp), sorted and joined; `any` counts for both.
fn per_proto(r: &PortRules) -> [Ranges; 2] {
    let mut out: [Ranges; 2] = [Vec::new(), Vec::new()];
    for p in &r.rules[..(r.count as usize).min(MAX_PORT_RULES)] {
        if p.proto != proto::UDP {
            out[0].push((p.lo, p.hi));
        }
        if p.proto != proto::TCP {
            out[1].push((p.lo, p.hi));
        }
    }
    for v in &mut out {
        v.sort();
        let mut joined: Ranges = Vec::new();
        for &(lo, hi) in v.iter() {
            match joined.last_mut() {
                Some((_, lhi)) if lo as u32 <= *lhi as u32 + 1 => *lhi = (*lhi).max(hi),
                _ => joined.push((lo, hi)),
            }
        }
        *v = joined;
    }
    out
}

/// The ranges in both `x` and `y` (each sorted and disjoint).
fn and(x: &Ranges, y: &Ranges) -> Ranges {
    let mut out = Vec::new();
    for &(a, b) in x {
        for &(c, d) in y {
            let (lo, hi) = (a.max(c), b.min(d));
            if lo <= hi {
                out.push((lo, hi));
            }
        }
    }
    out.sort();
    out
}

/// The ports both tables allow, in the kernel's table form (a range both protocols share is
/// one `any` rule).
fn both(x: &PortRules, y: &PortRules) -> Result<PortRules> {
    let (px, py) = (per_proto(x), per_proto(y));
    let (tcp, udp) = (and(&px[0], &py[0]), and(&px[1], &py[1]));
    let mut rules: Vec<PortRule> = Vec::new();
    let rule = |lo, hi, proto| PortRule { lo, hi, proto, _pad: [0; 3] };
    for r in &tcp {
        rules.push(if udp.contains(r) { rule(r.0, r.1, proto::ANY) } else { rule(r.0, r.1, proto::TCP) });
    }
    rules.extend(udp.iter().filter(|r| !tcp.contains(r)).map(|r| rule(r.0, r.1, proto::UDP)));
    if rules.len() > MAX_PORT_RULES {
        bail!(
            "the intersection has {} port ranges; the kernel table holds {MAX_PORT_RULES} (align the baseline's and the profile's port ranges)",
            rules.len()
        );
    }
    let mut out = PortRules::default();
    for (i, r) in rules.iter().enumerate() {
        out.rules[i] = *r;
    }
    out.count = rules.len() as u32;
    Ok(out)
}
