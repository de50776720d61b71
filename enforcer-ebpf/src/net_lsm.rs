//! The network calls no cgroup hook can refuse (BPF-LSM): `listen()` on a socket that was
//! never bound (the kernel picks an ephemeral port and runs no bind hook), the bind of
//! sockets with their own `bind` (raw, ping, SCTP: they return before inet_bind's cgroup
//! hook), and the sends of ping and raw sockets (no cgroup sendmsg hook). Each is judged by the
//! profile's bind or connect rules with the same mode logic as the cgroup programs (`judge`):
//! denial = EPERM from the call itself. The cgroup layer stays the other line of defence
//! (sock_create refuses protocols the profile does not name, `warden_ingress` drops SYNs to
//! listeners it may not have).
//!
//! What the cgroup programs judge too (TCP/UDP binds, listen() on a bound socket) is judged
//! here in enforce mode only, so complain and learn report and record each attempt once.
//!
//! Kernel fields (offsets from BTF at load time, globals.rs): `socket.sk`; `sock`'s
//! `skc_family`, `skc_state`, `skc_num`, `skc_daddr`, `skc_rcv_saddr`, `skc_v6_daddr`,
//! `skc_v6_rcv_saddr`, `skc_prot`, `sk_type`, `sk_protocol`; `proto.bind`; `msghdr.msg_name`,
//! `msg_namelen`. Every read is a bpf_probe_read_kernel; a failed read allows (nothing judged)
//! only where the kernel would refuse the call anyway, otherwise it fails closed.
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_probe_read_kernel},
    macros::lsm,
    programs::LsmContext,
};
use warden_common::{kind, profile_flags, proto, CgroupPolicy, ProfileHeader};

use crate::{
    globals::{
        global, NET_OFFSETS_OK, OFF_MSGHDR_NAME, OFF_MSGHDR_NAMELEN, OFF_PROTO_BIND, OFF_SOCKET_SK, OFF_SOCK_DADDR,
        OFF_SOCK_FAMILY, OFF_SOCK_NUM, OFF_SOCK_PROT, OFF_SOCK_PROTOCOL, OFF_SOCK_RCV_SADDR, OFF_SOCK_STATE,
        OFF_SOCK_TYPE, OFF_SOCK_V6_DADDR, OFF_SOCK_V6_RCV_SADDR,
    },
    maps::WARDEN_BIND,
    network::{v4_allowed, v6_allowed, AF_INET, AF_INET6},
    policy::{enforces, policy_for, profile},
    verdict::{judge, judge_listed, Attempt, LSM_ALLOW, LSM_DENY},
};

const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;
const SOCK_RAW: u16 = 3;
const SOCK_SEQPACKET: u16 = 5;
const IPPROTO_ICMP: u16 = 1;
const IPPROTO_ICMPV6: u16 = 58;
const IPPROTO_RAW: u32 = 255;
const TCP_ESTABLISHED: u8 = 1;
/// sizeof(struct sockaddr_in), and SIN6_LEN_RFC2133 (the shortest sockaddr_in6 the kernel takes).
const SOCKADDR_IN_LEN: i32 = 16;
const SOCKADDR_IN6_LEN: i32 = 24;

/// A probe read of the `T` at `base + off` (a kernel address).
#[inline(always)]
unsafe fn read<T>(base: *const u8, off: u64) -> Option<T> {
    bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T).ok()
}

/// An inet or inet6 socket, as judged here.
struct Sk {
    sk: *const u8,
    family: u16,
    ty: u16,
    protocol: u16,
}

/// The sock of `struct socket *sock` if it is inet/inet6 (None: not judged here).
#[inline(always)]
fn inet_sock(sock: *const u8) -> Option<Sk> {
    if global(&NET_OFFSETS_OK) == 0 || sock.is_null() {
        return None;
    }
    let sk: *const u8 = unsafe { read(sock, global(&OFF_SOCKET_SK)) }?;
    if sk.is_null() {
        return None;
    }
    let family: u16 = unsafe { read(sk, global(&OFF_SOCK_FAMILY)) }?;
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    // Unreadable type or protocol: judged as a raw socket (the strictest case).
    let ty: u16 = unsafe { read(sk, global(&OFF_SOCK_TYPE)) }.unwrap_or(SOCK_RAW);
    let protocol: u16 = unsafe { read(sk, global(&OFF_SOCK_PROTOCOL)) }.unwrap_or(0);
    Some(Sk { sk, family, ty, protocol })
}

/// The protocol the rules are looked up with: a raw socket carries any protocol number (raw
/// TCP is not TCP), so only `any` rules apply to it.
#[inline(always)]
fn rule_proto(s: &Sk) -> u8 {
    if s.ty == SOCK_RAW {
        proto::ANY
    } else {
        s.protocol as u8
    }
}

/// The protocol events and learn records carry: a raw socket's is reported as `raw`
/// (IPPROTO_RAW), so what is learned from it becomes an `any` rule, as judged.
#[inline(always)]
fn event_proto(s: &Sk) -> u32 {
    if s.ty == SOCK_RAW {
        IPPROTO_RAW
    } else {
        s.protocol as u32
    }
}

/// Whether the bind rules allow `port` (or port 0 too, with `or_zero`).
#[inline(always)]
fn bind_allowed(hdr: Option<&ProfileHeader>, profile_id: u32, p: u8, port: u16, or_zero: bool) -> bool {
    let Some(h) = hdr else { return false }; // confined, profile missing: fail closed
    if h.flags & profile_flags::BIND == 0 {
        return true;
    }
    match unsafe { WARDEN_BIND.get(&profile_id) } {
        Some(rules) => rules.allows(p, port) || (or_zero && rules.allows(p, 0)),
        None => false,
    }
}

/// Whether the connect rules allow `addr` (port 0: ping and raw sockets have no destination port).
#[inline(always)]
fn connect_allowed(hdr: Option<&ProfileHeader>, profile_id: u32, v6: bool, p: u8, addr: [u8; 16]) -> bool {
    let Some(h) = hdr else { return false };
    if h.flags & profile_flags::CONNECT == 0 {
        return true;
    }
    if v6 {
        v6_allowed(profile_id, addr, p, 0)
    } else {
        v4_allowed(profile_id, [addr[0], addr[1], addr[2], addr[3]], p, 0)
    }
}

/// Port (host order) and address of the kernel copy of a sockaddr of socket family `family`;
/// None when it is shorter than the kernel accepts (the call fails with EINVAL anyway).
#[inline(always)]
fn sockaddr(p: *const u8, len: i32, family: u16) -> Option<(u16, [u8; 16])> {
    if p.is_null() {
        return None;
    }
    let port: u16 = unsafe { read(p, 2) }?; // sin_port and sin6_port
    let mut addr = [0u8; 16];
    if family == AF_INET6 {
        if len < SOCKADDR_IN6_LEN {
            return None;
        }
        addr = unsafe { read(p, 8) }?;
    } else {
        if len < SOCKADDR_IN_LEN {
            return None;
        }
        let a: [u8; 4] = unsafe { read(p, 4) }?;
        addr[0] = a[0];
        addr[1] = a[1];
        addr[2] = a[2];
        addr[3] = a[3];
    }
    Some((u16::from_be(port), addr))
}

/// An address field of the sock: 4 bytes at `off4` (inet) or 16 at `off6` (inet6).
#[inline(always)]
fn sock_addr(s: &Sk, off4: u64, off6: u64) -> [u8; 16] {
    let mut addr = [0u8; 16];
    if s.family == AF_INET6 {
        addr = unsafe { read(s.sk, off6) }.unwrap_or([0; 16]);
    } else {
        let a: [u8; 4] = unsafe { read(s.sk, off4) }.unwrap_or([0; 4]);
        addr[0] = a[0];
        addr[1] = a[1];
        addr[2] = a[2];
        addr[3] = a[3];
    }
    addr
}

#[inline(always)]
fn verdict(cgid: u64, root: u64, pol: &CgroupPolicy, allowed: bool, a: &Attempt) -> i32 {
    if judge(cgid, root, pol, allowed, a) {
        LSM_DENY
    } else {
        LSM_ALLOW
    }
}

/// bind(): the bind rules, for every inet socket. Sockets whose protocol has its own `bind`
/// (raw, ping, SCTP) return before inet_bind's cgroup hook, so nothing else judges them; the
/// others are judged by the cgroup bind4/6 hook as well, so here in enforce mode only.
#[lsm(hook = "socket_bind")]
#[inline(always)]
pub fn warden_socket_bind(ctx: LsmContext) -> i32 {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some((root, pol)) = policy_for(cgid) else { return LSM_ALLOW };
    let Some(s) = inet_sock(ctx.arg(0)) else { return LSM_ALLOW };
    if !enforces(&pol) {
        // A failed read counts as "own bind": judged rather than skipped.
        let prot: Option<*const u8> = unsafe { read(s.sk, global(&OFF_SOCK_PROT)) };
        let own_bind = match prot {
            Some(p) if !p.is_null() => unsafe { read::<u64>(p, global(&OFF_PROTO_BIND)) }.is_none_or(|b| b != 0),
            _ => true,
        };
        if !own_bind {
            return LSM_ALLOW;
        }
    }
    let Some((port, addr)) = sockaddr(ctx.arg(1), ctx.arg(2), s.family) else { return LSM_ALLOW };
    // A raw socket binds an address only (the kernel ignores the port field).
    let port = if s.ty == SOCK_RAW { 0 } else { port };
    let allowed = bind_allowed(profile(pol.profile_id), pol.profile_id, rule_proto(&s), port, false);
    let a = Attempt {
        kind: kind::BIND,
        nr: event_proto(&s),
        family: s.family,
        port,
        addr,
        path: core::ptr::null(),
        from_packet: false,
    };
    verdict(cgid, root, &pol, allowed, &a)
}

/// listen(): on a socket never bound (`skc_num` 0) the kernel chooses the port without any
/// bind hook, so it is judged as a bind of port 0 (the rule of `warden_ingress`). A bound
/// socket passed the bind hooks with its port, or with port 0 and the kernel chose this one:
/// either allows it (enforce mode only; the bind was reported when it happened).
#[lsm(hook = "socket_listen")]
#[inline(always)]
pub fn warden_socket_listen(ctx: LsmContext) -> i32 {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some((root, pol)) = policy_for(cgid) else { return LSM_ALLOW };
    let Some(s) = inet_sock(ctx.arg(0)) else { return LSM_ALLOW };
    if s.ty != SOCK_STREAM && s.ty != SOCK_SEQPACKET {
        return LSM_ALLOW; // no listen() for other types (EOPNOTSUPP)
    }
    let num: u16 = unsafe { read(s.sk, global(&OFF_SOCK_NUM)) }.unwrap_or(0);
    if num != 0 && !enforces(&pol) {
        return LSM_ALLOW;
    }
    let addr = sock_addr(&s, global(&OFF_SOCK_RCV_SADDR), global(&OFF_SOCK_V6_RCV_SADDR));
    let allowed = bind_allowed(profile(pol.profile_id), pol.profile_id, rule_proto(&s), num, true);
    let a = Attempt {
        kind: kind::BIND,
        nr: event_proto(&s),
        family: s.family,
        port: num,
        addr,
        path: core::ptr::null(),
        from_packet: false,
    };
    verdict(cgid, root, &pol, allowed, &a)
}

/// sendmsg() (send, sendto, sendmsg, sendmmsg, write, io_uring) on a ping socket (SOCK_DGRAM
/// with IPPROTO_ICMP or IPPROTO_ICMPV6) or a raw socket: no cgroup sendmsg hook runs for them,
/// so the destination is judged here by the connect rules, as port 0 with protocol `any`
/// (a rule for the address with protocol `any` and no ports allows it): `msg_name` when
/// given, else the connected peer. TCP and UDP are left to the cgroup hooks.
#[lsm(hook = "socket_sendmsg")]
#[inline(always)]
pub fn warden_socket_sendmsg(ctx: LsmContext) -> i32 {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some((root, pol)) = policy_for(cgid) else { return LSM_ALLOW };
    let Some(s) = inet_sock(ctx.arg(0)) else { return LSM_ALLOW };
    let ping = s.ty == SOCK_DGRAM && (s.protocol == IPPROTO_ICMP || s.protocol == IPPROTO_ICMPV6);
    if !ping && s.ty != SOCK_RAW {
        return LSM_ALLOW;
    }
    let msg: *const u8 = ctx.arg(1);
    let name: *const u8 = if msg.is_null() {
        core::ptr::null()
    } else {
        unsafe { read(msg, global(&OFF_MSGHDR_NAME)) }.unwrap_or(core::ptr::null())
    };
    let addr = if !name.is_null() {
        let len: i32 = unsafe { read(msg, global(&OFF_MSGHDR_NAMELEN)) }.unwrap_or(0);
        match sockaddr(name, len, s.family) {
            Some((_, a)) => a,
            None => return LSM_ALLOW, // shorter than the protocol accepts: EINVAL
        }
    } else {
        let state: u8 = unsafe { read(s.sk, global(&OFF_SOCK_STATE)) }.unwrap_or(TCP_ESTABLISHED);
        if state != TCP_ESTABLISHED {
            return LSM_ALLOW; // no destination: EDESTADDRREQ
        }
        sock_addr(&s, global(&OFF_SOCK_DADDR), global(&OFF_SOCK_V6_DADDR))
    };
    let allowed = connect_allowed(profile(pol.profile_id), pol.profile_id, s.family == AF_INET6, proto::ANY, addr);
    let a = Attempt {
        kind: kind::SENDMSG,
        nr: event_proto(&s),
        family: s.family,
        port: 0,
        addr,
        path: core::ptr::null(),
        from_packet: false,
    };
    // The node's deny lists cover raw and ping sends too (entries without a port).
    let listed = crate::deny::listed(&a);
    if judge_listed(cgid, root, &pol, allowed, &a, listed) {
        LSM_DENY
    } else {
        LSM_ALLOW
    }
}
