//! profile::intersect (issue 16): the intersection of a baseline and a pod's profile allows
//! exactly what both allow, judged by the userspace twins of the kernel's own lookups
//! (enforcer::files for paths, the connect tries' longest prefix, the syscall bitmap). Here
//! rather than in the profile module: the twins live in `enforcer`, which depends on `profile`.
use ipnet::IpNet;
use proptest::prelude::*;
use warden::enforcer::files;
use warden::profile::intersect::{combined_name, intersect, longest};
use warden::profile::{compile, CompiledProfile, Profile};
use warden_common::{profile_flags as pf, proto};

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
    assert!(warden::profile::diff::allowed_by_b_not_a(&base, &i).is_empty());
    assert!(warden::profile::diff::allowed_by_b_not_a(&pod, &i).is_empty());
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
    c(&format!(r#"{{"name":"{name}","files":[{}],"network":{{"connect":[{}]}}}}"#, files.join(","), connect.join(",")))
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
