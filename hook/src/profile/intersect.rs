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

/// The ports of the longest CIDR of `rules` containing `net` (none: no port).
fn longest(rules: &[(IpNet, PortRules)], net: &IpNet) -> PortRules {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforcer::files;
    use crate::profile::{compile, Profile};
    use proptest::prelude::*;

    fn c(json: &str) -> CompiledProfile {
        compile(&Profile::from_json(json).unwrap()).unwrap()
    }

    fn file_ok(p: &CompiledProfile, path: &str, need: u8) -> bool {
        match &p.files {
            None => true,
            Some(rules) => files::allows(&files::entries(rules).unwrap(), path, need),
        }
    }

    /// What the kernel answers for a connect: the longest prefix's ports (none: refused).
    fn connect_ok(p: &CompiledProfile, addr: std::net::IpAddr, proto: u8, port: u16) -> bool {
        if !p.restricts(pf::CONNECT) {
            return true;
        }
        let host = IpNet::from(addr);
        longest(&p.connect_rules(), &host).allows(proto, port)
    }

    fn syscall_ok(p: &CompiledProfile, n: usize) -> bool {
        !p.restricts(pf::SYSCALLS) || p.header.syscalls[n / 64] >> (n % 64) & 1 == 1
    }

    #[test]
    fn each_layer_allows_what_both_allow() {
        let base = c(r#"{"name":"floor","syscalls":{"allow":["read","write","openat","connect"]},
            "files":[{"path":"/etc/","access":"r"},{"path":"/tmp/","access":"rw"}],
            "network":{"connect":[{"cidr":"10.0.0.0/8","ports":["1-1024"],"protocol":"any"}],"bind":[]}}"#);
        let pod = c(r#"{"name":"web","syscalls":{"allow":["read","write","execve"]},
            "files":[{"path":"/etc/passwd","access":"rw"},{"path":"/tmp/","access":"r"},{"path":"/data/","access":"rw"}],
            "network":{"connect":[{"cidr":"10.1.0.0/16","ports":["443","8080"],"protocol":"tcp"}],"protocols":["icmp"]}}"#);
        let i = intersect("web&floor", &pod, &base).unwrap();
        assert_eq!(i.name, "web&floor");
        assert_eq!(i.allowed_syscalls(), vec!["read", "write"]);
        // files: passwd only readable (floor), /tmp read only (pod), /data nothing (floor).
        assert!(file_ok(&i, "/etc/passwd", 1) && !file_ok(&i, "/etc/passwd", 2));
        assert!(!file_ok(&i, "/etc/shadow", 1), "the pod grants no other /etc file");
        assert!(file_ok(&i, "/tmp/x", 1) && !file_ok(&i, "/tmp/x", 2));
        assert!(!file_ok(&i, "/data/x", 1));
        // connect: 10.1/16 tcp 443 (8080 is outside the floor's 1-1024), nothing else.
        let a = "10.1.2.3".parse().unwrap();
        assert!(connect_ok(&i, a, proto::TCP, 443));
        assert!(!connect_ok(&i, a, proto::TCP, 8080));
        assert!(!connect_ok(&i, a, proto::UDP, 443));
        assert!(!connect_ok(&i, "10.2.0.1".parse().unwrap(), proto::TCP, 443));
        // bind: the floor's empty list wins over the pod's unrestricted bind; icmp only in the pod.
        assert_eq!(i.bind.map(|b| b.count), Some(0));
        assert!(i.protocols().is_empty(), "{:?}", i.protocols());
        // Nothing the intersection allows is beyond either profile.
        assert!(crate::profile::diff::allowed_by_b_not_a(&base, &i).is_empty());
        assert!(crate::profile::diff::allowed_by_b_not_a(&pod, &i).is_empty());
    }

    #[test]
    fn an_unrestricted_layer_takes_the_other_and_log_needs_both() {
        let only_sys = c(r#"{"name":"a","syscalls":{"default":"log","allow":["read"]}}"#);
        let only_net = c(r#"{"name":"b","network":{"connect":[]}}"#);
        let i = intersect("a&b", &only_sys, &only_net).unwrap();
        assert!(i.restricts(pf::SYSCALLS) && i.restricts(pf::SYSCALLS_LOG_ONLY) && i.restricts(pf::CONNECT));
        assert!(i.files.is_none() && i.bind.is_none());
        let kill = c(r#"{"name":"k","syscalls":{"allow":["read","write"]}}"#);
        let i = intersect("a&k", &only_sys, &kill).unwrap();
        assert!(!i.restricts(pf::SYSCALLS_LOG_ONLY), "a kill in either profile is a kill");
        assert_eq!(i.allowed_syscalls(), vec!["read"]);
    }

    #[test]
    fn names_fit_the_kernel() {
        assert_eq!(combined_name("web", "floor"), "web&floor");
        let long = "p".repeat(63);
        let n = combined_name(&long, "node-floor");
        assert!(n.len() <= 63 && n.ends_with("&node-floor") && n.contains('~'), "{n}");
        assert_ne!(n, combined_name(&format!("{}q", "p".repeat(62)), "node-floor"));
    }

    fn file_rules() -> impl Strategy<Value = Vec<(String, String)>> {
        let path = prop::sample::select(vec!["/a/", "/a/b", "/a/b/", "/a/b/c", "/b", "/b/", "/"]);
        let access = prop::sample::select(vec!["r", "w", "rw", "x", "rx", "rwx"]);
        prop::collection::vec((path, access).prop_map(|(p, a)| (p.to_string(), a.to_string())), 0..5)
    }

    fn ports() -> impl Strategy<Value = Vec<(u16, u16, &'static str)>> {
        let r = (0u16..20, 0u16..20, prop::sample::select(vec!["tcp", "udp", "any"]));
        prop::collection::vec(r.prop_map(|(a, b, p)| (a.min(b), a.max(b), p)), 0..4)
    }

    fn profile(name: &str, files: &[(String, String)], cidr: &str, ports: &[(u16, u16, &str)]) -> CompiledProfile {
        let files: Vec<String> = files.iter().map(|(p, a)| format!(r#"{{"path":"{p}","access":"{a}"}}"#)).collect();
        let connect: Vec<String> = ports
            .iter()
            .map(|(lo, hi, p)| format!(r#"{{"cidr":"{cidr}","ports":["{lo}-{hi}"],"protocol":"{p}"}}"#))
            .collect();
        c(&format!(
            r#"{{"name":"{name}","files":[{}],"network":{{"connect":[{}]}}}}"#,
            files.join(","),
            connect.join(",")
        ))
    }

    proptest! {
        /// For every path and access, address and port: the intersection allows exactly what
        /// both profiles allow (the kernel's own lookups, userspace twins).
        #[test]
        fn intersection_is_exactly_both(fa in file_rules(), fb in file_rules(), pa in ports(), pb in ports(),
                                        wide in any::<bool>()) {
            let a = profile("a", &fa, "10.0.0.0/8", &pa);
            let b = profile("b", &fb, if wide { "0.0.0.0/0" } else { "10.1.0.0/16" }, &pb);
            let i = intersect("a&b", &a, &b).unwrap();
            for path in ["/", "/a/", "/a/b", "/a/b/", "/a/b/c", "/a/x", "/b", "/b/", "/b/c", "/c"] {
                for need in [1u8, 2, 4, 3] {
                    prop_assert_eq!(file_ok(&i, path, need), file_ok(&a, path, need) && file_ok(&b, path, need),
                                    "{} need {}", path, need);
                }
            }
            for addr in ["10.1.0.1", "10.2.0.1", "11.0.0.1"] {
                let addr: std::net::IpAddr = addr.parse().unwrap();
                for port in 0u16..21 {
                    for p in [proto::TCP, proto::UDP] {
                        prop_assert_eq!(connect_ok(&i, addr, p, port), connect_ok(&a, addr, p, port) && connect_ok(&b, addr, p, port));
                    }
                }
            }
            for n in 0..64 {
                prop_assert_eq!(syscall_ok(&i, n), syscall_ok(&a, n) && syscall_ok(&b, n));
            }
        }
    }
}
