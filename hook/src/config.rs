//! The daemon's configuration file (`/etc/warden/config.toml`). Every key is optional; unknown
//! keys are errors (a misspelt `fail_open` must not silently keep the default).
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::policy::PolicyConfig;

pub const DEFAULT_CONFIG: &str = "/etc/warden/config.toml";
/// The daemon's control socket (`control_socket`; the CLI's `--socket`).
pub const DEFAULT_SOCKET: &str = "/run/warden/warden.sock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nri: NriConfig,
    /// Profile folders, searched in order: the first holding `<name>.json` wins, so local
    /// profiles (/etc/warden/profiles) come before the built-in ones.
    pub profile_dirs: Vec<PathBuf>,
    pub policy: PolicyConfig,
    /// On a refused policy (unknown or invalid profile, missing kernel layer), let the
    /// container start unconfined with a loud warning instead of failing it. Off by default.
    pub fail_open: bool,
    /// bpffs folder of the pinned state.
    pub pin_dir: PathBuf,
    /// `text` or `json`.
    pub log_format: String,
    /// Release every confined container when the daemon stops (default: enforcement stays).
    pub release_on_exit: bool,
    /// Where a container confined in learn mode gets its generated profile when it stops
    /// (before its record is released): `<namespace>_<pod>_<container>.json`, the profile of
    /// the same name. Add this folder to `profile_dirs` to enforce it by that name.
    pub learn_dir: PathBuf,
    /// Generated profiles: a directory with more than this many distinct entries used becomes
    /// one `dir/` prefix rule.
    pub learn_collapse_dir_files: usize,
    /// The control socket (`warden status`, `warden events`, `warden oci-hook`): root only,
    /// its folder is made 0700 and the socket 0600 (see control/server.rs).
    pub control_socket: PathBuf,
    /// Denial log lines per second per container (0: unlimited); over it lines are counted and
    /// one line per second says how many were suppressed.
    pub log_rate_limit: u32,
    /// `host:port` for Prometheus' `GET /metrics` (e.g. "127.0.0.1:9464"); off when unset.
    pub metrics_address: Option<String>,
    /// Reload profiles when a file in `profile_dirs` changes (SIGHUP always reloads).
    pub watch_profiles: bool,
    /// After loading, keep only the capabilities confining new containers needs (ops::privs).
    pub drop_capabilities: bool,
    /// Seconds the node-wide hooks (sys_enter, the BPF-LSM groups) stay attached after the
    /// last container that needed them is gone (0: detach at once). Each attach and detach
    /// rewrites kernel text on every CPU; a node where containers come and go keeps them
    /// instead. An idle attached sys_enter costs every process ~0.1 us per syscall, so this is
    /// bounded rather than forever. See enforcer::attach::SharedHook.
    pub hook_idle_detach_seconds: u64,
    /// Node-wide deny lists (crate::denylist).
    pub deny_lists: DenyListsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DenyListsConfig {
    /// Folder of list files: one address or CIDR per line (crate::denylist::parse). A missing
    /// folder holds no lists.
    pub dir: PathBuf,
    /// Also apply the lists to every container below this cgroup, confined or not (a path
    /// below the cgroup2 mount, e.g. "/kubepods.slice" or "/kubepods"; never "/": warden's own
    /// service and the node's other services are not below the pods' cgroup).
    pub node_cgroup: Option<PathBuf>,
    /// Reload when a file in `dir` changes (SIGHUP always reloads).
    pub watch: bool,
}

impl Default for DenyListsConfig {
    fn default() -> Self {
        DenyListsConfig { dir: "/etc/warden/deny-lists".into(), node_cgroup: None, watch: true }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NriConfig {
    /// containerd's NRI socket.
    pub socket_path: PathBuf,
    pub plugin_name: String,
    /// Two digits; orders plugins (lower runs first).
    pub plugin_index: String,
    /// false: no NRI connection at all; containers are confined only through the control
    /// socket (`warden oci-hook` for CRI-O, Podman, plain runc).
    pub enabled: bool,
    /// The fail-closed backstop (daemon/backstop.rs): at CreateContainer warden adds an OCI
    /// `createRuntime` hook (`warden oci-hook --backstop`) to every container it will confine;
    /// the runtime runs it before the entrypoint and the start fails unless the daemon has the
    /// container confined. Without it a warden that containerd dropped (slow answer, crash,
    /// restart) between CreateContainer and StartContainer means an unconfined start.
    pub backstop: bool,
    /// The binary the backstop hook runs (default: the daemon's own executable).
    pub hook_binary: Option<PathBuf>,
}

impl Default for NriConfig {
    fn default() -> Self {
        NriConfig {
            socket_path: "/var/run/nri/nri.sock".into(),
            plugin_name: "warden".into(),
            plugin_index: "10".into(),
            enabled: true,
            backstop: true,
            hook_binary: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nri: NriConfig::default(),
            profile_dirs: vec!["/etc/warden/profiles".into(), "/usr/share/warden/profiles".into()],
            policy: PolicyConfig::default(),
            fail_open: false,
            pin_dir: crate::enforcer::DEFAULT_PIN_DIR.into(),
            log_format: "text".into(),
            release_on_exit: false,
            learn_dir: "/var/lib/warden/learned".into(),
            learn_collapse_dir_files: crate::learn::COLLAPSE_DIR_FILES,
            control_socket: DEFAULT_SOCKET.into(),
            log_rate_limit: 20,
            metrics_address: None,
            watch_profiles: true,
            drop_capabilities: true,
            hook_idle_detach_seconds: 120,
            deny_lists: DenyListsConfig::default(),
        }
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// Reads `path`; a missing file at the default location means the defaults.
    pub fn load(path: &Path) -> Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(t) => Self::from_toml(&t).with_context(|| format!("config {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_CONFIG) => {
                Ok(Config::default())
            }
            Err(e) => Err(e).with_context(|| format!("reading config {}", path.display())),
        }
    }

    fn validate(&self) -> Result<()> {
        self.policy.validate().map_err(|e| anyhow::anyhow!(e))?;
        let idx = &self.nri.plugin_index;
        if idx.len() != 2 || !idx.bytes().all(|b| b.is_ascii_digit()) {
            anyhow::bail!("nri.plugin_index: {idx:?} must be two digits (00-99)");
        }
        if let Some(b) = &self.nri.hook_binary {
            // The runtime executes it from its own mount namespace: a relative path would depend
            // on the runtime's working directory.
            if !b.is_absolute() {
                anyhow::bail!("nri.hook_binary: {b:?} must be an absolute path");
            }
        }
        if !self.control_socket.is_absolute() {
            anyhow::bail!("control_socket: {:?} must be an absolute path", self.control_socket);
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            anyhow::bail!("log_format: {:?} must be text or json", self.log_format);
        }
        if let Some(c) = &self.deny_lists.node_cgroup {
            let ok = c.is_absolute()
                && c.components().any(|p| matches!(p, std::path::Component::Normal(_)))
                && !c.components().any(|p| matches!(p, std::path::Component::ParentDir));
            if !ok {
                anyhow::bail!(
                    "deny_lists.node_cgroup: {c:?} must be a cgroup below the cgroup2 mount, written from its root                      (\"/kubepods.slice\"), without \"..\"; the root cgroup itself is refused (it holds the node's services)"
                );
            }
        }
        if let Some(a) = &self.metrics_address {
            a.parse::<std::net::SocketAddr>()
                .map_err(|e| anyhow::anyhow!("metrics_address: {a:?} is not host:port with an IP address ({e})"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c, Config::default());
        let c = Config::from_toml(
            r#"
            fail_open = true
            profile_dirs = ["/tmp/p"]
            [nri]
            socket_path = "/run/x.sock"
            [policy]
            default_profile = "runtime-default"
            default_mode = "complain"
            excluded_namespaces = ["kube-system"]
            "#,
        )
        .unwrap();
        assert!(c.fail_open);
        assert_eq!(c.learn_dir, Path::new("/var/lib/warden/learned"));
        assert_eq!(Config::from_toml("learn_dir = \"/tmp/l\"").unwrap().learn_dir, Path::new("/tmp/l"));
        assert_eq!(c.policy.default_mode, crate::enforcer::Mode::Complain);
        assert_eq!(c.nri.socket_path, Path::new("/run/x.sock"));
        assert_eq!(c.control_socket, Path::new("/run/warden/warden.sock"));
        assert!(c.nri.enabled);
        let c = Config::from_toml("control_socket = \"/tmp/w.sock\"\n[nri]\nenabled = false").unwrap();
        assert_eq!((c.control_socket.as_path(), c.nri.enabled), (Path::new("/tmp/w.sock"), false));
        assert!(Config::from_toml("control_socket = \"w.sock\"").unwrap_err().to_string().contains("absolute"));
    }

    #[test]
    fn mistakes_are_errors() {
        let e = Config::from_toml("fail_opn = true").unwrap_err().to_string();
        assert!(e.contains("fail_opn"), "{e}");
        let e = Config::from_toml("[policy]\ndefault_profile = \"../x\"").unwrap_err().to_string();
        assert!(e.contains("policy.default_profile"), "{e}");
        let e = Config::from_toml("[nri]\nplugin_index = \"5\"").unwrap_err().to_string();
        assert!(e.contains("two digits"), "{e}");
        let e = Config::from_toml("metrics_address = \"localhost\"").unwrap_err().to_string();
        assert!(e.contains("metrics_address"), "{e}");
        for bad in ["/", "kubepods", "/kubepods/../..", "//"] {
            let e = Config::from_toml(&format!("[deny_lists]\nnode_cgroup = {bad:?}")).unwrap_err().to_string();
            assert!(e.contains("deny_lists.node_cgroup"), "{bad}: {e}");
        }
        let c = Config::from_toml("[deny_lists]\nnode_cgroup = \"/kubepods.slice\"\ndir = \"/tmp/d\"").unwrap();
        assert_eq!(c.deny_lists.node_cgroup.as_deref(), Some(Path::new("/kubepods.slice")));
        let c = Config::from_toml("metrics_address = \"127.0.0.1:9464\"\nlog_rate_limit = 5").unwrap();
        assert_eq!((c.metrics_address.as_deref(), c.log_rate_limit), (Some("127.0.0.1:9464"), 5));
    }
}
