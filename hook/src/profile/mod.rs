//! Profiles: the JSON allow-list a person writes, and its compiled form (exactly what the kernel
//! maps hold).
//!
//! An absent section means that layer is not restricted; a present but empty one means nothing
//! of that kind is allowed.
pub mod compile;

use std::path::Path;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

pub use compile::{compile, CompiledProfile};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<Syscalls>,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Syscalls {
    #[serde(default)]
    pub default: DefaultAction,
    /// Syscall names (native architecture table of the `syscalls` crate).
    #[serde(default)]
    pub allow: Vec<String>,
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
    /// Whether SOCK_RAW inet sockets may be created. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_sockets: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    #[default]
    Any,
}

/// A port or an inclusive range, written `443` or `"8000-8080"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRule {
    pub cidr: ipnet::IpNet,
    /// Absent: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortRange>>,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindRule {
    pub ports: Vec<PortRange>,
    #[serde(default)]
    pub protocol: Protocol,
}

impl Profile {
    pub fn from_json(text: &str) -> Result<Profile> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let p: Profile = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("at `{path}`: {}", e.into_inner())
        })?;
        Ok(p)
    }

    pub fn from_file(path: &Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading profile {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("profile {}", path.display()))
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

pub fn family_number(name: &str) -> Option<u32> {
    FAMILIES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

pub fn family_name(n: u32) -> String {
    FAMILIES.iter().find(|(_, v)| *v == n).map(|(s, _)| s.to_string()).unwrap_or_else(|| format!("af{n}"))
}
