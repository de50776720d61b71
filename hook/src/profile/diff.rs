//! What one compiled profile allows that another does not (`warden profile diff`).
//!
//! Works on the compiled form, so it compares what the kernel would enforce (extends merged,
//! seccomp converted, port ranges joined), not how the files are written.
use warden_common::{profile_flags as pf, proto, PortRules};

use super::compile::{port_rules_text, Access, CompiledProfile};
use super::sysnames;

/// Lines describing what `b` allows that `a` does not.
pub fn allowed_by_b_not_a(a: &CompiledProfile, b: &CompiledProfile) -> Vec<String> {
    let mut out = Vec::new();

    // Syscalls.
    match (a.restricts(pf::SYSCALLS), b.restricts(pf::SYSCALLS)) {
        (true, false) => out.push("syscalls: every syscall (the layer is not restricted)".to_string()),
        (true, true) => {
            let extra: Vec<&str> = (0..a.header.syscalls.len() * 64)
                .filter(|n| bit(&b.header.syscalls, *n) && !bit(&a.header.syscalls, *n))
                .filter_map(sysnames::host_name)
                .collect();
            if !extra.is_empty() {
                out.push(format!("syscalls: {}", extra.join(", ")));
            }
            if b.restricts(pf::SYSCALLS_LOG_ONLY) && !a.restricts(pf::SYSCALLS_LOG_ONLY) {
                out.push("syscalls: calls outside the list run (default `log`, not `kill`)".to_string());
            }
        }
        _ => {}
    }

    // Files.
    match (&a.files, &b.files) {
        (Some(_), None) => out.push("files: any access to any file (the layer is not restricted)".to_string()),
        (Some(af), Some(bf)) => {
            for r in bf {
                // What `a` grants on this path: every rule covering it (a prefix rule of `a`
                // covers a prefix rule of `b` when it is a prefix of it).
                let granted = af.iter().filter(|x| x.covers(&r.path)).fold(0u8, |m, x| m | x.access.0);
                let extra = Access(r.access.0 & !granted);
                if extra.0 != 0 {
                    out.push(format!("files: {extra} {}", r.path));
                }
            }
        }
        _ => {}
    }

    // Network.
    match (a.restricts(pf::FAMILIES), b.restricts(pf::FAMILIES)) {
        (true, false) => out.push("network: everything (the layer is not restricted)".to_string()),
        (true, true) => {
            let fam: Vec<String> = (0..64)
                .filter(|n| b.header.families >> n & 1 == 1 && a.header.families >> n & 1 == 0)
                .map(super::family_name)
                .collect();
            if !fam.is_empty() {
                out.push(format!("socket families: {}", fam.join(", ")));
            }
            if b.restricts(pf::RAW_SOCKETS) && !a.restricts(pf::RAW_SOCKETS) {
                out.push("raw inet sockets".to_string());
            }
            let (pa, pb) = (a.protocols(), b.protocols());
            let more: Vec<&str> = pb.into_iter().filter(|p| *p != "raw" && !pa.contains(p)).collect();
            if !more.is_empty() {
                out.push(format!("protocols: {}", more.join(", ")));
            }
            match (a.restricts(pf::CONNECT), b.restricts(pf::CONNECT)) {
                (true, false) => out.push("connect: anywhere (not restricted)".to_string()),
                (true, true) => {
                    let a_rules = a.connect_rules();
                    for (net, br) in b.connect_rules() {
                        // `a`'s longest prefix containing `net` holds the ports `a` allows on
                        // every address of `net` (values are folded from wider prefixes).
                        let ar = a_rules
                            .iter()
                            .filter(|(an, _)| an.contains(&net))
                            .max_by_key(|(an, _)| an.prefix_len())
                            .map(|(_, r)| *r)
                            .unwrap_or_default();
                        if let Some(t) = subtract_text(&br, &ar) {
                            out.push(format!("connect: {net} {t}"));
                        }
                    }
                }
                _ => {}
            }
            match (&a.bind, &b.bind) {
                (Some(_), None) => out.push("bind: any port (not restricted)".to_string()),
                (Some(ar), Some(br)) => {
                    if let Some(t) = subtract_text(br, ar) {
                        out.push(format!("bind: {t}"));
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    out
}

fn bit(words: &[u64], n: usize) -> bool {
    words[n / 64] >> (n % 64) & 1 == 1
}

type Ranges = Vec<(u32, u32)>;

/// Ports per protocol (tcp, udp) of a rule table; `any` counts for both.
fn per_proto(r: &PortRules) -> [Ranges; 2] {
    let mut out: [Ranges; 2] = [Vec::new(), Vec::new()];
    for p in &r.rules[..(r.count as usize).min(r.rules.len())] {
        let range = (p.lo as u32, p.hi as u32);
        if p.proto != proto::UDP {
            out[0].push(range);
        }
        if p.proto != proto::TCP {
            out[1].push(range);
        }
    }
    out
}

/// `a` minus `b`, as sorted disjoint ranges.
fn minus(a: &Ranges, b: &Ranges) -> Ranges {
    let mut out = Vec::new();
    for &(lo, hi) in a {
        let mut pieces = vec![(lo, hi)];
        for &(blo, bhi) in b {
            pieces = pieces
                .into_iter()
                .flat_map(|(l, h)| {
                    let mut v = Vec::new();
                    if bhi < l || blo > h {
                        v.push((l, h));
                    } else {
                        if blo > l {
                            v.push((l, blo - 1));
                        }
                        if bhi < h {
                            v.push((bhi + 1, h));
                        }
                    }
                    v
                })
                .collect();
        }
        out.extend(pieces);
    }
    out.sort();
    out
}

fn ranges_text(r: &Ranges) -> String {
    r.iter()
        .map(|&(lo, hi)| match (lo, hi) {
            (0, 65535) => "all ports".to_string(),
            (l, h) if l == h => l.to_string(),
            (l, h) => format!("{l}-{h}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ports `b` allows that `a` does not, as text; None if none.
fn subtract_text(b: &PortRules, a: &PortRules) -> Option<String> {
    let (bp, ap) = (per_proto(b), per_proto(a));
    let tcp = minus(&bp[0], &ap[0]);
    let udp = minus(&bp[1], &ap[1]);
    match (tcp.is_empty(), udp.is_empty()) {
        (true, true) => None,
        _ if tcp == udp => Some(format!("tcp+udp {}", ranges_text(&tcp))),
        _ => {
            let mut parts = Vec::new();
            if !tcp.is_empty() {
                parts.push(format!("tcp {}", ranges_text(&tcp)));
            }
            if !udp.is_empty() {
                parts.push(format!("udp {}", ranges_text(&udp)));
            }
            Some(parts.join("; "))
        }
    }
}

/// One-line summary of a port table, for `show`.
pub fn ports(r: &PortRules) -> String {
    port_rules_text(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_subtraction() {
        assert_eq!(minus(&vec![(0, 100)], &vec![(10, 20), (50, 60)]), vec![(0, 9), (21, 49), (61, 100)]);
        assert_eq!(minus(&vec![(80, 80)], &vec![(0, 65535)]), vec![]);
        assert_eq!(minus(&vec![(80, 90)], &vec![]), vec![(80, 90)]);
    }
}
