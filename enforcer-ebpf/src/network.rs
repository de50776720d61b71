//! The network layer (cgroup programs, attached to each confined cgroup, so they only ever run
//! for confined processes): connect/sendmsg address+port+protocol allow-lists (LPM tries per
//! profile), bind port allow-lists, inet/inet6 socket creation (families, SOCK_RAW, protocols
//! other than TCP and UDP), and listeners the bind hook never saw (`warden_ingress`).
//! Denial = EPERM (the listener check drops the connection attempt instead: see there).
use aya_ebpf::{
    bindings::bpf_sock,
    helpers::{bpf_get_current_cgroup_id, bpf_sk_fullsock, bpf_skb_cgroup_id},
    macros::{cgroup_skb, cgroup_sock, cgroup_sock_addr},
    maps::lpm_trie::Key,
    programs::{SkBuffContext, SockAddrContext, SockContext},
};
use warden_common::{kind, learn_kind, mode, profile_flags, proto, protocol_bit, LearnKey, Net4Key, Net6Key};

use crate::{
    maps::{WARDEN_BIND, WARDEN_CONNECT4, WARDEN_CONNECT6, WARDEN_LEARN_NET},
    policy::{policy_for, policy_for_skb, profile},
    verdict::{judge, judge_listed, Attempt, ALLOW, DENY},
};

pub(crate) const AF_INET6: u16 = 10;
pub(crate) const AF_INET: u16 = 2;
const SOCK_RAW: u32 = 3;
/// `sk_state` of a listening socket (TCP_LISTEN; SCTP's listening state has the same value).
const TCP_LISTEN: u32 = 10;

#[inline(always)]
pub(crate) fn v4_allowed(profile_id: u32, addr: [u8; 4], proto: u8, port: u16) -> bool {
    let key = Key::new(64, Net4Key { profile_id_be: profile_id.to_be_bytes(), addr });
    match WARDEN_CONNECT4.get(&key) {
        Some(rules) => rules.allows(proto, port),
        None => false,
    }
}

#[inline(always)]
pub(crate) fn v6_allowed(profile_id: u32, addr: [u8; 16], proto: u8, port: u16) -> bool {
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

/// The attempt a sock_addr hook judges: protocol, destination (or bind) address and port.
#[inline(always)]
pub(crate) fn sock_addr_attempt(ctx: &SockAddrContext, k: u8, v6: bool) -> Attempt {
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
    Attempt { kind: k, nr: proto as u32, family, port, addr, path: core::ptr::null(), from_packet: false }
}

/// connect/sendmsg (k = CONNECT or SENDMSG) and bind (k = BIND), v4 or v6.
#[inline(always)]
fn sock_addr(ctx: &SockAddrContext, k: u8, v6: bool) -> i32 {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some((root, pol)) = policy_for(cgid) else { return ALLOW };
    let attempt = sock_addr_attempt(ctx, k, v6);
    let (proto, port, addr) = (attempt.nr as u8, attempt.port, attempt.addr);
    // The node's deny lists apply in every mode, whatever the profile says (see deny.rs).
    let listed = if k != kind::BIND { crate::deny::listed(&attempt) } else { None };

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
    if judge_listed(cgid, root, &pol, allowed, &attempt, listed) {
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

/// inet/inet6 socket creation: family allow-list, SOCK_RAW, and protocols other than TCP and
/// UDP, which need `network.protocols` (see warden_common::protocol_bits for why they cannot be
/// judged later). `sk.protocol` is the resolved one: socket(AF_INET, SOCK_STREAM, 0) is TCP.
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
        from_packet: false,
    };
    let allowed = match profile(pol.profile_id) {
        None => false,
        Some(hdr) => {
            if hdr.flags & profile_flags::FAMILIES == 0 {
                true
            } else {
                let fam_ok = family < 64 && (hdr.families >> family) & 1 == 1;
                let p = sk.protocol;
                // A raw socket may carry any protocol number; `raw_sockets` allows it whole.
                let proto_ok = if ty == SOCK_RAW {
                    hdr.flags & profile_flags::RAW_SOCKETS != 0
                } else {
                    p == proto::TCP as u32 || p == proto::UDP as u32 || hdr.protocols & protocol_bit(p) != 0
                };
                fam_ok && proto_ok
            }
        }
    };
    if judge(cgid, root, &pol, allowed, &attempt) {
        DENY
    } else {
        ALLOW
    }
}

/// Listeners on ports the profile may not bind: listen() on a socket that was never bound makes
/// the kernel pick an ephemeral port itself (`inet_csk_listen_start` -> `get_port(sk, 0)`,
/// net/ipv4/inet_connection_sock.c) and runs neither the bind hook (only `inet_bind_sk`) nor
/// the post_bind hook (only `__inet_bind`); no cgroup hook sees listen() at all (its only BPF
/// call is the sock_ops `BPF_SOCK_OPS_TCP_LISTEN_CB` notification, whose result is ignored). So
/// listen() cannot be refused from a cgroup program, and `sys_enter` could only kill after it
/// ran. What can be refused is every connection to such a listener: this `cgroup_skb/ingress`
/// program runs in `sk_filter` for each packet delivered to a socket of the cgroup, with
/// `skb->sk` the listener for a SYN (tcp_v4_rcv/tcp_v6_rcv call tcp_filter before handing a
/// SYN to a listener), and drops it unless the profile may bind the listener's port, or port 0
/// (an unbound listen() is a bind of port 0, the kernel choosing the port). A listener bound
/// with bind() passed the bind hook already, so it is only judged again here by the same
/// rules. The first test is the socket state: packets of established connections leave after
/// one helper call.
#[cgroup_skb(ingress)]
#[inline(always)]
pub fn warden_ingress(ctx: SkBuffContext) -> i32 {
    let skb = ctx.skb.skb;
    let sk: *mut bpf_sock = unsafe { (*skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return ALLOW;
    }
    let fs = unsafe { bpf_sk_fullsock(sk) };
    if fs.is_null() {
        return ALLOW;
    }
    // Field by field, 4 bytes each, with volatile reads: bpf_sock allows no wider access, and
    // LLVM would otherwise be free to merge neighbouring fields into one 8-byte load.
    let rd = |p: *const u32| unsafe { core::ptr::read_volatile(p) };
    let s = fs as *const bpf_sock;
    if rd(unsafe { core::ptr::addr_of!((*s).state) }) != TCP_LISTEN {
        return ALLOW;
    }
    // The cgroup of the socket (skb->sk is the listener here), not of whatever task the
    // softirq interrupted.
    let cgid = unsafe { bpf_skb_cgroup_id(skb) };
    let Some((root, pol)) = policy_for_skb(skb, cgid) else { return ALLOW };
    let proto = rd(unsafe { core::ptr::addr_of!((*s).protocol) }) as u8;
    let port = rd(unsafe { core::ptr::addr_of!((*s).src_port) }) as u16; // host byte order
    let v6 = rd(unsafe { core::ptr::addr_of!((*s).family) }) == AF_INET6 as u32;
    let addr = if v6 {
        let a = unsafe { core::ptr::addr_of!((*s).src_ip6) } as *const u32;
        ip6_bytes([rd(a), rd(a.wrapping_add(1)), rd(a.wrapping_add(2)), rd(a.wrapping_add(3))])
    } else {
        let a = rd(unsafe { core::ptr::addr_of!((*s).src_ip4) }).to_ne_bytes();
        let mut b = [0u8; 16];
        b[0] = a[0];
        b[1] = a[1];
        b[2] = a[2];
        b[3] = a[3];
        b
    };
    let family = if v6 { AF_INET6 } else { AF_INET };
    // In softirq: the current task is whoever was interrupted (for loopback, the client), so the
    // event carries no pid or comm.
    let mut attempt =
        Attempt { kind: kind::BIND, nr: proto as u32, family, port, addr, path: core::ptr::null(), from_packet: true };
    if pol.mode == mode::LEARN {
        // bind() recorded this port already if the listener was bound; otherwise the kernel
        // chose it, and what to learn is "bind port 0", not this random port.
        let key = LearnKey { root_cgroup: root, kind: kind::BIND, proto, family, port, _pad: [0; 2], addr };
        if unsafe { WARDEN_LEARN_NET.get(&key) }.is_some() {
            return ALLOW;
        }
        // Evidence for the generator: this port is the workload's own, chosen by the kernel,
        // so the workload's connects to it follow the kernel's choice, not one run's number.
        let own = Attempt {
            kind: learn_kind::KERNEL_CHOSEN_LISTENER,
            nr: proto as u32,
            family,
            port,
            addr,
            path: core::ptr::null(),
            from_packet: true,
        };
        crate::learn::record(root, &own);
        attempt.port = 0;
    }
    let allowed = match profile(pol.profile_id) {
        None => false,
        Some(hdr) => {
            if hdr.flags & profile_flags::BIND == 0 {
                true
            } else {
                match unsafe { WARDEN_BIND.get(&pol.profile_id) } {
                    Some(rules) => rules.allows(proto, port) || rules.allows(proto, 0),
                    None => false,
                }
            }
        }
    };
    if judge(cgid, root, &pol, allowed, &attempt) {
        DENY
    } else {
        ALLOW
    }
}
