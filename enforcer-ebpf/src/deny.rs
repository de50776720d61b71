//! Node-wide deny lists (threat feeds, metadata addresses, internal ranges): one LPM trie,
//! `WARDEN_DENY`, filled by the daemon from the list files. A listed destination is refused for
//! connect and sendmsg in every mode, before the profile is asked: a deny list beats any allow
//! rule, is never learned, and complain mode refuses it too. Two entry points: the container
//! programs of network.rs (confined cgroups), and the `warden_deny_*` programs below, attached
//! to an operator's parent cgroup (e.g. kubepods) when the lists should cover every container.
use aya_ebpf::{
    helpers::bpf_get_current_cgroup_id, macros::cgroup_sock_addr, maps::lpm_trie::Key, programs::SockAddrContext,
};
use warden_common::{deny_state, kind, mode, CgroupPolicy, DenyEntry, DenyKey, DENY_KEY_HEAD_BITS};

use crate::{
    maps::{STATE_DENY, WARDEN_DENY, WARDEN_DENY_EXEMPT, WARDEN_STATE},
    network::{sock_addr_attempt, AF_INET6},
    policy::policy_for,
    verdict::{judge_listed, Attempt, ALLOW, DENY},
};

/// The deny-list entry covering this destination, if any. `addr` is IPv4 in its first four
/// bytes (family AF_INET) or IPv6; IPv4 is looked up IPv4-mapped, as it is stored.
#[inline(always)]
pub(crate) fn listed(a: &Attempt) -> Option<DenyEntry> {
    let st = WARDEN_STATE.get(STATE_DENY).copied().unwrap_or(0);
    if st & deny_state::ACTIVE == 0 {
        return None;
    }
    let mut addr = a.addr;
    if a.family != AF_INET6 {
        addr = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a.addr[0], a.addr[1], a.addr[2], a.addr[3]];
    }
    let version = (st & deny_state::VERSION != 0) as u8;
    let mut k = DenyKey { version, ported: 0, proto: 0, port_be: [0, 0], addr };
    if let Some(e) = WARDEN_DENY.get(&Key::new(DENY_KEY_HEAD_BITS + 128, k)) {
        return Some(*e);
    }
    if st & deny_state::PORTED == 0 {
        return None;
    }
    k.ported = 1;
    k.proto = a.nr as u8;
    k.port_be = a.port.to_be_bytes();
    WARDEN_DENY.get(&Key::new(DENY_KEY_HEAD_BITS + 128, k)).copied()
}

/// The node-wide programs: only for cgroups warden does not confine (a confined one is judged,
/// deny lists first, by its own programs; both run, as this one is attached with
/// BPF_F_ALLOW_MULTI) and does not exempt (`WARDEN_DENY_EXEMPT`: its own namespace). Counters and the event rate window of all unconfined cgroups share the
/// key 0, so that unconfined containers add no per-cgroup entries the daemon would never free.
#[inline(always)]
fn node_wide(ctx: &SockAddrContext, k: u8, v6: bool) -> i32 {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    if policy_for(cgid).is_some() || unsafe { WARDEN_DENY_EXEMPT.get(&cgid) }.is_some() {
        return ALLOW;
    }
    let a = sock_addr_attempt(ctx, k, v6);
    match listed(&a) {
        None => ALLOW,
        Some(e) => {
            let pol = CgroupPolicy { mode: mode::ENFORCE, ..CgroupPolicy::default() };
            judge_listed(cgid, 0, &pol, true, &a, Some(e));
            DENY
        }
    }
}

#[cgroup_sock_addr(connect4)]
#[inline(always)]
pub fn warden_deny_connect4(ctx: SockAddrContext) -> i32 {
    node_wide(&ctx, kind::CONNECT, false)
}

#[cgroup_sock_addr(connect6)]
#[inline(always)]
pub fn warden_deny_connect6(ctx: SockAddrContext) -> i32 {
    node_wide(&ctx, kind::CONNECT, true)
}

#[cgroup_sock_addr(sendmsg4)]
#[inline(always)]
pub fn warden_deny_sendmsg4(ctx: SockAddrContext) -> i32 {
    node_wide(&ctx, kind::SENDMSG, false)
}

#[cgroup_sock_addr(sendmsg6)]
#[inline(always)]
pub fn warden_deny_sendmsg6(ctx: SockAddrContext) -> i32 {
    node_wide(&ctx, kind::SENDMSG, true)
}
