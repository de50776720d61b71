//! packaging/k8s/ against the daemon: every YAML document parses, and the DaemonSet's mounts,
//! the ConfigMap's config and profiles, and the containerd NRI snippets agree with what
//! `warden run` will look for (`Config::default()` and the config the ConfigMap ships).
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_yaml::Value;
use warden::config::Config;
use warden::profile::{self, SearchPath};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every document of every YAML file under packaging/k8s, with its file name.
fn documents() -> Vec<(String, Value)> {
    let dir = repo().join("packaging/k8s");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "yaml" || e == "yml")) {
        let text = std::fs::read_to_string(f).unwrap();
        for d in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(v.get("kind").is_some(), "{}: document without kind", f.display());
            docs.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    assert!(docs.len() >= 4, "expected Namespace, 2 ConfigMaps and the DaemonSet, got {}", docs.len());
    docs
}
fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// The config the DaemonSet runs with: the ConfigMap's config.toml, parsed by the daemon's own
/// parser (unknown keys or bad values fail here, not on a node).
fn shipped_config(docs: &[(String, Value)]) -> Config {
    let cm = find(docs, "ConfigMap", "warden-config");
    Config::from_toml(s(&cm["data"]["config.toml"])).expect("ConfigMap config.toml")
}

struct Mount {
    path: PathBuf,
    host: Option<PathBuf>,
    config_map: Option<String>,
    sub_path: Option<String>,
    read_only: bool,
}

fn mounts(docs: &[(String, Value)]) -> Vec<Mount> {
    let ds = find(docs, "DaemonSet", "warden");
    let pod = &ds["spec"]["template"]["spec"];
    let containers = pod["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let vols = pod["volumes"].as_sequence().unwrap();
    containers[0]["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            let vol =
                vols.iter().find(|v| v["name"] == m["name"]).unwrap_or_else(|| panic!("no volume {:?}", m["name"]));
            Mount {
                path: s(&m["mountPath"]).into(),
                host: vol["hostPath"]["path"].as_str().map(PathBuf::from),
                config_map: vol["configMap"]["name"].as_str().map(String::from),
                sub_path: m["subPath"].as_str().map(String::from),
                read_only: m["readOnly"].as_bool().unwrap_or(false),
            }
        })
        .collect()
}

/// The mount holding `p` (the longest mountPath that is a prefix of it).
fn mount_of<'a>(ms: &'a [Mount], p: &Path) -> Option<&'a Mount> {
    ms.iter().filter(|m| p.starts_with(&m.path)).max_by_key(|m| m.path.as_os_str().len())
}

#[test]
fn manifests_parse_and_have_no_rbac() {
    let docs = documents();
    for (file, d) in &docs {
        let kind = s(&d["kind"]);
        assert!(
            !matches!(kind, "ServiceAccount" | "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"),
            "{file}: {kind}: warden needs no API server access"
        );
        // Everything lives in warden's own namespace (never confined by it).
        if kind != "Namespace" {
            assert_eq!(s(&d["metadata"]["namespace"]), "warden-system", "{file}: {kind}");
        }
    }
    let pod = &find(&docs, "DaemonSet", "warden")["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], Value::Bool(false));
    assert_ne!(pod["hostPID"], Value::Bool(true), "warden never looks at /proc/<pid>");
    let sc = &pod["containers"][0]["securityContext"];
    assert_eq!(sc["privileged"], Value::Bool(false));
    // Same capability set as warden.service.
    let caps: Vec<&str> = sc["capabilities"]["add"].as_sequence().unwrap().iter().map(s).collect();
    assert_eq!(caps, ["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN"]);
    let unit = std::fs::read_to_string(repo().join("packaging/warden.service")).unwrap();
    let unit_caps = unit.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).expect("unit caps");
    let unit_caps: Vec<&str> = unit_caps.split_whitespace().map(|c| c.trim_start_matches("CAP_")).collect();
    assert_eq!(caps, unit_caps, "DaemonSet and warden.service keep the same capabilities");
}

#[test]
fn mounts_match_the_daemon_config() {
    let docs = documents();
    let cfg = shipped_config(&docs);
    let def = Config::default();
    // The ConfigMap keeps the daemon's defaults for every path (the package and the DaemonSet
    // then behave alike); a change here must come with a change of the mounts.
    assert_eq!(cfg.pin_dir, def.pin_dir);
    assert_eq!(cfg.nri.socket_path, def.nri.socket_path);
    assert_eq!(cfg.profile_dirs, def.profile_dirs);
    // warden's own pods must not be confined by it.
    let ds = find(&docs, "DaemonSet", "warden");
    assert_eq!(cfg.policy.own_namespace, s(&ds["metadata"]["namespace"]));

    let ms = mounts(&docs);
    let host_mount = |p: &Path, what: &str| {
        let m = mount_of(&ms, p).unwrap_or_else(|| panic!("{what} {} is not mounted", p.display()));
        let host = m.host.as_ref().unwrap_or_else(|| panic!("{what}: {} is not a hostPath", m.path.display()));
        assert_eq!(host, &m.path, "{what}: host path mounted at the same place");
        m
    };
    // Pins must be the host's bpffs, writable.
    let m = host_mount(&cfg.pin_dir, "pin_dir");
    assert!(!m.read_only, "pin_dir must be writable");
    assert_eq!(m.path, Path::new("/sys/fs/bpf"));
    // The NRI socket's folder (the folder, not the socket: containerd recreates the socket
    // when it restarts and warden reconnects).
    let m = host_mount(cfg.nri.socket_path.parent().unwrap(), "nri.socket_path");
    assert!(!m.read_only);
    // The control socket's folder: the root filesystem is read-only.
    assert_eq!(cfg.control_socket, def.control_socket);
    let m = host_mount(cfg.control_socket.parent().unwrap(), "control_socket");
    assert!(!m.read_only);
    // The host's cgroup2 tree (container cgroups) and securityfs (LSM list for the probe).
    host_mount(Path::new("/sys/fs/cgroup"), "cgroup2");
    host_mount(Path::new("/sys/kernel/security"), "securityfs");
    // The backstop hook runs on the host (runc executes it): the init container copies the
    // image's binary into a hostPath folder at the path the config names.
    let hook = cfg.nri.hook_binary.clone().expect("the DaemonSet's config names a host hook binary");
    assert!(cfg.nri.backstop);
    let init = &ds["spec"]["template"]["spec"]["initContainers"][0];
    let script = s(&init["command"][2]);
    assert!(script.ends_with(&format!("{}", hook.display())), "{script}");
    let dir = hook.parent().unwrap();
    let vol_name = init["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| Path::new(s(&m["mountPath"])) == dir)
        .map(|m| s(&m["name"]).to_string())
        .expect("the hook folder is mounted in the init container");
    let vol = ds["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| s(&v["name"]) == vol_name)
        .expect("its volume");
    assert_eq!(Path::new(s(&vol["hostPath"]["path"])), dir, "a hostPath at the same place");
    // The config file the container's args name, from the ConfigMap.
    let ctr = &ds["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = ctr["args"].as_sequence().unwrap().iter().map(s).collect();
    assert_eq!(args[..2], ["run", "--config"]);
    let m = mount_of(&ms, Path::new(args[2])).expect("config mounted");
    assert_eq!(m.path, Path::new(args[2]));
    assert_eq!((m.config_map.as_deref(), m.sub_path.as_deref()), (Some("warden-config"), Some("config.toml")));
    // Local profiles (first profile dir) from the profiles ConfigMap; the built-in folder comes
    // with the image and must not be shadowed by a mount.
    let m = mount_of(&ms, &cfg.profile_dirs[0]).expect("local profiles mounted");
    assert_eq!((m.path.as_path(), m.config_map.as_deref()), (cfg.profile_dirs[0].as_path(), Some("warden-profiles")));
    assert!(mount_of(&ms, Path::new("/usr/share/warden/profiles")).is_none());
}

#[test]
fn configmap_profiles_compile() {
    let docs = documents();
    let cm = find(&docs, "ConfigMap", "warden-profiles");
    let dir = tempfile::tempdir().unwrap();
    let data = cm["data"].as_mapping().unwrap();
    assert!(!data.is_empty());
    for (k, v) in data {
        std::fs::write(dir.path().join(s(k)), s(v)).unwrap();
    }
    // As on a node: local profiles first, then the built-in ones.
    let search = SearchPath::new(vec![dir.path().into(), repo().join("profiles")]);
    for (k, _) in data {
        let name = s(k).strip_suffix(".json").unwrap_or_else(|| panic!("{k:?}: profiles are NAME.json"));
        let loaded = profile::resolve::load_file(&dir.path().join(s(k)), &search).unwrap();
        let p = loaded.into_profile().unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(p.name, name, "the file name is what pods put in the annotation");
        profile::compile(&p).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
}

#[test]
fn packaged_config_and_containerd_snippets_match_defaults() {
    // /etc/warden/config.toml of the packages: every line commented, so the defaults, except
    // the one rule: annotations may not switch enforcement off (issue 16, secure by default).
    let text = std::fs::read_to_string(repo().join("packaging/config.toml")).unwrap();
    let packaged = Config::from_toml(&text).unwrap();
    let rules = &packaged.policy.rules;
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].namespaces, ["*"]);
    assert_eq!(rules[0].modes, [warden::enforcer::Mode::Enforce]);
    let mut without_rules = packaged.clone();
    without_rules.policy.rules.clear();
    assert_eq!(without_rules, Config::default());
    // ...and uncommented it is still valid and still the defaults (except the documented
    // default_profile and metrics_address examples).
    let setting = |l: &str| {
        l.starts_with('[')
            || l.split_once(" = ").is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    };
    let uncommented: Vec<&str> =
        text.lines().map(|l| l.strip_prefix("# ").filter(|l| setting(l)).unwrap_or(l)).collect();
    let uncommented = uncommented.join("\n");
    let mut c = Config::from_toml(&uncommented).expect("uncommented packaged config");
    c.policy.rules.clear();
    c.metrics_address = None; // documented example; off by default
    c.deny_lists.node_cgroup = None; // documented example; confined containers only by default
    assert_eq!(c, Config::default());

    let def = Config::default();
    for f in ["containerd-nri-1.7.toml", "containerd-nri-2.x.toml"] {
        let t: toml::Value =
            toml::from_str(&std::fs::read_to_string(repo().join("packaging/k8s").join(f)).unwrap()).unwrap();
        let nri = &t["plugins"]["io.containerd.nri.v1.nri"];
        assert_eq!(nri["disable"].as_bool(), Some(false), "{f}");
        assert_eq!(nri["socket_path"].as_str().map(Path::new), Some(def.nri.socket_path.as_path()), "{f}");
    }
}
