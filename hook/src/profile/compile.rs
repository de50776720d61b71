//! Compilation of a profile into exactly what the kernel maps hold, with the limits checked,
//! and a content hash that identifies the profile version.
use std::collections::BTreeSet;
use std::str::FromStr as _;

use anyhow::{bail, Result};
use ipnet::IpNet;
use sha2::{Digest as _, Sha256};
use warden_common::{
    profile_flags, proto, PortRule, PortRules, ProfileHeader, MAX_PORT_RULES, SYSCALL_BITMAP_BITS,
};

use super::{family_name, family_number, DefaultAction, PortRange, Profile, Protocol, FAMILIES};

/// A profile in kernel form. `connect4`/`connect6` entries are LPM prefixes whose value holds
/// the ports of every rule whose CIDR contains the prefix (so the longest match is complete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledProfile {
    pub name: String,
    pub header: ProfileHeader,
    pub connect4: Vec<(u8, [u8; 4], PortRules)>,
    pub connect6: Vec<(u8, [u8; 16], PortRules)>,
    pub bind: Option<PortRules>,
    /// Files rules in kernel form (`crate::enforcer::files`); None = files not restricted.
    pub files: Option<Vec<crate::enforcer::files::FileEntry>>,
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
            .filter_map(|n| syscalls::Sysno::new(n).map(|s| s.name()))
            .collect()
    }

    pub fn families(&self) -> Vec<String> {
        (0..64).filter(|n| self.header.families >> n & 1 == 1).map(family_name).collect()
    }
}

pub fn syscall_number(name: &str) -> Result<usize> {
    match syscalls::Sysno::from_str(name) {
        Ok(s) => Ok(s.id() as usize),
        Err(_) => {
            let mut close: Vec<(usize, &str)> = syscalls::Sysno::iter()
                .map(|s| (strsim::levenshtein(name, s.name()), s.name()))
                .filter(|(d, _)| *d <= 2)
                .collect();
            close.sort();
            let hint = if close.is_empty() {
                String::new()
            } else {
                format!(" (did you mean {}?)", close.iter().take(3).map(|(_, n)| format!("`{n}`")).collect::<Vec<_>>().join(", "))
            };
            bail!("unknown syscall `{name}` for {}{hint}", std::env::consts::ARCH)
        }
    }
}

pub fn compile(p: &Profile) -> Result<CompiledProfile> {
    let mut header = ProfileHeader::default();
    let mut errors = Vec::new();

    if let Some(sc) = &p.syscalls {
        header.flags |= profile_flags::SYSCALLS;
        if sc.default == DefaultAction::Log {
            header.flags |= profile_flags::SYSCALLS_LOG_ONLY;
        }
        for (i, name) in sc.allow.iter().enumerate() {
            match syscall_number(name) {
                Ok(n) if n < SYSCALL_BITMAP_BITS => header.syscalls[n / 64] |= 1 << (n % 64),
                Ok(n) => errors.push(format!("syscalls.allow[{i}]: `{name}` is number {n}, above the {SYSCALL_BITMAP_BITS}-entry table")),
                Err(e) => errors.push(format!("syscalls.allow[{i}]: {e}")),
            }
        }
    }

    let mut connect4 = Vec::new();
    let mut connect6 = Vec::new();
    let mut bind = None;
    if let Some(net) = &p.network {
        header.flags |= profile_flags::FAMILIES;
        if net.raw_sockets {
            header.flags |= profile_flags::RAW_SOCKETS;
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
                        None => errors.push(format!(
                            "network.families[{i}]: unknown family `{f}` (known: {})",
                            FAMILIES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                        )),
                    }
                }
                bits
            }
        };
        if let Some(rules) = &net.connect {
            header.flags |= profile_flags::CONNECT;
            let flat: Vec<(IpNet, Protocol, Vec<PortRange>)> = rules
                .iter()
                .map(|r| (r.cidr.trunc(), r.protocol, r.ports.clone().unwrap_or(vec![PortRange { lo: 0, hi: 65535 }])))
                .collect();
            let nets: BTreeSet<IpNet> = flat.iter().map(|(n, _, _)| *n).collect();
            for net in nets {
                let mut ranges = Vec::new();
                for (other, proto, ports) in &flat {
                    if other.contains(&net) {
                        ranges.extend(ports.iter().map(|p| (*proto, *p)));
                    }
                }
                match port_rules(&ranges) {
                    Ok(pr) => match net {
                        IpNet::V4(n) => connect4.push((n.prefix_len(), n.network().octets(), pr)),
                        IpNet::V6(n) => connect6.push((n.prefix_len(), n.network().octets(), pr)),
                    },
                    Err(e) => errors.push(format!("network.connect: {net}: {e}")),
                }
            }
        }
        if let Some(rules) = &net.bind {
            header.flags |= profile_flags::BIND;
            let ranges: Vec<(Protocol, PortRange)> =
                rules.iter().flat_map(|r| r.ports.iter().map(move |p| (r.protocol, *p))).collect();
            match port_rules(&ranges) {
                Ok(pr) => bind = Some(pr),
                Err(e) => errors.push(format!("network.bind: {e}")),
            }
        }
    }

    if !errors.is_empty() {
        bail!("profile `{}` is invalid:\n  {}", p.name, errors.join("\n  "));
    }

    let mut h = Sha256::new();
    h.update(p.name.as_bytes());
    h.update([0]);
    h.update(bytes_of(&header));
    for (len, a, r) in &connect4 {
        h.update([4, *len]);
        h.update(a);
        h.update(bytes_of(r));
    }
    for (len, a, r) in &connect6 {
        h.update([6, *len]);
        h.update(a);
        h.update(bytes_of(r));
    }
    if let Some(b) = &bind {
        h.update([0xb]);
        h.update(bytes_of(b));
    }
    let files = None;
    crate::enforcer::files::hash_files(&mut h, &files);
    Ok(CompiledProfile { name: p.name.clone(), header, connect4, connect6, bind, files, hash: h.finalize().into() })
}

/// Merges port ranges per protocol (sorted, overlapping and adjacent ranges joined) into the
/// kernel's fixed-size table.
fn port_rules(ranges: &[(Protocol, PortRange)]) -> Result<PortRules> {
    let mut merged: Vec<(u8, u16, u16)> = Vec::new();
    let mut sorted: Vec<(u8, u16, u16)> = ranges
        .iter()
        .map(|(p, r)| {
            let p = match p {
                Protocol::Tcp => proto::TCP,
                Protocol::Udp => proto::UDP,
                Protocol::Any => proto::ANY,
            };
            (p, r.lo, r.hi)
        })
        .collect();
    sorted.sort();
    for (p, lo, hi) in sorted {
        match merged.last_mut() {
            Some((lp, _, lhi)) if *lp == p && (lo as u32) <= *lhi as u32 + 1 => *lhi = (*lhi).max(hi),
            _ => merged.push((p, lo, hi)),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn prof(json: &str) -> Profile {
        Profile::from_json(json).unwrap()
    }

    #[test]
    fn syscalls_compile_to_bitmap() {
        let c = compile(&prof(r#"{"name":"t","syscalls":{"allow":["read","write","exit_group"]}}"#)).unwrap();
        assert_eq!(c.allowed_syscalls(), vec!["read", "write", "exit_group"]);
        assert_eq!(c.header.flags, profile_flags::SYSCALLS);
    }

    #[test]
    fn unknown_syscall_suggests() {
        let e = compile(&prof(r#"{"name":"t","syscalls":{"allow":["opnat"]}}"#)).unwrap_err().to_string();
        assert!(e.contains("syscalls.allow[0]: unknown syscall `opnat`"), "{e}");
        assert!(e.contains("`openat`"), "{e}");
    }

    #[test]
    fn nested_cidrs_inherit_wider_ports() {
        let c = compile(&prof(
            r#"{"name":"t","network":{"connect":[
                {"cidr":"10.0.0.0/8","ports":[443],"protocol":"tcp"},
                {"cidr":"10.1.0.0/16","ports":["53"],"protocol":"udp"}]}}"#,
        ))
        .unwrap();
        assert_eq!(c.connect4.len(), 2);
        let narrow = c.connect4.iter().find(|(l, _, _)| *l == 16).unwrap();
        assert!(narrow.2.allows(proto::TCP, 443));
        assert!(narrow.2.allows(proto::UDP, 53));
        let wide = c.connect4.iter().find(|(l, _, _)| *l == 8).unwrap();
        assert!(!wide.2.allows(proto::UDP, 53));
    }

    #[test]
    fn ranges_merge_and_limit() {
        let many: Vec<String> = (0..40).map(|i| (1000 + i * 2).to_string()).collect();
        let j = format!(r#"{{"name":"t","network":{{"bind":[{{"ports":[{}]}}]}}}}"#, many.join(","));
        let e = compile(&prof(&j)).unwrap_err().to_string();
        assert!(e.contains("network.bind: 40 distinct port ranges"), "{e}");
        let c = compile(&prof(r#"{"name":"t","network":{"bind":[{"ports":[80,81,"82-90"]}]}}"#)).unwrap();
        assert_eq!(c.bind.unwrap().count, 1);
    }

    #[test]
    fn families_default_excludes_packet() {
        let c = compile(&prof(r#"{"name":"t","network":{}}"#)).unwrap();
        assert!(c.families().contains(&"inet".to_string()));
        assert!(!c.families().contains(&"packet".to_string()));
        assert_eq!(c.header.flags & profile_flags::CONNECT, 0, "absent connect = unrestricted");
    }

    #[test]
    fn hash_is_deterministic_and_content_sensitive() {
        let a = compile(&prof(r#"{"name":"t","syscalls":{"allow":["read"]}}"#)).unwrap();
        let b = compile(&prof(r#"{"name":"t","syscalls":{"allow":["read"]}}"#)).unwrap();
        let c = compile(&prof(r#"{"name":"t","syscalls":{"allow":["write"]}}"#)).unwrap();
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = Profile::from_json(r#"{"name":"t","network":{"bind":[{"ports":[70000]}]}}"#).unwrap_err().to_string();
        assert!(e.contains("network.bind[0].ports[0]"), "{e}");
        assert!(e.contains("above 65535"), "{e}");
    }
}
