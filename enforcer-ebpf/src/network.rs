//! The network layer (cgroup programs, attached to each confined cgroup, so they only ever run
//! for confined processes): connect/sendmsg address+port+protocol allow-lists (LPM tries per
//! profile), bind port allow-lists, and inet/inet6 socket creation (families, SOCK_RAW).
//! Denial = EPERM.
use aya_ebpf::{
    helpers::bpf_get_current_cgroup_id,
    macros::{cgroup_sock, cgroup_sock_addr},
    maps::lpm_trie::Key,
    programs::{SockAddrContext, SockContext},
};
use warden_common::{kind, profile_flags, Net4Key, Net6Key};

use crate::{
    maps::{WARDEN_BIND, WARDEN_CONNECT4, WARDEN_CONNECT6},
    policy::{policy_for, profile},
    verdict::{judge, Attempt, ALLOW, DENY},
};

pub(crate) const AF_INET6: u16 = 10;
pub(crate) const AF_INET: u16 = 2;
const SOCK_RAW: u32 = 3;

#[inline(always)]
fn v4_allowed(profile_id: u32, addr: [u8; 4], proto: u8, port: u16) -> bool {
    let key = Key::new(64, Net4Key { profile_id_be: profile_id.to_be_bytes(), addr });
    match WARDEN_CONNECT4.get(&key) {
        Some(rules) => rules.allows(proto, port),
        None => false,
    }
}

#[inline(always)]
fn v6_allowed(profile_id: u32, addr: [u8; 16], proto: u8, port: u16) -> bool {
    // An IPv4-mapped address (::ffff:a.b.c.d) reaches an IPv4 host: judge it by the v4 rules.
    if addr[..10] == [0u8; 10] && addr[10] == 0xff && addr[11] == 0xff {
        return v4_allowed(profile_id, [addr[12], addr[13], addr[14], addr[15]], proto, port);
    }
    let key = Key::new(32 + 128, Net6Key { profile_id_be: profile_id.to_be_bytes(), addr });
    match WARDEN_CONNECT6.get(&key) {
        Some(rules) => rules.allows(proto, port),
        None => false,
    }
}

#[inline(always)]
fn ip6_bytes(words: [u32; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let w = words[i].to_ne_bytes(); // already network order in memory
        b[i * 4] = w[0];
        b[i * 4 + 1] = w[1];
        b[i * 4 + 2] = w[2];
        b[i * 4 + 3] = w[3];
        i += 1;
    }
    b
}

/// connect/sendmsg (k = CONNECT or SENDMSG) and bind (k = BIND), v4 or v6.
#[inline(always)]
fn sock_addr(ctx: &SockAddrContext, k: u8, v6: bool) -> i32 {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some((root, pol)) = policy_for(cgid) else { return ALLOW };
    let sa = unsafe { &*ctx.sock_addr };
    let proto = sa.protocol as u8;
    let port = u16::from_be(sa.user_port as u16);
    let (family, addr) = if v6 {
        (AF_INET6, ip6_bytes(sa.user_ip6))
    } else {
        let a = sa.user_ip4.to_ne_bytes();
        let mut b = [0u8; 16];
        b[0] = a[0];
        b[1] = a[1];
        b[2] = a[2];
        b[3] = a[3];
        (AF_INET, b)
    };
    let attempt = Attempt { kind: k, nr: proto as u32, family, port, addr, path: core::ptr::null() };

    let allowed = match profile(pol.profile_id) {
        None => false, // confined, profile missing: fail closed
        Some(hdr) => {
            if k == kind::BIND {
                if hdr.flags & profile_flags::BIND == 0 {
                    true
                } else {
                    match unsafe { WARDEN_BIND.get(&pol.profile_id) } {
                        Some(rules) => rules.allows(proto, port),
                        None => false,
                    }
                }
            } else if hdr.flags & profile_flags::CONNECT == 0 {
                true
            } else if v6 {
                v6_allowed(pol.profile_id, addr, proto, port)
            } else {
                v4_allowed(pol.profile_id, [addr[0], addr[1], addr[2], addr[3]], proto, port)
            }
        }
    };
    if judge(cgid, root, &pol, allowed, &attempt) {
        DENY
    } else {
        ALLOW
    }
}

#[cgroup_sock_addr(connect4)]
#[inline(always)]
pub fn warden_connect4(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, kind::CONNECT, false)
}

#[cgroup_sock_addr(connect6)]
#[inline(always)]
pub fn warden_connect6(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, kind::CONNECT, true)
}

#[cgroup_sock_addr(sendmsg4)]
#[inline(always)]
pub fn warden_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, kind::SENDMSG, false)
}

#[cgroup_sock_addr(sendmsg6)]
#[inline(always)]
pub fn warden_sendmsg6(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, kind::SENDMSG, true)
}

#[cgroup_sock_addr(bind4)]
#[inline(always)]
pub fn warden_bind4(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, kind::BIND, false)
}

#[cgroup_sock_addr(bind6)]
#[inline(always)]
pub fn warden_bind6(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, kind::BIND, true)
}

/// inet/inet6 socket creation: family allow-list and SOCK_RAW.
#[cgroup_sock(sock_create)]
#[inline(always)]
pub fn warden_sock_create(ctx: SockContext) -> i32 {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some((root, pol)) = policy_for(cgid) else { return ALLOW };
    let sk = unsafe { &*ctx.sock };
    let family = sk.family;
    let ty = sk.type_;
    let attempt = Attempt {
        kind: kind::SOCKET,
        nr: sk.protocol,
        family: family as u16,
        port: ty as u16,
        addr: [0; 16],
        path: core::ptr::null(),
    };
    let allowed = match profile(pol.profile_id) {
        None => false,
        Some(hdr) => {
            if hdr.flags & profile_flags::FAMILIES == 0 {
                true
            } else {
                let fam_ok = family < 64 && (hdr.families >> family) & 1 == 1;
                let raw_ok = ty != SOCK_RAW || hdr.flags & profile_flags::RAW_SOCKETS != 0;
                fam_ok && raw_ok
            }
        }
    };
    if judge(cgid, root, &pol, allowed, &attempt) {
        DENY
    } else {
        ALLOW
    }
}
