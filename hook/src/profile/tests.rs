//! Tests of parsing, validation, resolution and compilation (one per error path), property
//! tests, and the built-in profiles.
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use warden_common::{profile_flags, proto};

use super::*;

fn prof(json: &str) -> Profile {
    Profile::from_json(json).unwrap()
}

/// Messages of `check` with the given severity.
fn diags(json: &str, sev: Severity) -> Vec<String> {
    check(&prof(json)).into_iter().filter(|d| d.severity == sev).map(|d| d.to_string()).collect()
}

fn compile_err(json: &str) -> String {
    compile(&prof(json)).unwrap_err().to_string()
}

fn has(list: &[String], needle: &str) -> bool {
    list.iter().any(|l| l.contains(needle))
}

// ---- compile (kernel form) ----

#[test]
fn syscalls_compile_to_bitmap() {
    let c = compile(&prof(r#"{"name":"t","syscalls":{"allow":["read","write","exit_group"]}}"#)).unwrap();
    assert_eq!(c.allowed_syscalls(), vec!["read", "write", "exit_group"]);
    assert_eq!(c.header.flags, profile_flags::SYSCALLS);
}

#[test]
fn unknown_syscall_suggests() {
    let e = compile_err(r#"{"name":"t","syscalls":{"allow":["opnat"]}}"#);
    assert!(e.contains("syscalls.allow[0]: unknown syscall `opnat`"), "{e}");
    assert!(e.contains("`openat`"), "{e}");
}

#[test]
fn other_arch_names_are_notes_not_errors() {
    // `open` exists on x86_64 only, `renameat2` everywhere: a portable profile lists both.
    let notes = diags(r#"{"name":"t","syscalls":{"allow":["open","renameat2"]}}"#, Severity::Note);
    if sysnames::HOST_ARCH == "aarch64" {
        assert!(has(&notes, "`open` is not a syscall on aarch64"), "{notes:?}");
    } else {
        assert!(notes.is_empty(), "{notes:?}");
    }
    assert!(compile(&prof(r#"{"name":"t","syscalls":{"allow":["open"]}}"#)).is_ok());
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
    let e = compile_err(&j);
    assert!(e.contains("network.bind: 40 distinct port ranges"), "{e}");
    let c = compile(&prof(r#"{"name":"t","network":{"bind":[{"ports":[80,81,"82-90"]}]}}"#)).unwrap();
    assert_eq!(c.bind.unwrap().count, 1);
}

#[test]
fn connect_port_limit_counts_wider_cidrs() {
    let many: Vec<String> = (0..40).map(|i| (1000 + i * 2).to_string()).collect();
    let j = format!(r#"{{"name":"t","network":{{"connect":[{{"cidr":"10.0.0.0/8","ports":[{}]}}]}}}}"#, many.join(","));
    assert!(compile_err(&j).contains("network.connect: 10.0.0.0/8: 40 distinct port ranges"));
}

#[test]
fn families_default_excludes_packet() {
    let c = compile(&prof(r#"{"name":"t","network":{}}"#)).unwrap();
    assert!(c.families().contains(&"inet".to_string()));
    assert!(!c.families().contains(&"packet".to_string()));
    assert_eq!(c.header.flags & profile_flags::CONNECT, 0, "absent connect = unrestricted");
}

#[test]
fn unknown_family_is_an_error() {
    let e = compile_err(r#"{"name":"t","network":{"families":["unix","ipx"]}}"#);
    assert!(e.contains("network.families[1]: unknown family `ipx`"), "{e}");
}

#[test]
fn protocols_compile_to_bits_and_raw_to_its_flag() {
    use warden_common::protocol_bits;
    let c = compile(&prof(r#"{"name":"t","network":{}}"#)).unwrap();
    assert_eq!(c.header.protocols, 0, "absent: TCP and UDP only");
    assert!(c.protocols().is_empty());
    let c = compile(&prof(r#"{"name":"t","network":{"protocols":["icmp","icmpv6","sctp","raw"]}}"#)).unwrap();
    assert_eq!(c.header.protocols, protocol_bits::ICMP | protocol_bits::ICMPV6 | protocol_bits::SCTP);
    assert_ne!(c.header.flags & profile_flags::RAW_SOCKETS, 0, "`raw` is raw_sockets");
    assert_eq!(c.protocols(), vec!["icmp", "icmpv6", "sctp", "raw"]);
    let old = compile(&prof(r#"{"name":"t","network":{"raw_sockets":true}}"#)).unwrap();
    let new = compile(&prof(r#"{"name":"t","network":{"protocols":["raw"]}}"#)).unwrap();
    assert_eq!(old.hash, new.hash, "two spellings, one kernel state");
}

#[test]
fn unknown_protocol_is_an_error_naming_the_field() {
    let e = compile_err(r#"{"name":"t","network":{"protocols":["icmp","tcp","dccp"]}}"#);
    assert!(e.contains("network.protocols[1]: unknown protocol `tcp`"), "{e}");
    assert!(e.contains("network.protocols[2]: unknown protocol `dccp`"), "{e}");
    assert!(e.contains("known: icmp, icmpv6, sctp, udplite, mptcp, raw"), "{e}");
}

#[test]
fn protocols_merge_and_extend_as_a_union() {
    let a = prof(r#"{"name":"t","network":{"protocols":["sctp","icmp"]}}"#);
    let b = prof(r#"{"name":"t","network":{"protocols":["icmp","icmpv6"]}}"#);
    let c = prof(r#"{"name":"t","network":{}}"#);
    let u = merge::union(&[a.clone(), b, c], None).unwrap();
    assert_eq!(u.network.unwrap().protocols, vec!["icmp", "icmpv6", "sctp"]);
    let d = dir_with(&[
        ("base.json", r#"{"name":"base","network":{"protocols":["sctp"]}}"#),
        ("app.json", r#"{"name":"app","extends":["base"],"network":{"protocols":["icmp"]}}"#),
    ]);
    let p = Profile::from_file(&d.path().join("app.json")).unwrap();
    let c = compile(&p).unwrap();
    assert_eq!(c.protocols(), vec!["icmp", "sctp"]);
}

#[test]
fn hash_is_deterministic_and_content_sensitive() {
    let a = compile(&prof(r#"{"name":"t","syscalls":{"allow":["read"]}}"#)).unwrap();
    let b = compile(&prof(r#"{"name":"t","syscalls":{"allow":["read"]}}"#)).unwrap();
    let c = compile(&prof(r#"{"name":"t","syscalls":{"allow":["write"]}}"#)).unwrap();
    assert_eq!(a.hash, b.hash);
    assert_ne!(a.hash, c.hash);
    let f1 = compile(&prof(r#"{"name":"t","files":[{"path":"/tmp/","access":"rw"}]}"#)).unwrap();
    let f2 = compile(&prof(r#"{"name":"t","files":[{"path":"/tmp/","access":"r"}]}"#)).unwrap();
    let f3 = compile(&prof(r#"{"name":"t","files":[]}"#)).unwrap();
    let f4 = compile(&prof(r#"{"name":"t"}"#)).unwrap();
    assert_ne!(f1.hash, f2.hash);
    assert_ne!(f3.hash, f4.hash, "empty files section differs from an absent one");
}

#[test]
fn files_compile_sorted_and_joined() {
    let c = compile(&prof(
        r#"{"name":"t","files":[{"path":"/tmp/","access":"w"},{"path":"/etc/passwd","access":"r"},{"path":"/tmp/","access":"r"}]}"#,
    ))
    .unwrap();
    let f = c.files.unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].path.as_str(), f[0].prefix, f[0].access.to_string()), ("/etc/passwd", false, "r".into()));
    assert_eq!((f[1].path.as_str(), f[1].prefix, f[1].access.to_string()), ("/tmp/", true, "rw".into()));
    assert!(f[1].covers("/tmp/a/b") && !f[1].covers("/tmpx"));
}

// ---- parse errors ----

#[test]
fn parse_errors_name_the_field() {
    let e = Profile::from_json(r#"{"name":"t","network":{"bind":[{"ports":[70000]}]}}"#).unwrap_err().to_string();
    assert!(e.contains("network.bind[0].ports[0]"), "{e}");
    assert!(e.contains("above 65535"), "{e}");
}

#[test]
fn parse_error_paths() {
    let cases = [
        (r#"{"name":"t","files":[{"path":"/a","access":"r"},{"path":"/b"}]}"#, "files[1]", "missing field `access`"),
        (r#"{"name":"t","bogus":1}"#, "bogus", "unknown field `bogus`"),
        (r#"{"name":"t","syscalls":{"default":"die"}}"#, "syscalls.default", "unknown variant `die`"),
        (r#"{"name":"t","syscalls":{"allow":"read"}}"#, "syscalls.allow", "invalid type"),
        (r#"{"name":"t","network":{"connect":[{"cidr":"10.0.0.0/33"}]}}"#, "network.connect[0].cidr", ""),
        (r#"{"name":"t","network":{"bind":[{"ports":["90-80"]}]}}"#, "network.bind[0].ports[0]", "reversed"),
        (r#"{"name":"t","network":{"bind":[{"ports":["http"]}]}}"#, "network.bind[0].ports[0]", "not a port"),
        (
            r#"{"name":"t","network":{"bind":[{"ports":[80],"protocol":"sctp"}]}}"#,
            "network.bind[0].protocol",
            "unknown variant",
        ),
        (r#"{"name":"t","extends":"base"}"#, "extends", "invalid type"),
        (r#"{"description":"x"}"#, "", "missing field `name`"),
        (r#"{"name":"t""#, "", "EOF"),
        (r#"{"name":"t","syscalls":{"defaultAction":"SCMP_ACT_NOPE"}}"#, "syscalls.defaultAction", "unknown variant"),
        (
            r#"{"name":"t","syscalls":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"kernel":"1"}}]}}"#,
            "syscalls.syscalls[0].includes.kernel",
            "unknown field `kernel`",
        ),
        (r#"{"name":"t","syscalls":{"defaultAction":"SCMP_ACT_ERRNO","allow":["read"]}}"#, "syscalls", "mixes warden"),
        (r#"{"name":"t","syscalls":{"syscalls":[]}}"#, "syscalls", "no `defaultAction`"),
    ];
    for (json, path, msg) in cases {
        let e = Profile::parse(json, Some(Path::new("p.json"))).unwrap_err();
        assert_eq!(e.errors.len(), 1, "{json}");
        let d = &e.errors[0];
        assert_eq!(d.path, path, "{json}: {d}");
        assert!(d.message.contains(msg), "{json}: {d}");
        assert!(d.to_string().starts_with("p.json: "), "{d}");
    }
}

// ---- semantic errors (all collected) ----

#[test]
fn file_rule_errors_are_collected_with_paths() {
    let e = compile_err(
        r#"{"name":"t","files":[
            {"path":"/etc/","access":"r"},
            {"path":"etc/passwd","access":"r"},
            {"path":"/a/../b","access":"rw"},
            {"path":"/x","access":"rq"},
            {"path":"","access":""},
            {"path":"/a\u0000b","access":"r"}]}"#,
    );
    for expect in [
        "(6 errors)",
        "files[1].path: `etc/passwd` is relative",
        "files[2].path: `/a/../b` has a `..` component",
        "files[3].access: `q` is not an access letter",
        "files[4].path: empty path",
        "files[4].access: empty access",
        "files[5].path: path contains a NUL byte",
    ] {
        assert!(e.contains(expect), "missing {expect}:\n{e}");
    }
}

#[test]
fn file_limits() {
    let long = format!("/{}", "a".repeat(300));
    let e = compile_err(&format!(r#"{{"name":"t","files":[{{"path":"{long}","access":"r"}}]}}"#));
    assert!(e.contains("files[0].path: path is 301 bytes long; the limit is 251"), "{e}");
    let rules: Vec<String> = (0..1025).map(|i| format!(r#"{{"path":"/f{i}","access":"r"}}"#)).collect();
    let e = compile_err(&format!(r#"{{"name":"t","files":[{}]}}"#, rules.join(",")));
    assert!(e.contains("files: 1025 rules; the limit is 1024"), "{e}");
}

#[test]
fn name_errors() {
    assert!(compile_err(r#"{"name":""}"#).contains("name: empty name"));
    assert!(compile_err(r#"{"name":"a/b"}"#).contains("name: `a/b` is not a profile name"));
    assert!(compile_err(&format!(r#"{{"name":"{}"}}"#, "n".repeat(64))).contains("limit is 63"));
    assert!(compile_err(r#"{"name":"t","extends":["../x"]}"#).contains("extends[0]: `../x` is not a profile name"));
}

#[test]
fn compile_refuses_unresolved_extends() {
    assert!(compile_err(r#"{"name":"t","extends":["base"]}"#).contains("extends: not resolved"));
}

#[test]
fn several_sections_report_together() {
    let e = compile_err(
        r#"{"name":"t","syscalls":{"allow":["read","nope_call"]},"files":[{"path":"x","access":"r"}],"network":{"families":["ipx"]}}"#,
    );
    assert!(e.contains("(3 errors)"), "{e}");
}

// ---- warnings ----

#[test]
fn warnings_for_rules_that_defeat_the_purpose() {
    let w = diags(
        r#"{"name":"t",
            "syscalls":{"allow":["read","bpf","ptrace","mount","unshare","setns","init_module","kexec_load"]},
            "files":[{"path":"/","access":"rw"}],
            "network":{"families":["unix"],"connect":[{"cidr":"0.0.0.0/0"},{"cidr":"::/0","ports":["0-65535"]},{"cidr":"0.0.0.0/0","ports":[443]}]}}"#,
        Severity::Warning,
    );
    for n in ["bpf", "ptrace", "mount", "unshare", "setns", "init_module", "kexec_load"] {
        assert!(has(&w, &format!("allows `{n}`")), "{n}: {w:?}");
    }
    assert!(has(&w, "files[0]: makes `/` writable"), "{w:?}");
    assert!(has(&w, "network.connect[0]: allows connecting to every address (0.0.0.0/0) on every port"), "{w:?}");
    assert!(has(&w, "network.connect[1]: allows connecting to every address (::/0)"), "{w:?}");
    assert!(!has(&w, "network.connect[2]: allows"), "port 443 only is deliberate: {w:?}");
    assert!(has(&w, "network.connect[2]: 0.0.0.0/0 needs family `inet`"), "{w:?}");
    // Warnings do not stop compilation.
    assert!(compile(&prof(r#"{"name":"t","syscalls":{"allow":["ptrace"]}}"#)).is_ok());
}

// ---- seccomp inside a profile ----

#[test]
fn seccomp_as_syscalls_section() {
    let p = prof(
        r#"{"name":"t","syscalls":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
            {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}}"#,
    );
    let c = compile(&p).unwrap();
    let mut s = c.allowed_syscalls();
    s.sort();
    assert_eq!(s, vec!["personality", "read", "write"]);
    let d = check(&p);
    assert!(d.iter().any(|d| d.severity == Severity::Warning && d.message.contains("`personality`")), "{d:?}");
    assert!(d.iter().any(|d| d.severity == Severity::Note && d.message.contains("3 syscalls allowed")), "{d:?}");
    // It round-trips in the seccomp form.
    let again = Profile::from_json(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(again, p);
}

// ---- extends ----

/// A temporary folder holding `files`, removed when the returned guard drops.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("warden-profile-test-").tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

#[test]
fn extends_merges_rules() {
    let d = dir_with(&[
        (
            "base.json",
            r#"{"name":"base","description":"b","syscalls":{"default":"log","allow":["read"]},"network":{"families":["unix"],"bind":[]}}"#,
        ),
        ("mid.json", r#"{"name":"mid","extends":["base"],"files":[{"path":"/tmp/","access":"rw"}]}"#),
        (
            "app.json",
            r#"{"name":"app","extends":["mid","base"],"syscalls":{"allow":["write"]},"network":{"families":["inet"],"connect":[{"cidr":"127.0.0.1/32","ports":[80]}]}}"#,
        ),
    ]);
    let l = resolve::load_file(&d.path().join("app.json"), &SearchPath::new(vec![])).unwrap();
    assert_eq!(l.errors().count(), 0, "{:?}", l.diagnostics);
    assert_eq!(l.chain.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), vec!["base", "mid"]);
    let c = compile(&l.profile).unwrap();
    assert_eq!(c.allowed_syscalls(), vec!["read", "write"]);
    assert_eq!(c.header.flags & profile_flags::SYSCALLS_LOG_ONLY, 0, "the app's own default (kill) wins");
    assert_eq!(c.families(), vec!["unix", "inet"]);
    assert_eq!(c.bind.unwrap().count, 0, "base's empty bind restricts");
    assert_eq!(c.files.unwrap().len(), 1);
    assert_eq!(l.profile.description.as_deref(), Some("b"));
    // from_file does the same.
    assert_eq!(Profile::from_file(&d.path().join("app.json")).unwrap(), l.profile);
}

#[test]
fn extends_errors() {
    let d = dir_with(&[
        ("a.json", r#"{"name":"a","extends":["b"]}"#),
        ("b.json", r#"{"name":"b","extends":["c"]}"#),
        ("c.json", r#"{"name":"c","extends":["a"]}"#),
        ("self.json", r#"{"name":"self","extends":["self"]}"#),
        ("missing.json", r#"{"name":"missing","extends":["nowhere"]}"#),
        ("badbase.json", r#"{"name":"badbase","extends":["broken"]}"#),
        ("broken.json", r#"{"name":"broken","files":[{"path":"rel","access":"r"}]}"#),
        ("unparsable.json", r#"{"name":"unparsable","extends":["garbage"]}"#),
        ("garbage.json", r#"{"name":"#),
        ("renamed.json", r#"{"name":"other"}"#),
    ]);
    let sp = SearchPath::new(vec![]);
    let errs = |f: &str| -> Vec<String> {
        resolve::load_file(&d.path().join(f), &sp).unwrap().errors().map(|e| e.to_string()).collect()
    };
    let e = errs("a.json");
    assert!(
        has(&e, "extends[0]: extends cycle: b -> c -> a -> b") || has(&e, "extends cycle: a -> b -> c -> a"),
        "{e:?}"
    );
    assert!(has(&errs("self.json"), "extends cycle: self -> self"));
    let e = errs("missing.json");
    assert!(has(&e, "missing.json: extends[0]: no profile `nowhere` in the search path"), "{e:?}");
    let e = errs("badbase.json");
    assert!(has(&e, "broken.json: files[0].path: `rel` is relative"), "{e:?}");
    let e = errs("unparsable.json");
    assert!(has(&e, "garbage.json"), "{e:?}");
    let l = resolve::load_file(&d.path().join("renamed.json"), &sp).unwrap();
    assert!(l.diagnostics.iter().any(|d| d.message.contains("differs from the file name")));
    assert!(Profile::from_file(&d.path().join("a.json")).unwrap_err().to_string().contains("extends cycle"));
    assert!(Profile::from_file(&d.path().join("nothere.json")).unwrap_err().to_string().contains("nothere.json"));
}

#[test]
fn search_path_first_match_wins() {
    let d1 = dir_with(&[("base.json", r#"{"name":"base","syscalls":{"allow":["read"]}}"#)]);
    let d2 = dir_with(&[("base.json", r#"{"name":"base","syscalls":{"allow":["write"]}}"#)]);
    let sp = SearchPath::new(vec![d2.path().to_path_buf(), d1.path().to_path_buf()]);
    assert_eq!(sp.find("base").unwrap(), d2.path().join("base.json"));
    let l = resolve::load_spec("base", &sp).unwrap();
    assert_eq!(compile(&l.profile).unwrap().allowed_syscalls(), vec!["write"]);
    assert!(sp.find("zzz").unwrap_err().contains(&d1.path().display().to_string()));
}

// ---- built-in profiles ----

fn builtin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles")
}

#[test]
fn builtin_profiles_load_and_compile_cleanly() {
    let names = ["runtime-default", "deny-network", "readonly", "busybox-httpd", "client-one-address"];
    let sp = SearchPath::new(vec![builtin_dir()]);
    for n in names {
        let l = resolve::load_spec(n, &sp).unwrap();
        let bad: Vec<String> =
            l.diagnostics.iter().filter(|d| d.severity != Severity::Note).map(|d| d.to_string()).collect();
        assert!(bad.is_empty(), "{n}: {bad:?}");
        let c = compile(&l.profile).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(c.name, n);
    }
    let rd = compile(&resolve::load_spec("runtime-default", &sp).unwrap().profile).unwrap();
    let allowed = rd.allowed_syscalls();
    for s in [
        "execve",
        "clone",
        "wait4",
        "rt_sigaction",
        "read",
        "write",
        "exit_group",
        "socket",
        "connect",
        "bind",
        "listen",
        "accept4",
        "openat",
        "getdents64",
    ] {
        assert!(allowed.contains(&s), "runtime-default lacks {s}");
    }
    let httpd = compile(&resolve::load_spec("busybox-httpd", &sp).unwrap().profile).unwrap();
    assert!(httpd.bind.unwrap().allows(proto::TCP, 8080));
    assert!(!httpd.bind.unwrap().allows(proto::TCP, 8081));
    assert!(httpd.allowed_syscalls().contains(&"execve"), "extends runtime-default");
    let client = compile(&resolve::load_spec("client-one-address", &sp).unwrap().profile).unwrap();
    assert_eq!(client.connect4.len(), 1);
    let (len, addr, rules) = client.connect4[0];
    assert_eq!((len, addr), (32, [127, 0, 0, 1]));
    assert!(rules.allows(proto::TCP, 8080) && !rules.allows(proto::UDP, 8080) && !rules.allows(proto::TCP, 80));
    let dn = compile(&resolve::load_spec("deny-network", &sp).unwrap().profile).unwrap();
    assert_eq!(dn.families(), vec!["unix"]);
    assert_eq!(dn.bind.unwrap().count, 0);
    assert!(dn.connect4.is_empty() && dn.restricts(profile_flags::CONNECT));
    let ro = compile(&resolve::load_spec("readonly", &sp).unwrap().profile).unwrap();
    let writable: Vec<&str> = ro
        .files
        .as_ref()
        .unwrap()
        .iter()
        .filter(|f| f.access.contains(Access::WRITE))
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(writable, vec!["/dev/null", "/dev/shm/", "/tmp/"]);
}

#[test]
fn diff_reports_both_ways() {
    let sp = SearchPath::new(vec![builtin_dir()]);
    let a = compile(&resolve::load_spec("client-one-address", &sp).unwrap().profile).unwrap();
    let b = compile(&resolve::load_spec("busybox-httpd", &sp).unwrap().profile).unwrap();
    let ab = diff::allowed_by_b_not_a(&a, &b);
    let ba = diff::allowed_by_b_not_a(&b, &a);
    assert!(has(&ab, "bind: tcp 8080"), "{ab:?}");
    assert!(has(&ba, "connect: anywhere") || has(&ba, "connect: 127.0.0.1/32"), "{ba:?}");
    assert!(diff::allowed_by_b_not_a(&a, &a).is_empty());
    let wide =
        compile(&prof(r#"{"name":"w","network":{"connect":[{"cidr":"127.0.0.0/8","protocol":"any"}]}}"#)).unwrap();
    let narrow = compile(&prof(
        r#"{"name":"n","network":{"connect":[{"cidr":"127.0.0.1/32","ports":[8080],"protocol":"tcp"}]}}"#,
    ))
    .unwrap();
    assert!(diff::allowed_by_b_not_a(&wide, &narrow).is_empty());
    let d = diff::allowed_by_b_not_a(&narrow, &wide);
    assert!(has(&d, "connect: 127.0.0.0/8 tcp+udp all ports"), "{d:?}");
}

// ---- property tests ----

fn arb_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.-]{0,20}"
}

fn arb_path() -> impl Strategy<Value = String> {
    (prop::collection::vec("[a-zA-Z0-9_.-]{1,12}", 0..5), any::<bool>()).prop_map(|(comps, dir)| {
        let comps: Vec<String> = comps.into_iter().filter(|c| c != "." && c != "..").collect();
        let mut p = format!("/{}", comps.join("/"));
        if dir && p != "/" {
            p.push('/');
        }
        p
    })
}

fn arb_ports() -> impl Strategy<Value = Vec<PortRange>> {
    prop::collection::vec((any::<u16>(), 0u16..200), 1..4)
        .prop_map(|v| v.into_iter().map(|(lo, w)| PortRange { lo, hi: lo.saturating_add(w) }).collect())
}

fn arb_protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp), Just(Protocol::Any)]
}

fn arb_profile() -> impl Strategy<Value = Profile> {
    let names: Vec<&'static str> = sysnames::names_on(sysnames::HOST_ARCH).into_iter().take(300).collect();
    let syscalls = prop::option::of((any::<bool>(), prop::collection::vec(prop::sample::select(names), 0..30)))
        .prop_map(|o| {
            o.map(|(log, allow)| {
                SyscallsSpec::Allow(Syscalls {
                    default: if log { DefaultAction::Log } else { DefaultAction::Kill },
                    allow: allow.into_iter().map(String::from).collect(),
                })
            })
        });
    let files = prop::option::of(prop::collection::vec(
        (arb_path(), prop::sample::select(vec!["r", "w", "x", "rw", "rx", "rwx"]))
            .prop_map(|(path, a)| FileRuleSpec { path, access: a.into() }),
        0..8,
    ));
    let connect = prop::option::of(prop::collection::vec(
        (any::<[u8; 4]>(), 0u8..=32, prop::option::of(arb_ports()), arb_protocol()).prop_map(
            |(a, l, ports, protocol)| ConnectRule {
                cidr: ipnet::IpNet::V4(ipnet::Ipv4Net::new(a.into(), l).unwrap()),
                ports,
                protocol,
            },
        ),
        0..4,
    ));
    let bind = prop::option::of(prop::collection::vec(
        (arb_ports(), arb_protocol()).prop_map(|(ports, protocol)| BindRule { ports, protocol }),
        0..3,
    ));
    let families = prop::option::of(prop::collection::vec(
        prop::sample::select(FAMILIES.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>()),
        0..4,
    ));
    let network = prop::option::of(
        (
            connect,
            bind,
            families,
            any::<bool>(),
            prop::collection::vec(
                prop::sample::select(PROTOCOLS.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>()),
                0..3,
            ),
        )
            .prop_map(|(connect, bind, families, raw_sockets, protocols)| Network {
                connect,
                bind,
                families,
                raw_sockets,
                protocols,
            }),
    );
    (arb_name(), prop::option::of("[ -~]{0,30}"), prop::collection::vec(arb_name(), 0..3), syscalls, files, network)
        .prop_map(|(name, description, extends, syscalls, files, network)| Profile {
            name,
            description,
            extends,
            syscalls,
            files,
            network,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn parse_serialize_parse_is_stable(p in arb_profile()) {
        let text = serde_json::to_string_pretty(&p).unwrap();
        let again = Profile::from_json(&text).unwrap();
        prop_assert_eq!(&again, &p);
        prop_assert_eq!(serde_json::to_string_pretty(&again).unwrap(), text);
    }

    #[test]
    fn compile_is_deterministic_and_order_independent(mut p in arb_profile()) {
        p.extends.clear();
        let a = compile(&p);
        let b = compile(&p);
        match (a, b) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(&a, &b);
                // Rule order does not change the kernel state or its hash.
                let mut q = p.clone();
                if let Some(SyscallsSpec::Allow(s)) = &mut q.syscalls { s.allow.reverse(); }
                if let Some(f) = &mut q.files { f.reverse(); }
                if let Some(n) = &mut q.network {
                    if let Some(c) = &mut n.connect { c.reverse(); }
                    if let Some(b) = &mut n.bind { b.reverse(); }
                }
                let c = compile(&q).unwrap();
                prop_assert_eq!(a.hash, c.hash);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            _ => prop_assert!(false, "nondeterministic"),
        }
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,200}") {
        let _ = Profile::from_json(&s);
    }
}

// ---- limits and the near-linear algorithms ----

/// A profile with `n` file rules and `n` connect rules (distinct /32s).
fn oversize(n: usize) -> Profile {
    Profile {
        name: "big".into(),
        description: None,
        extends: Vec::new(),
        syscalls: None,
        files: Some((0..n).map(|i| FileRuleSpec { path: format!("/data/f{i}"), access: "r".into() }).collect()),
        network: Some(Network {
            connect: Some(
                (0..n)
                    .map(|i| ConnectRule {
                        cidr: format!("10.{}.{}.{}/32", i >> 16, (i >> 8) & 255, i & 255).parse().unwrap(),
                        ports: Some(vec![PortRange { lo: 443, hi: 443 }]),
                        protocol: Protocol::Tcp,
                    })
                    .collect(),
            ),
            ..Network::default()
        }),
    }
}

#[test]
fn oversize_profiles_are_refused_with_the_limit_only() {
    let p = oversize(200_000);
    let errors: Vec<String> = check(&p).iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
    // The counts, nothing per rule: no rule was looked at.
    assert_eq!(
        errors,
        ["files: 200000 rules; the limit is 1024", "network.connect: 200000 rules; the limit is 1024"],
        "{errors:?}"
    );
    let e = compile(&p).unwrap_err().to_string();
    assert!(e.contains("files: 200000 rules; the limit is 1024"), "{e}");
    assert!(e.contains("network.connect: 200000 rules; the limit is 1024"), "{e}");
    // Through resolution too: refused the same way, its bases not looked for.
    let mut q = p.clone();
    q.extends = vec!["absent".into()];
    let l = resolve::resolve(q, None, &SearchPath::new(vec![PathBuf::from("/nonexistent")]));
    let errors: Vec<String> = l.errors().map(|d| d.to_string()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(l.chain.is_empty() && l.profile.extends.is_empty());
    // Each limit on its own, one past it.
    let one_over = |f: &dyn Fn(&mut Profile)| {
        let mut p = prof(r#"{"name":"t"}"#);
        f(&mut p);
        compile(&p).unwrap_err().to_string()
    };
    let e = one_over(&|p| p.files = oversize(compile::MAX_CONNECT_RULES + 1).files);
    assert!(e.contains("files: 1025 rules; the limit is 1024"), "{e}");
    let e = one_over(&|p| p.network = oversize(compile::MAX_CONNECT_RULES + 1).network);
    assert!(e.contains("network.connect: 1025 rules; the limit is 1024"), "{e}");
    let e = one_over(&|p| {
        let every: Vec<PortRange> = (0..65).map(|i| PortRange { lo: i * 2, hi: i * 2 }).collect();
        let rules = (0..1024)
            .map(|i| ConnectRule {
                cidr: format!("10.0.{}.{}/32", i >> 8, i & 255).parse().unwrap(),
                ports: Some(every.clone()),
                protocol: Protocol::Any,
            })
            .collect();
        p.network = Some(Network { connect: Some(rules), ..Network::default() });
    });
    assert!(e.contains("network.connect: 66560 port entries; the limit is 65536"), "{e}");
    let e = one_over(&|p| {
        let rules = (0..1025).map(|_| BindRule { ports: vec![PortRange::ALL], protocol: Protocol::Tcp }).collect();
        p.network = Some(Network { bind: Some(rules), ..Network::default() });
    });
    assert!(e.contains("network.bind: 1025 rules; the limit is 1024"), "{e}");
    let e = one_over(&|p| {
        let rules = vec![BindRule { ports: vec![PortRange::ALL; 65537], protocol: Protocol::Tcp }];
        p.network = Some(Network { bind: Some(rules), ..Network::default() });
    });
    assert!(e.contains("network.bind: 65537 port entries; the limit is 65536"), "{e}");
    let e = one_over(&|p| {
        p.syscalls =
            Some(SyscallsSpec::Allow(Syscalls { default: DefaultAction::Kill, allow: vec!["read".into(); 4097] }))
    });
    assert!(e.contains("syscalls.allow: 4097 names; the limit is 4096"), "{e}");
    let rule = |names: Vec<String>| seccomp::Rule {
        names,
        name: None,
        action: seccomp::Action::Allow,
        errno_ret: None,
        args: Vec::new(),
        comment: None,
        includes: None,
        excludes: None,
    };
    let sp = |rules: Vec<seccomp::Rule>| seccomp::SeccompProfile {
        default_action: seccomp::Action::Errno,
        default_errno_ret: None,
        architectures: None,
        arch_map: None,
        flags: None,
        listener_path: None,
        listener_metadata: None,
        syscalls: rules,
        extra: Default::default(),
    };
    let e = one_over(&|p| p.syscalls = Some(SyscallsSpec::Seccomp(sp(vec![rule(vec!["read".into()]); 4097]))));
    assert!(e.contains("syscalls.syscalls: 4097 rules; the limit is 4096"), "{e}");
    let e = one_over(&|p| p.syscalls = Some(SyscallsSpec::Seccomp(sp(vec![rule(vec!["read".into(); 3000]); 2]))));
    assert!(e.contains("syscalls.syscalls: 6000 syscall names; the limit is 4096"), "{e}");
}

#[test]
fn a_profile_at_every_limit_compiles() {
    let ports: Vec<PortRange> = (0..32).map(|k| PortRange { lo: 1000 + 3 * k, hi: 1001 + 3 * k }).collect();
    let mut p = oversize(0);
    p.files = Some(
        (0..1024)
            .map(|i| match i % 4 {
                0 => FileRuleSpec { path: format!("/srv/d{}/", i / 4), access: "r".into() },
                _ => FileRuleSpec { path: format!("/srv/d{}/f{i}", i / 4), access: "rw".into() },
            })
            .collect(),
    );
    let connect = (0..1024)
        .map(|i| ConnectRule {
            cidr: if i % 2 == 0 { format!("10.{}.{}.0/24", i >> 8, i & 255) } else { format!("fd00:{i:x}::/64") }
                .parse()
                .unwrap(),
            ports: Some(ports.clone()),
            protocol: Protocol::Tcp,
        })
        .collect();
    p.network = Some(Network {
        connect: Some(connect),
        bind: Some(vec![BindRule { ports: ports.clone(), protocol: Protocol::Tcp }]),
        ..Network::default()
    });
    p.syscalls = Some(SyscallsSpec::Allow(Syscalls {
        default: DefaultAction::Kill,
        allow: sysnames::names_on(sysnames::HOST_ARCH).into_iter().map(String::from).collect(),
    }));
    let c = compile(&p).unwrap();
    assert_eq!(c.connect4.len() + c.connect6.len(), 1024);
    assert!(c.connect4.iter().all(|(_, _, r)| r.count == 32));
    assert_eq!(c.files.as_ref().map(Vec::len), Some(1024));
}

/// Small deterministic generator (xorshift64*) for the comparisons below.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The connect compilation before it was made near-linear (O(rules x CIDRs)), kept verbatim as
/// the reference.
fn connect_entries_reference(rules: &[ConnectRule]) -> Vec<(ipnet::IpNet, Result<warden_common::PortRules, String>)> {
    use std::collections::BTreeSet;
    fn port_rules(ranges: &[(Protocol, PortRange)]) -> Result<warden_common::PortRules, String> {
        use warden_common::{PortRule, PortRules, MAX_PORT_RULES};
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
            return Err(format!(
                "{} distinct port ranges (counting those of wider CIDRs containing it); the kernel table holds {MAX_PORT_RULES}: join ports into ranges",
                merged.len()
            ));
        }
        let mut out = PortRules::default();
        for (i, (p, lo, hi)) in merged.iter().enumerate() {
            out.rules[i] = PortRule { lo: *lo, hi: *hi, proto: *p, _pad: [0; 3] };
        }
        out.count = merged.len() as u32;
        Ok(out)
    }
    let flat: Vec<(ipnet::IpNet, Protocol, Vec<PortRange>)> =
        rules.iter().map(|r| (r.cidr.trunc(), r.protocol, r.ports.clone().unwrap_or(vec![PortRange::ALL]))).collect();
    let nets: BTreeSet<ipnet::IpNet> = flat.iter().map(|(n, _, _)| *n).collect();
    let mut out = Vec::new();
    for net in nets {
        let mut ranges = Vec::new();
        for (other, proto, ports) in &flat {
            if other.contains(&net) {
                ranges.extend(ports.iter().map(|p| (*proto, *p)));
            }
        }
        out.push((net, port_rules(&ranges)));
    }
    out
}

fn random_connect_rules(rng: &mut Rng) -> Vec<ConnectRule> {
    // Few base addresses and all prefix lengths: many nested, equal and disjoint CIDRs.
    let bases4: [[u8; 4]; 3] = [[10, 1, 2, 3], [10, 1, 200, 7], [192, 168, 0, 1]];
    let bases6: [u128; 2] = [0xfd00_0000_0000_0000_0000_0000_0000_0001, 0xfd00_0000_0000_8000_0000_0000_0000_0001];
    let n = rng.below(40) as usize;
    (0..n)
        .map(|_| {
            let cidr = if rng.below(4) == 0 {
                let a = bases6[rng.below(2) as usize];
                ipnet::IpNet::V6(ipnet::Ipv6Net::new(a.into(), rng.below(129) as u8).unwrap())
            } else {
                let a = bases4[rng.below(3) as usize];
                ipnet::IpNet::V4(
                    ipnet::Ipv4Net::new(a.into(), [0, 8, 16, 17, 24, 31, 32][rng.below(7) as usize]).unwrap(),
                )
            };
            let ports = (rng.below(5) != 0).then(|| {
                (0..1 + rng.below(12))
                    .map(|_| {
                        let lo = if rng.below(3) == 0 { rng.below(65536) as u16 } else { 1000 + rng.below(60) as u16 };
                        PortRange { lo, hi: lo.saturating_add(rng.below(4) as u16) }
                    })
                    .collect()
            });
            let protocol = [Protocol::Tcp, Protocol::Udp, Protocol::Any][rng.below(3) as usize];
            ConnectRule { cidr, ports, protocol }
        })
        .collect()
}

#[test]
fn connect_entries_match_the_quadratic_reference() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut errors, mut entries) = (0, 0);
    for _ in 0..3000 {
        let rules = random_connect_rules(&mut rng);
        let new: Vec<(ipnet::IpNet, Result<warden_common::PortRules, String>)> =
            compile::connect_entries(&rules).into_iter().map(|(n, r)| (n, r.map_err(|e| e.to_string()))).collect();
        let old = connect_entries_reference(&rules);
        assert_eq!(new, old, "{rules:?}");
        errors += old.iter().filter(|(_, r)| r.is_err()).count();
        entries += old.len();
    }
    // The inputs exercised both outcomes.
    assert!(errors > 100 && entries > 10 * errors, "{errors} errors in {entries} entries");
}

/// `resolve::merge` before it used sets: first occurrences kept, in order.
#[test]
fn merge_keeps_first_occurrences_in_order() {
    let mut rng = Rng(7);
    for _ in 0..300 {
        let mut profiles = Vec::new();
        for k in 0..3 {
            let mut p = oversize(0);
            p.name = format!("p{k}");
            p.files = (rng.below(4) != 0).then(|| {
                (0..rng.below(30))
                    .map(|_| FileRuleSpec {
                        path: format!("/d{}/", rng.below(8)),
                        access: ["r", "w", "rw"][rng.below(3) as usize].into(),
                    })
                    .collect()
            });
            let rules = random_connect_rules(&mut rng).into_iter().map(|mut r| {
                r.cidr = r.cidr.trunc();
                r
            });
            p.network = Some(Network { connect: Some(rules.collect()), ..Network::default() });
            profiles.push(p);
        }
        let bases: Vec<&Profile> = profiles[..2].iter().collect();
        let m = resolve::merge(&bases, &profiles[2]);
        let mut files: Option<Vec<FileRuleSpec>> = None;
        let mut connect: Option<Vec<ConnectRule>> = None;
        for p in &profiles {
            if let Some(f) = &p.files {
                let v = files.get_or_insert_with(Vec::new);
                for r in f {
                    if !v.contains(r) {
                        v.push(r.clone());
                    }
                }
            }
            let v = connect.get_or_insert_with(Vec::new);
            for r in p.network.as_ref().unwrap().connect.as_ref().unwrap() {
                if !v.contains(r) {
                    v.push(r.clone());
                }
            }
        }
        assert_eq!(m.files, files);
        assert_eq!(m.network.unwrap().connect, connect);
    }
}

#[test]
fn extends_depth_is_limited() {
    let depth = resolve::MAX_EXTENDS_DEPTH + 1;
    let files: Vec<(String, String)> = (0..=depth)
        .map(|i| {
            let ext = if i < depth { format!(r#","extends":["p{}"]"#, i + 1) } else { String::new() };
            (format!("p{i}.json"), format!(r#"{{"name":"p{i}"{ext}}}"#))
        })
        .collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let dir = dir_with(&refs);
    let search = SearchPath::new(vec![dir.path().to_path_buf()]);
    let l = resolve::load_spec("p0", &search).unwrap();
    let errors: Vec<String> = l.errors().map(|d| d.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("`p0` -> ... -> `p33`: 33 levels of extends; the limit is 32"), "{errors:?}");
    // At the limit: fine.
    let l = resolve::load_spec("p1", &search).unwrap();
    assert_eq!(l.errors().count(), 0);
    assert_eq!(l.chain.len(), 32);
}
