//! Reading what the kernel recorded for a confined cgroup (the learn maps) into a [`Learned`].
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Result};
use warden_common::{kind, LearnFileUse, LearnInfo, LearnKey};

use crate::enforcer::{kind_name, Maps};
use crate::profile::{family_name, Protocol};

pub(super) const AF_INET: u16 = libc::AF_INET as u16;
pub(super) const AF_INET6: u16 = libc::AF_INET6 as u16;
pub(super) const SOCK_RAW: u16 = libc::SOCK_RAW as u16;

/// What the kernel recorded for one confined cgroup.
#[derive(Debug, Clone, Default)]
pub struct Learned {
    pub cgroup_id: u64,
    /// Mode of the cgroup when read (`learn`, or `complain`: then these are would-deny items).
    pub mode: Option<crate::enforcer::Mode>,
    /// Profile name the cgroup is confined to.
    pub profile: String,
    /// Host syscall numbers seen.
    pub syscalls: Vec<usize>,
    pub items: Vec<LearnKey>,
    pub info: LearnInfo,
    /// Paths used, with their uses; None when the BPF-LSM file programs were not attached
    /// (this kernel cannot run them): files and execs were not recorded at all.
    pub files: Option<Vec<(String, LearnFileUse)>>,
}

impl Learned {
    /// `pin_dir`: where the enforcer pins its links (the file_open link tells whether files
    /// were being recorded).
    pub fn read(maps: &Maps, pin_dir: &std::path::Path, cgid: u64) -> Result<Learned> {
        let pol = maps.roots().into_iter().find(|(id, _)| *id == cgid).map(|(_, p)| p);
        let Some(pol) = pol else {
            bail!("cgroup id {cgid} is not confined by this warden (learn records live as long as the confinement)");
        };
        let syscalls = match maps.learn.get(&cgid, 0) {
            Ok(set) => set.seen.iter().enumerate().filter(|(_, b)| **b != 0).map(|(n, _)| n).collect(),
            Err(_) => Vec::new(),
        };
        Ok(Learned {
            cgroup_id: cgid,
            mode: crate::enforcer::Mode::from_raw(pol.mode),
            profile: maps.meta_of(pol.profile_id).map(|m| crate::enforcer::maps::name_of(&m)).unwrap_or_default(),
            syscalls,
            items: maps.learned_items(cgid),
            info: maps.learn_info_of(cgid),
            files: if pin_dir.join("links").join("lsm_file_open").exists() {
                Some(maps.learned_files(cgid))
            } else {
                None
            },
        })
    }

    pub fn syscall_names(&self) -> Vec<String> {
        self.syscalls.iter().filter_map(|n| syscalls::Sysno::new(*n).map(|s| s.name().to_string())).collect()
    }
}

pub(super) fn proto_of(p: u8) -> Protocol {
    match p {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => Protocol::Any,
    }
}

/// The destination of a connect/sendmsg/bind item; IPv4-mapped IPv6 as IPv4.
pub fn item_addr(k: &LearnKey) -> Option<IpAddr> {
    match k.family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3]))),
        AF_INET6 => {
            let a = Ipv6Addr::from(k.addr);
            Some(match a.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(a),
            })
        }
        _ => None,
    }
}

/// One line per item, for reports.
pub fn item_text(k: &LearnKey) -> String {
    // Protocol and address of an inet item: `tcp 127.0.0.1`.
    let endpoint = || {
        let proto = match proto_of(k.proto) {
            Protocol::Tcp => "tcp".to_string(),
            Protocol::Udp => "udp".to_string(),
            Protocol::Any => format!("proto{}", k.proto),
        };
        let addr = item_addr(k).map(|a| a.to_string()).unwrap_or_else(|| format!("af{}", k.family));
        format!("{proto} {addr}")
    };
    match k.kind {
        kind::CONNECT | kind::SENDMSG | kind::BIND => format!("{} {} port {}", kind_name(k.kind), endpoint(), k.port),
        warden_common::learn_kind::KERNEL_CHOSEN_LISTENER => {
            format!("own listener {} port {} (chosen by the kernel)", endpoint(), k.port)
        }
        kind::SOCKET => {
            let mut s = format!("socket family {}", family_name(k.family as u32));
            if k.port != 0 {
                s += &format!(" type {}", if k.port == SOCK_RAW { "raw".to_string() } else { k.port.to_string() });
            }
            s
        }
        _ => format!("{} item", kind_name(k.kind)),
    }
}
