use warden_common::{kind, LearnFileUse, LearnInfo, LearnKey, LEARN_FILES_PER_CGROUP, LEARN_ITEMS_PER_CGROUP};

use super::record::{AF_INET, AF_INET6};
use super::*;
use crate::profile::merge::union;
use crate::profile::{PortRange, Profile, Protocol, SyscallsSpec};

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
    GenerateOptions { name: "t".into(), extends: vec![], source: "test".into(), collapse_dir_files: COLLAPSE_DIR_FILES }
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
    assert_eq!(rules(&ab), vec![("/bin/sh".to_string(), "x".to_string()), ("/data/x".to_string(), "rw".to_string())]);
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
    let a = generate(&learned(vec![key(kind::CONNECT, AF_INET, 6, 80, &[127, 0, 0, 1])], &["read"]), &opts()).profile;
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
    let open =
        Profile { name: "t".into(), description: None, extends: vec![], syscalls: None, files: None, network: None };
    assert!(union(&[ab.clone(), open], None).unwrap().syscalls.is_none());
    assert!(union(&[a, Profile { name: "other".into(), ..b }], None).is_err(), "names differ");
}

#[test]
fn container_names() {
    assert_eq!(container_profile_name("default", "web-1", "app"), "default_web-1_app");
    assert_eq!(container_profile_name("NS", "a/b", "c"), "ns_a-b_c");
    assert!(container_profile_name("x", &"p".repeat(100), "c").len() <= 63);
}

#[test]
fn protocols_seen_at_socket_creation_are_generated() {
    // SOCKET items from sock_create: port = socket type, proto = resolved IPPROTO.
    let items = vec![
        key(kind::SOCKET, AF_INET, 6, 1, &[]),   // TCP: needs no entry
        key(kind::SOCKET, AF_INET, 17, 2, &[]),  // UDP: needs no entry
        key(kind::SOCKET, AF_INET, 1, 2, &[]),   // ICMP ping socket
        key(kind::SOCKET, AF_INET6, 58, 2, &[]), // ICMPv6 ping socket
        key(kind::SOCKET, AF_INET, 132, 1, &[]), // SCTP
        key(kind::SOCKET, AF_INET, 115, 2, &[]), // L2TP: no profile name
        key(kind::SOCKET, AF_INET, 1, 3, &[]),   // raw ICMP: raw, not icmp
        key(kind::BIND, AF_INET, 6, 0, &[0; 4]), // a listener on an unbound socket
    ];
    let g = generate(&learned(items, &["read"]), &opts());
    let c = crate::profile::compile(&g.profile).unwrap();
    let n = g.profile.network.as_ref().unwrap();
    assert_eq!(n.protocols, vec!["icmp", "icmpv6", "sctp"]);
    assert!(n.raw_sockets);
    assert_eq!(c.protocols(), vec!["icmp", "icmpv6", "sctp", "raw"]);
    assert!(g.notes.iter().any(|l| l.contains("inet protocol 115 has no profile name")), "{:?}", g.notes);
    let b = n.bind.as_ref().unwrap();
    assert!(b.iter().any(|r| r.protocol == Protocol::Tcp && r.ports.contains(&PortRange { lo: 0, hi: 0 })), "{b:?}");
}

/// Issue 23: a workload that serves on a port the kernel chose (bind port 0) and connects to
/// it gets a connect rule that follows the kernel's choice on that loopback address (the
/// ephemeral range), not the run's number; connects elsewhere, or to loopback ports that were
/// not its own kernel-chosen listeners, stay exact.
#[test]
fn connects_to_own_kernel_chosen_listeners_follow_the_kernel_not_the_run() {
    use warden_common::learn_kind::KERNEL_CHOSEN_LISTENER;
    let items = vec![
        key(kind::BIND, AF_INET, 6, 0, &[127, 0, 0, 1]),
        key(KERNEL_CHOSEN_LISTENER, AF_INET, 6, 36109, &[127, 0, 0, 1]),
        key(kind::CONNECT, AF_INET, 6, 36109, &[127, 0, 0, 1]),
        // Same port on another address (not loopback): someone else's, kept exact.
        key(kind::CONNECT, AF_INET, 6, 36109, &[10, 0, 0, 1]),
        // A loopback port that was not the workload's own kernel-chosen listener: exact.
        key(kind::CONNECT, AF_INET, 6, 45000, &[127, 0, 0, 1]),
        // Own listener port but the connect is UDP: another protocol, exact.
        key(kind::SENDMSG, AF_INET, 17, 36109, &[127, 0, 0, 1]),
    ];
    let g = generate(&learned(items, &["read"]), &opts());
    crate::profile::compile(&g.profile).unwrap();
    let c = g.profile.network.as_ref().unwrap().connect.clone().unwrap();
    let find = |cidr: &str, p: Protocol| c.iter().find(|r| r.cidr.to_string() == cidr && r.protocol == p).cloned();
    assert_eq!(find("127.0.0.1/32", Protocol::Tcp).unwrap().ports, Some(vec![EPHEMERAL]), "{c:?}");
    assert_eq!(find("10.0.0.1/32", Protocol::Tcp).unwrap().ports, Some(vec![PortRange { lo: 36109, hi: 36109 }]));
    assert_eq!(find("127.0.0.1/32", Protocol::Udp).unwrap().ports, Some(vec![PortRange { lo: 36109, hi: 36109 }]));
    let desc = g.profile.description.unwrap();
    assert!(desc.contains("kernel's choice for the workload's own listener") && desc.contains("36109"), "{desc}");
    // The bind rule keeps port 0 (the kernel chooses), never the range.
    let b = g.profile.network.unwrap().bind.unwrap();
    assert_eq!(b[0].ports, vec![PortRange { lo: 0, hi: 0 }]);

    // Without the listener evidence the same connect stays exact (nothing is guessed).
    let g = generate(&learned(vec![key(kind::CONNECT, AF_INET, 6, 36109, &[127, 0, 0, 1])], &[]), &opts());
    let c = g.profile.network.unwrap().connect.unwrap();
    assert_eq!(c[0].ports, Some(vec![PortRange { lo: 36109, hi: 36109 }]));
    // An IPv6 loopback client of an IPv6 listener follows the same rule.
    let g = generate(
        &learned(
            vec![
                key(KERNEL_CHOSEN_LISTENER, AF_INET6, 6, 40001, &std::net::Ipv6Addr::LOCALHOST.octets()),
                key(kind::CONNECT, AF_INET6, 6, 40001, &std::net::Ipv6Addr::LOCALHOST.octets()),
            ],
            &[],
        ),
        &opts(),
    );
    let c = g.profile.network.unwrap().connect.unwrap();
    assert_eq!((c[0].cidr.to_string(), c[0].ports.clone()), ("::1/128".to_string(), Some(vec![EPHEMERAL])));
}

#[test]
fn generated_names_are_told_from_plain_ones() {
    for n in
        ["tmpk2j3_x9a", "tmpabcdefgh", "tmp.Xy3kQ9aBc1", "sess_8f3a2b", "AbCdEf", "redis-a1b2c3.sock", "f81d4fae7dec"]
    {
        assert!(looks_generated(n), "{n} looks generated");
    }
    // Numbers alone are not evidence (lsm.rs's fixture folder /tmp/warden-lsm-<pid> must stay
    // exact: a first version that took 3 digits for a pid widened its rules to /tmp/).
    for n in
        ["db.sqlite", "nginx.conf", "cache", "a1", "x-y-z", "README", "index.html", "tmp", "4711", "warden-lsm-123"]
    {
        assert!(!looks_generated(n), "{n} is a plain name");
    }
    assert_eq!(temp_name_dir("/tmp/tmpk2j3_x9a/db.sqlite").as_deref(), Some("/tmp/"));
    assert_eq!(temp_name_dir("/tmp/app/sess_8f3a2b").as_deref(), Some("/tmp/app/"));
    assert_eq!(temp_name_dir("/run/app/a1b2c3.sock").as_deref(), Some("/run/app/"));
    assert_eq!(temp_name_dir("/tmp/warden-lsm-123/rw/b"), None);
    assert_eq!(temp_name_dir("/tmp/app/db.sqlite"), None, "plain names stay exact");
    assert_eq!(temp_name_dir("/etc/tmpk2j3_x9a"), None, "only under the temp folders");
    assert_eq!(temp_name_dir("/tmpx/tmpk2j3_x9a"), None, "a folder boundary, not a string prefix");
}

/// Temp names of three runs give one rule, the folder that holds them, with the uses seen,
/// stated in the description; fixed names beside them stay exact.
#[test]
fn temp_names_become_the_folder_that_holds_them() {
    let mut l = learned(vec![], &[]);
    l.files = Some(vec![
        used("/tmp/tmpk2j3_x9a/", "w"),
        used("/tmp/tmpk2j3_x9a/db.sqlite", "rw"),
        used("/tmp/tmpk2j3_x9a/db.sqlite-journal", "rw"),
        used("/tmp/fixed.conf", "r"),
        used("/usr/bin/ls", "rx"),
    ]);
    let g = generate(&l, &opts());
    crate::profile::compile(&g.profile).unwrap();
    let r = rules(&g.profile);
    assert!(r.contains(&("/tmp/".to_string(), "rw".to_string())), "{r:?}");
    assert!(!r.iter().any(|(p, _)| p.contains("tmpk2j3")), "no run's own name is kept: {r:?}");
    assert!(g.profile.description.unwrap().contains("generated name"));
}

/// Issue 23 item 3: what each learning run added, and the verdict that says whether to keep
/// learning; carried across folds (the daemon folds each run into the file it wrote before).
#[test]
fn stability_says_when_runs_still_add_items() {
    use super::stability::{added_per_run, fold_into, quiet_in, runs_in, verdict, ONE_RUN};
    let run = |sc: &[&str], port: u16| {
        generate(&learned(vec![key(kind::CONNECT, AF_INET, 6, port, &[10, 0, 0, 1])], sc), &opts()).profile
    };
    let (a, b, c) = (run(&["read"], 80), run(&["read", "setsid"], 80), run(&["read"], 80));
    let per = added_per_run(&[a.clone(), b.clone(), c.clone()]).unwrap();
    assert!(per[1].added.iter().any(|l| l.contains("setsid")), "{:?}", per[1].added);
    assert!(per[2].added.is_empty(), "{:?}", per[2].added);
    let v = verdict(&[a.clone(), b.clone(), c.clone()], &per);
    assert!(v.starts_with("Learn runs: 3; stable: the last 1 run(s)"), "{v}");
    // The run that adds is last: not stable, and it says what was new.
    let per = added_per_run(&[a.clone(), c.clone(), b.clone()]).unwrap();
    let v = verdict(&[a.clone(), c.clone(), b.clone()], &per);
    assert!(v.contains("NOT STABLE") && v.contains("setsid"), "{v}");
    // A new destination counts as much as a syscall.
    let d = run(&["read"], 443);
    let per = added_per_run(&[a.clone(), d.clone()]).unwrap();
    assert!(per[1].added.iter().any(|l| l.contains("10.0.0.1")), "{:?}", per[1].added);

    // Folding run by run, as the daemon does: counts and quiet runs carry over.
    let first = super::stability::with_verdict(a.clone(), ONE_RUN);
    assert_eq!(runs_in(&first), 1);
    let (two, notes) = fold_into(first, b.clone()).unwrap();
    assert!(notes.iter().any(|n| n.contains("added") && n.contains("setsid")), "{notes:?}");
    assert_eq!(runs_in(&two), 2);
    let (three, _) = fold_into(two, c.clone()).unwrap();
    let (four, notes) = fold_into(three, a.clone()).unwrap();
    assert_eq!((runs_in(&four), quiet_in(&four)), (4, 2), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("stable: the last 2 run(s)")), "{notes:?}");
    let Some(crate::profile::SyscallsSpec::Allow(s)) = &four.syscalls else { panic!() };
    assert!(s.allow.contains(&"setsid".to_string()), "the fold is the union");
    assert_eq!(four.description.as_deref().unwrap().lines().filter(|l| l.starts_with("Learn runs:")).count(), 1);
    let (five, _) = fold_into(four.clone(), d).unwrap();
    assert_eq!((runs_in(&five), quiet_in(&five)), (5, 0));
}
