//! Profiles: the JSON allow-list a person writes, and its compiled form (exactly what the kernel
//! maps hold).
//!
//! An absent section means that layer is not restricted; a present but empty one means nothing
//! of that kind is allowed. The format is documented in `docs/profiles.md`.
//!
//! Layout of this module:
//! - here: the format's types, parsing and diagnostics;
//! - [`sysnames`]: syscall name tables (x86_64, aarch64, host);
//! - [`files`]: file rule validation;
//! - [`seccomp`]: OCI/Docker seccomp profiles and their conversion, with a report;
//! - [`resolve`]: the profile search path, `extends` and merging;
//! - [`compile`]: validation, warnings, limits and the kernel form with its hash;
//! - [`diff`]: what one compiled profile allows that another does not;
//! - [`intersect`]: the intersection of two compiled profiles (a baseline and a pod's profile);
//! - [`merge`]: the union of profiles (`warden profile merge`) and their canonical form.
pub mod compile;
pub mod diff;
pub mod files;
pub mod intersect;
pub mod merge;
pub mod resolve;
pub mod seccomp;
pub mod sysnames;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

pub use compile::{check, compile, Access, CompiledProfile, FileRule};
pub use resolve::{Loaded, SearchPath};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Names of profiles whose rules are added to this one's (looked up in the search path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extends: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<SyscallsSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileRuleSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// SIGKILL the process (like seccomp's kill action).
    #[default]
    Kill,
    /// Let it run, report it.
    Log,
}

/// The warden form of the `syscalls` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Syscalls {
    #[serde(default)]
    pub default: DefaultAction,
    /// Syscall names (x86_64 or aarch64 names; compiled with the host's numbers).
    #[serde(default)]
    pub allow: Vec<String>,
}

/// The `syscalls` section: warden's own form, or an OCI/Docker seccomp profile as-is.
///
/// Both forms go through one struct ([`RawSyscalls`]) while parsing so that errors inside
/// either keep their full JSON path (an untagged enum would lose it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSyscalls", into = "RawSyscalls")]
pub enum SyscallsSpec {
    Allow(Syscalls),
    Seccomp(seccomp::SeccompProfile),
}

impl SyscallsSpec {
    /// The warden form: a seccomp profile is converted for the host with the default options
    /// (see [`seccomp::ImportOptions::host`]).
    pub fn to_allow(&self) -> (Syscalls, Option<seccomp::Report>) {
        match self {
            SyscallsSpec::Allow(s) => (s.clone(), None),
            SyscallsSpec::Seccomp(sp) => {
                let imp = seccomp::convert(sp, &seccomp::ImportOptions::host());
                (imp.syscalls, Some(imp.report))
            }
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSyscalls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<DefaultAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow: Option<Vec<String>>,
    #[serde(rename = "defaultAction", default, skip_serializing_if = "Option::is_none")]
    default_action: Option<seccomp::Action>,
    #[serde(rename = "defaultErrnoRet", default, skip_serializing_if = "Option::is_none")]
    default_errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    architectures: Option<Vec<String>>,
    #[serde(rename = "archMap", default, skip_serializing_if = "Option::is_none")]
    arch_map: Option<Vec<seccomp::ArchMap>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flags: Option<Vec<String>>,
    #[serde(rename = "listenerPath", default, skip_serializing_if = "Option::is_none")]
    listener_path: Option<String>,
    #[serde(rename = "listenerMetadata", default, skip_serializing_if = "Option::is_none")]
    listener_metadata: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    syscalls: Option<Vec<seccomp::Rule>>,
}

impl TryFrom<RawSyscalls> for SyscallsSpec {
    type Error = String;
    fn try_from(r: RawSyscalls) -> Result<Self, String> {
        let seccomp_only = r.default_errno_ret.is_some()
            || r.architectures.is_some()
            || r.arch_map.is_some()
            || r.flags.is_some()
            || r.listener_path.is_some()
            || r.listener_metadata.is_some()
            || r.syscalls.is_some();
        match r.default_action {
            Some(default_action) => {
                if r.default.is_some() || r.allow.is_some() {
                    return Err(
                        "mixes warden's `default`/`allow` with a seccomp profile's `defaultAction`: use one form"
                            .into(),
                    );
                }
                Ok(SyscallsSpec::Seccomp(seccomp::SeccompProfile {
                    default_action,
                    default_errno_ret: r.default_errno_ret,
                    architectures: r.architectures,
                    arch_map: r.arch_map,
                    flags: r.flags,
                    listener_path: r.listener_path,
                    listener_metadata: r.listener_metadata,
                    syscalls: r.syscalls.unwrap_or_default(),
                    extra: Default::default(),
                }))
            }
            None if seccomp_only => Err("looks like a seccomp profile but has no `defaultAction`".into()),
            None => Ok(SyscallsSpec::Allow(Syscalls {
                default: r.default.unwrap_or_default(),
                allow: r.allow.unwrap_or_default(),
            })),
        }
    }
}

impl From<SyscallsSpec> for RawSyscalls {
    fn from(s: SyscallsSpec) -> Self {
        match s {
            SyscallsSpec::Allow(a) => {
                RawSyscalls { default: Some(a.default), allow: Some(a.allow), ..Default::default() }
            }
            SyscallsSpec::Seccomp(sp) => RawSyscalls {
                default_action: Some(sp.default_action),
                default_errno_ret: sp.default_errno_ret,
                architectures: sp.architectures,
                arch_map: sp.arch_map,
                flags: sp.flags,
                listener_path: sp.listener_path,
                listener_metadata: sp.listener_metadata,
                syscalls: Some(sp.syscalls),
                ..Default::default()
            },
        }
    }
}

/// A `files` rule as written: `path` is an exact file, or a directory prefix when it ends with
/// `/`; `access` is any of `r`, `w`, `x`. Both are kept as strings so that every bad rule is
/// reported at once (see [`files`]) instead of stopping at the first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRuleSpec {
    pub path: String,
    pub access: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Where the workload may connect (and send UDP to). Absent: not restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Vec<ConnectRule>>,
    /// Ports the workload may bind. Absent: not restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<Vec<BindRule>>,
    /// Socket families allowed (`unix`, `inet`, `inet6`, `netlink`, `packet`, ...). Absent:
    /// every family but `packet` (raw link-layer access is opt-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub families: Option<Vec<String>>,
    /// Whether SOCK_RAW inet sockets may be created. Default false. Same as `raw` in
    /// `protocols`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_sockets: bool,
    /// inet/inet6 protocols besides TCP and UDP that sockets may use ([`PROTOCOLS`]: `icmp`,
    /// `icmpv6`, `sctp`, `udplite`, `mptcp`, `raw`). Absent or empty: none, because the kernel
    /// runs no connect, sendmsg or bind hook for several of them, so they could only be allowed
    /// whole (refused at socket creation otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    #[default]
    Any,
}

/// A port or an inclusive range, written `443` or `"8000-8080"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange { lo: 0, hi: 65535 };
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.lo == self.hi {
            s.serialize_u16(self.lo)
        } else {
            s.serialize_str(&format!("{}-{}", self.lo, self.hi))
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        use serde::de::Error;
        let port = |n: u64| u16::try_from(n).map_err(|_| D::Error::custom(format!("port {n} is above 65535")));
        match Raw::deserialize(d)? {
            Raw::N(n) => {
                let p = port(n)?;
                Ok(PortRange { lo: p, hi: p })
            }
            Raw::S(s) => {
                let (a, b) = s.split_once('-').unwrap_or((&s, &s));
                let parse = |x: &str| {
                    x.trim()
                        .parse::<u64>()
                        .map_err(|_| D::Error::custom(format!("`{s}` is not a port or a range like 8000-8080")))
                        .and_then(port)
                };
                let (lo, hi) = (parse(a)?, parse(b)?);
                if lo > hi {
                    return Err(D::Error::custom(format!("port range `{s}` is reversed")));
                }
                Ok(PortRange { lo, hi })
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRule {
    pub cidr: ipnet::IpNet,
    /// Absent: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortRange>>,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindRule {
    pub ports: Vec<PortRange>,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Note,
}

/// One finding about a profile: where (file, JSON path) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// JSON path of the field (`files[3].access`); empty for the whole document.
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Error, file: None, path: path.into(), message: message.into() }
    }
    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, ..Self::error(path, message) }
    }
    pub fn note(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { severity: Severity::Note, ..Self::error(path, message) }
    }
    pub fn in_file(mut self, file: Option<&Path>) -> Self {
        if self.file.is_none() {
            self.file = file.map(Path::to_path_buf);
        }
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}: ", file.display())?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// A profile that cannot be used, with every error found (not just the first).
#[derive(Debug, Clone)]
pub struct Invalid {
    /// The profile's name when it could be read.
    pub profile: Option<String>,
    pub errors: Vec<Diagnostic>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.profile {
            Some(n) => write!(f, "profile `{n}` is invalid")?,
            None => write!(f, "invalid profile")?,
        }
        write!(f, " ({} error{}):", self.errors.len(), if self.errors.len() == 1 { "" } else { "s" })?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

impl Profile {
    /// Parses one profile document as written (`extends` left unresolved). Errors name the JSON
    /// path of the offending field.
    pub fn from_json(text: &str) -> Result<Profile> {
        Self::parse(text, None).map_err(anyhow::Error::new)
    }

    /// Parses `text`, the contents of `file` (if known, for error messages).
    pub fn parse(text: &str, file: Option<&Path>) -> Result<Profile, Invalid> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let p: Profile = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            // serde_path_to_error writes `.` for the document root and `?` when a syntax error
            // leaves no field to name (the message then gives line and column).
            let path = if path == "." || path == "?" { String::new() } else { path };
            Invalid { profile: None, errors: vec![Diagnostic::error(path, e.into_inner().to_string()).in_file(file)] }
        })?;
        Ok(p)
    }

    /// Reads and parses one file as written, `extends` left unresolved.
    pub fn parse_file(path: &Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading profile {}", path.display()))?;
        Ok(Self::parse(&text, Some(path))?)
    }

    /// Reads a profile file and resolves its `extends` (searching the file's own directory
    /// first, then [`SearchPath::default`]), returning the merged profile ready for
    /// [`compile`]. Fails with every error of every file involved; warnings are dropped (the
    /// `warden profile validate` command shows them).
    pub fn from_file(path: &Path) -> Result<Profile> {
        let loaded = resolve::load_file(path, &SearchPath::default())?;
        loaded.into_profile()
    }
}

/// Socket family names and their AF_* numbers (Linux).
pub const FAMILIES: &[(&str, u32)] = &[
    ("unix", libc::AF_UNIX as u32),
    ("inet", libc::AF_INET as u32),
    ("inet6", libc::AF_INET6 as u32),
    ("netlink", libc::AF_NETLINK as u32),
    ("packet", libc::AF_PACKET as u32),
    ("key", libc::AF_KEY as u32),
    ("alg", libc::AF_ALG as u32),
    ("vsock", libc::AF_VSOCK as u32),
    ("xdp", libc::AF_XDP as u32),
    ("bluetooth", libc::AF_BLUETOOTH as u32),
    ("can", libc::AF_CAN as u32),
    ("tipc", libc::AF_TIPC as u32),
    ("rds", libc::AF_RDS as u32),
];

/// Names of `network.protocols`, with the IPPROTO number each allows (`raw`: SOCK_RAW sockets of
/// any protocol, the same as `raw_sockets: true`; its number is IPPROTO_RAW's, for display).
pub const PROTOCOLS: &[(&str, u32)] = &[
    ("icmp", libc::IPPROTO_ICMP as u32),
    ("icmpv6", libc::IPPROTO_ICMPV6 as u32),
    ("sctp", libc::IPPROTO_SCTP as u32),
    ("udplite", libc::IPPROTO_UDPLITE as u32),
    ("mptcp", libc::IPPROTO_MPTCP as u32),
    ("raw", libc::IPPROTO_RAW as u32),
];

pub fn protocol_number(name: &str) -> Option<u32> {
    PROTOCOLS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The `network.protocols` name of IPPROTO number `n`, if a profile can name it.
pub fn protocol_name(n: u32) -> Option<&'static str> {
    PROTOCOLS.iter().find(|(_, v)| *v == n).map(|(s, _)| *s)
}

pub fn family_number(name: &str) -> Option<u32> {
    FAMILIES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub fn family_name(n: u32) -> String {
    FAMILIES.iter().find(|(_, v)| *v == n).map(|(s, _)| s.to_string()).unwrap_or_else(|| format!("af{n}"))
}

#[cfg(test)]
mod tests;
