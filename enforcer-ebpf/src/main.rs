//! warden's eBPF programs. They are deliberately small: every decision is a lookup in tables
//! that userspace compiled from a profile (see hook/src/enforcer). Maps are pinned by name so
//! enforcement outlives the daemon.
//!
//! Programs:
//! - `warden_sys_enter` (raw_tp sys_enter): per-profile syscall bitmap; SIGKILL / report / learn.
//!   Attached only while some confined cgroup needs it.
//! - `warden_connect4/6`, `warden_sendmsg4/6`, `warden_bind4/6` (cgroup sock_addr) and
//!   `warden_sock_create` (cgroup sock): network allow-lists; denial = EPERM. Attached to each
//!   confined cgroup, so they only ever run for confined processes.
//! - `warden_cgroup_mkdir` / `warden_cgroup_rmdir` (raw_tp): a cgroup made below a confined
//!   cgroup inherits its policy before mkdir() returns, so no process can escape by moving into
//!   a fresh sub-cgroup.
#![no_std]
#![no_main]
// atomic_xadd: the bpf target has no AtomicU64::fetch_add, but the kernel has atomic add.
#![allow(internal_features)]
#![feature(core_intrinsics)]

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_send_signal,
    },
    macros::{cgroup_sock, cgroup_sock_addr, map, raw_tracepoint},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, PerCpuHashMap, RingBuf},
    programs::{RawTracePointContext, SockAddrContext, SockContext},
};
use warden_common::{
    cgroup_flags, kind, mode, profile_flags, verdict, CgroupPolicy, Counters, Event, LearnInfo,
    LearnKey, Net4Key, Net6Key, PortRules, ProfileHeader, ProfileMeta, RateWindow, SyscallSet,
    LEARN_ITEMS_PER_CGROUP, LEARN_NET_ENTRIES, SYSCALL_BITMAP_BITS,
};

// ---- read-only globals, set by the loader from the running kernel's BTF ----------------------
// (volatile reads: the values are patched into .rodata at load time)
#[no_mangle]
static OFF_CGROUP_KN: u64 = 0;
#[no_mangle]
static OFF_KERNFS_NODE_ID: u64 = 0;
#[no_mangle]
static OFF_CGROUP_PARENT: u64 = 0;
#[no_mangle]
static OFF_CGROUP_ROOT: u64 = 0;
#[no_mangle]
static OFF_CGROUP_ROOT_HIERARCHY_ID: u64 = 0;
#[no_mangle]
static OFF_TASK_TI_STATUS: u64 = 0;
#[no_mangle]
static EVENT_RATE_LIMIT: u64 = 1000;

#[inline(always)]
fn global(v: &'static u64) -> u64 {
    unsafe { core::ptr::read_volatile(v) }
}

// ---- maps (pinned by name under the pin folder) ----------------------------------------------
#[map]
static WARDEN_CGROUPS: HashMap<u64, CgroupPolicy> = HashMap::pinned(65536, 0);
#[map]
static WARDEN_PROFILES: HashMap<u32, ProfileHeader> = HashMap::pinned(4096, 0);
#[map]
static WARDEN_PROFILE_META: HashMap<u32, ProfileMeta> = HashMap::pinned(4096, 0);
#[map]
static WARDEN_CONNECT4: LpmTrie<Net4Key, PortRules> = LpmTrie::pinned(65536, 0);
#[map]
static WARDEN_CONNECT6: LpmTrie<Net6Key, PortRules> = LpmTrie::pinned(65536, 0);
#[map]
static WARDEN_BIND: HashMap<u32, PortRules> = HashMap::pinned(4096, 0);
#[map]
static WARDEN_COUNTERS: PerCpuHashMap<u64, Counters> = PerCpuHashMap::pinned(65536, 0);
#[map]
static WARDEN_RATE: HashMap<u64, RateWindow> = HashMap::pinned(65536, 0);
#[map]
static WARDEN_LEARN_SC: HashMap<u64, SyscallSet> = HashMap::pinned(65536, 0);
/// Distinct network items per root cgroup: learned (learn mode) or would-deny (complain mode).
#[map]
static WARDEN_LEARN_NET: HashMap<LearnKey, u8> = HashMap::pinned(LEARN_NET_ENTRIES, 0);
#[map]
static WARDEN_LEARN_INFO: HashMap<u64, LearnInfo> = HashMap::pinned(65536, 0);
#[map]
static WARDEN_EVENTS: RingBuf = RingBuf::pinned(1 << 20, 0);
/// Index 0: pinned layout version (written by userspace). Index 1: cgroups that could not
/// inherit a policy because WARDEN_CGROUPS was full (the daemon alarms on it).
#[map]
static WARDEN_STATE: Array<u64> = Array::pinned(4, 0);

const STATE_INHERIT_FAILURES: u32 = 1;

const SIGKILL: u32 = 9;
const AF_INET6: u16 = 10;
const AF_INET: u16 = 2;
const SOCK_RAW: u32 = 3;

/// The policy that applies to cgroup `cgid`: its own, or its confined ancestor's.
/// Returns (root cgroup id, root policy).
#[inline(always)]
fn policy_for(cgid: u64) -> Option<(u64, CgroupPolicy)> {
    let p = unsafe { WARDEN_CGROUPS.get(&cgid) }?;
    resolve_entry(cgid, p)
}

/// The policy an entry stands for: itself, or (inherited) its root's.
#[inline(always)]
fn resolve_entry(cgid: u64, p: &CgroupPolicy) -> Option<(u64, CgroupPolicy)> {
    if p.flags & cgroup_flags::INHERITED == 0 {
        return Some((cgid, *p));
    }
    let root = p.root_cgroup;
    let r = unsafe { WARDEN_CGROUPS.get(&root) }?;
    if r.flags & cgroup_flags::INHERITED != 0 {
        return None;
    }
    Some((root, *r))
}

#[inline(always)]
fn profile(id: u32) -> Option<&'static ProfileHeader> {
    unsafe { WARDEN_PROFILES.get(&id) }
}

struct Attempt {
    kind: u8,
    nr: u32,
    family: u16,
    port: u16,
    addr: [u8; 16],
}

/// Count a violation (exactly, per CPU) and send an event unless the cgroup's rate window is
/// spent or the ring buffer is full, in which case the drop is counted.
#[inline(always)]
fn report(cgid: u64, root: u64, pol: &CgroupPolicy, verdict: u8, a: &Attempt) {
    let counters = match WARDEN_COUNTERS.get_ptr_mut(&root) {
        Some(c) => c,
        None => {
            let _ = WARDEN_COUNTERS.insert(&root, &Counters::default(), 0);
            match WARDEN_COUNTERS.get_ptr_mut(&root) {
                Some(c) => c,
                None => return,
            }
        }
    };
    let counters = unsafe { &mut *counters };
    if verdict != verdict::LEARNED {
        let k = a.kind as usize;
        if k < kind::COUNT {
            counters.violations[k] += 1;
        }
    }

    let now = unsafe { bpf_ktime_get_ns() };
    let limit = global(&EVENT_RATE_LIMIT);
    match WARDEN_RATE.get_ptr_mut(&root) {
        Some(w) => {
            let w = unsafe { &mut *w };
            if now.wrapping_sub(w.window_start_ns) >= 1_000_000_000 {
                w.window_start_ns = now;
                w.sent = 0;
            }
            if w.sent >= limit {
                counters.events_dropped += 1;
                return;
            }
            w.sent += 1;
        }
        None => {
            let _ = WARDEN_RATE.insert(&root, &RateWindow { window_start_ns: now, sent: 1 }, 0);
        }
    }

    let Some(mut entry) = WARDEN_EVENTS.reserve::<Event>(0) else {
        counters.events_dropped += 1;
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    entry.write(Event {
        cgroup_id: cgid,
        root_cgroup: root,
        ktime_ns: now,
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        profile_id: pol.profile_id,
        nr: a.nr,
        kind: a.kind,
        verdict,
        mode: pol.mode,
        _pad: 0,
        family: a.family,
        port: a.port,
        addr: a.addr,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    });
    entry.submit(0);
    counters.events_sent += 1;
}

#[inline(always)]
fn atomic_inc(p: *mut u64) {
    // An atomic add whose result is unused: BPF_ATOMIC_ADD (XADD), no lost counts across CPUs.
    unsafe { core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(p, 1) };
}

/// Records a network item of `root` in WARDEN_LEARN_NET, deduplicated: returns true only the
/// first time. A repeat costs this one lookup. Past the per-cgroup bound, or with the map full,
/// the item is counted as truncated instead (never lost silently). Independent of the event
/// rate limit.
///
/// Hook for file/exec learning (BPF-LSM branch): record those items of `root` with the same
/// scheme (a deduplicating map keyed by root cgroup + item, the same per-cgroup bound and
/// `LearnInfo` counters), and userspace adds them in `hook/src/learn.rs` (`Learned::files`).
#[inline(always)]
fn record(root: u64, a: &Attempt) -> bool {
    let key = LearnKey {
        root_cgroup: root,
        kind: a.kind,
        proto: a.nr as u8,
        family: a.family,
        port: a.port,
        _pad: [0; 2],
        addr: a.addr,
    };
    if unsafe { WARDEN_LEARN_NET.get(&key) }.is_some() {
        return false;
    }
    let info = match WARDEN_LEARN_INFO.get_ptr_mut(&root) {
        Some(i) => i,
        None => {
            let _ = WARDEN_LEARN_INFO.insert(&root, &LearnInfo::default(), 1 /* BPF_NOEXIST */);
            match WARDEN_LEARN_INFO.get_ptr_mut(&root) {
                Some(i) => i,
                None => return false,
            }
        }
    };
    let items = unsafe { core::ptr::addr_of_mut!((*info).items) };
    let truncated = unsafe { core::ptr::addr_of_mut!((*info).truncated) };
    if unsafe { core::ptr::read_volatile(items) } >= LEARN_ITEMS_PER_CGROUP {
        atomic_inc(truncated);
        return false;
    }
    // BPF_NOEXIST: of two CPUs adding the same item, one counts it.
    if WARDEN_LEARN_NET.insert(&key, &1, 1).is_err() {
        if unsafe { WARDEN_LEARN_NET.get(&key) }.is_none() {
            atomic_inc(truncated); // the map is full
        }
        return false;
    }
    atomic_inc(items);
    true
}

/// Mode logic shared by every layer: returns true when the attempt must be denied.
#[inline(always)]
fn judge(cgid: u64, root: u64, pol: &CgroupPolicy, allowed: bool, a: &Attempt) -> bool {
    if pol.mode == mode::LEARN {
        // Learn: everything goes through. Network items are recorded in the kernel (deduped,
        // bounded); only a new item sends an event, and the record does not depend on it.
        if a.kind != kind::SYSCALL && record(root, a) {
            report(cgid, root, pol, verdict::LEARNED, a);
        }
        return false;
    }
    if allowed {
        return false;
    }
    if pol.mode == mode::COMPLAIN {
        // Complain: what enforce would deny is also recorded, deduped, for `warden report`.
        if a.kind == kind::SYSCALL {
            if let Some(set) = WARDEN_LEARN_SC.get_ptr_mut(&root) {
                unsafe { (*set).seen[(a.nr as usize) & (SYSCALL_BITMAP_BITS - 1)] = 1 };
            }
        } else if a.kind != kind::COMPAT_SYSCALL {
            record(root, a);
        }
        report(cgid, root, pol, verdict::WOULD_DENY, a);
        return false;
    }
    report(cgid, root, pol, verdict::DENIED, a);
    true
}

// ---- syscalls --------------------------------------------------------------------------------

#[cfg(bpf_target_arch = "x86_64")]
mod arch {
    pub const NR_SOCKET: u64 = 41;
    pub const NR_SOCKETPAIR: u64 = 53;
    /// Offset of `di` (first syscall argument) in x86_64 `struct pt_regs` (fixed ABI layout).
    pub const PT_REGS_ARG0: usize = 14 * 8;
    /// x86 thread_info status bit set while a task is in a 32-bit (ia32) syscall.
    pub const TS_COMPAT: u32 = 0x0002;
}
#[cfg(not(bpf_target_arch = "x86_64"))]
mod arch {
    pub const NR_SOCKET: u64 = 198;
    pub const NR_SOCKETPAIR: u64 = 199;
    /// aarch64 `struct pt_regs` starts with regs[31]; x0 is the first argument.
    pub const PT_REGS_ARG0: usize = 0;
    pub const TS_COMPAT: u32 = 0;
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn warden_sys_enter(ctx: RawTracePointContext) -> i32 {
    // First step: one lookup. Unconfined processes leave here.
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some(entry) = (unsafe { WARDEN_CGROUPS.get(&cgid) }) else { return 0 };
    on_syscall(&ctx, cgid, entry);
    0
}

/// Calibration only (never attached by the engine): the cheapest possible sys_enter program,
/// so the benchmark can state warden's cost relative to the unavoidable cost of any hook.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn warden_noop_sys_enter(_ctx: RawTracePointContext) -> i32 {
    0
}

#[inline(always)]
fn on_syscall(ctx: &RawTracePointContext, cgid: u64, entry: &CgroupPolicy) {
    let Some((root, pol)) = resolve_entry(cgid, entry) else { return };
    let nr: u64 = ctx.arg::<u64>(1);

    if pol.mode == mode::LEARN {
        if nr < SYSCALL_BITMAP_BITS as u64 {
            if let Some(set) = WARDEN_LEARN_SC.get_ptr_mut(&root) {
                // One byte per syscall: a plain store, no read-modify-write race between CPUs.
                unsafe { (*set).seen[(nr as usize) & (SYSCALL_BITMAP_BITS - 1)] = 1 };
            }
        }
        // Socket families without a cgroup hook (unix, netlink, packet...) are only seen here.
        if nr == arch::NR_SOCKET || nr == arch::NR_SOCKETPAIR {
            let regs: *const u8 = ctx.arg::<*const u8>(0);
            let family: u64 = unsafe {
                bpf_probe_read_kernel(regs.wrapping_add(arch::PT_REGS_ARG0) as *const u64)
            }
            .unwrap_or(u64::MAX);
            if family < 64 {
                let a = Attempt { kind: kind::SOCKET, nr: 0, family: family as u16, port: 0, addr: [0; 16] };
                judge(cgid, root, &pol, true, &a);
            }
        }
        return;
    }

    let Some(hdr) = profile(pol.profile_id) else {
        // A confined cgroup whose profile vanished: fail closed.
        deny_syscall(cgid, root, &pol, kind::SYSCALL, nr as u32);
        return;
    };
    let restricts_syscalls = hdr.flags & profile_flags::SYSCALLS != 0;
    let restricts_families = hdr.flags & profile_flags::FAMILIES != 0;
    if !restricts_syscalls && !restricts_families {
        return;
    }

    // A 32-bit (compat) syscall's number means another call; the allow-list is for native
    // numbers, so a confined process may not use the compat entry at all.
    if arch::TS_COMPAT != 0 {
        let task = unsafe { bpf_get_current_task() } as *const u8;
        let off = global(&OFF_TASK_TI_STATUS) as usize;
        let status: u32 =
            unsafe { bpf_probe_read_kernel(task.wrapping_add(off) as *const u32) }.unwrap_or(0);
        if status & arch::TS_COMPAT != 0 {
            deny_syscall(cgid, root, &pol, kind::COMPAT_SYSCALL, nr as u32);
            return;
        }
    }

    if restricts_syscalls {
        let allowed = nr < SYSCALL_BITMAP_BITS as u64
            && (hdr.syscalls[((nr >> 6) & 7) as usize] >> (nr & 63)) & 1 == 1;
        if !allowed {
            if hdr.flags & profile_flags::SYSCALLS_LOG_ONLY != 0 {
                let a = Attempt { kind: kind::SYSCALL, nr: nr as u32, family: 0, port: 0, addr: [0; 16] };
                let complain = CgroupPolicy { mode: mode::COMPLAIN, ..pol };
                judge(cgid, root, &complain, false, &a);
            } else {
                deny_syscall(cgid, root, &pol, kind::SYSCALL, nr as u32);
            }
            return;
        }
    }

    // Socket families other than inet/inet6 (packet, netlink, ...) have no cgroup hook; judge
    // them at socket()/socketpair() entry. inet/inet6 raw sockets are refused with EPERM by
    // warden_sock_create.
    if restricts_families && (nr == arch::NR_SOCKET || nr == arch::NR_SOCKETPAIR) {
        let regs: *const u8 = ctx.arg::<*const u8>(0);
        let family: u64 = unsafe {
            bpf_probe_read_kernel(regs.wrapping_add(arch::PT_REGS_ARG0) as *const u64)
        }
        .unwrap_or(u64::MAX);
        // inet and inet6 are left to warden_sock_create, which refuses with EPERM instead of
        // a kill.
        let has_cgroup_hook = family == AF_INET as u64 || family == AF_INET6 as u64;
        let allowed = has_cgroup_hook || (family < 64 && (hdr.families >> family) & 1 == 1);
        if !allowed {
            let a = Attempt { kind: kind::SOCKET, nr: nr as u32, family: family as u16, port: 0, addr: [0; 16] };
            if judge(cgid, root, &pol, false, &a) {
                unsafe { bpf_send_signal(SIGKILL) };
            }
        }
    }
}

/// The syscall is outside the profile: SIGKILL in enforce (delivered before the process runs
/// another instruction; the syscall itself has already run on kernels without BPF-LSM), event
/// only in complain.
#[inline(always)]
fn deny_syscall(cgid: u64, root: u64, pol: &CgroupPolicy, k: u8, nr: u32) {
    let a = Attempt { kind: k, nr, family: 0, port: 0, addr: [0; 16] };
    if judge(cgid, root, pol, false, &a) {
        unsafe { bpf_send_signal(SIGKILL) };
    }
}

// ---- network ---------------------------------------------------------------------------------

const ALLOW: i32 = 1;
const DENY: i32 = 0;

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
    let attempt = Attempt { kind: k, nr: proto as u32, family, port, addr };

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
    if judge(cgid, root, &pol, allowed, &attempt) { DENY } else { ALLOW }
}

#[cgroup_sock_addr(connect4)]
pub fn warden_connect4(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, kind::CONNECT, false)
}

#[cgroup_sock_addr(connect6)]
pub fn warden_connect6(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, kind::CONNECT, true)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn warden_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, kind::SENDMSG, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn warden_sendmsg6(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, kind::SENDMSG, true)
}

#[cgroup_sock_addr(bind4)]
pub fn warden_bind4(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, kind::BIND, false)
}

#[cgroup_sock_addr(bind6)]
pub fn warden_bind6(ctx: SockAddrContext) -> i32 {
    sock_addr(&ctx, kind::BIND, true)
}

/// inet/inet6 socket creation: family allow-list and SOCK_RAW.
#[cgroup_sock(sock_create)]
pub fn warden_sock_create(ctx: SockContext) -> i32 {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some((root, pol)) = policy_for(cgid) else { return ALLOW };
    let sk = unsafe { &*ctx.sock };
    let family = sk.family;
    let ty = sk.type_;
    let attempt = Attempt { kind: kind::SOCKET, nr: sk.protocol, family: family as u16, port: ty as u16, addr: [0; 16] };
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
    if judge(cgid, root, &pol, allowed, &attempt) { DENY } else { ALLOW }
}

// ---- descendants -----------------------------------------------------------------------------

/// Reads the cgroup2 id of a `struct cgroup *` and whether it is on the cgroup2 hierarchy.
#[inline(always)]
fn cgroup_id_v2(cgrp: *const u8) -> Option<u64> {
    unsafe {
        let root: *const u8 =
            bpf_probe_read_kernel(cgrp.wrapping_add(global(&OFF_CGROUP_ROOT) as usize) as *const *const u8).ok()?;
        let hid: i32 = bpf_probe_read_kernel(
            root.wrapping_add(global(&OFF_CGROUP_ROOT_HIERARCHY_ID) as usize) as *const i32,
        )
        .ok()?;
        if hid != 0 {
            return None; // a cgroup v1 hierarchy (hybrid hosts): ids there are another space
        }
        let kn: *const u8 =
            bpf_probe_read_kernel(cgrp.wrapping_add(global(&OFF_CGROUP_KN) as usize) as *const *const u8).ok()?;
        bpf_probe_read_kernel(kn.wrapping_add(global(&OFF_KERNFS_NODE_ID) as usize) as *const u64).ok()
    }
}

#[raw_tracepoint(tracepoint = "cgroup_mkdir")]
pub fn warden_cgroup_mkdir(ctx: RawTracePointContext) -> i32 {
    let cgrp: *const u8 = ctx.arg::<*const u8>(0);
    let Some(id) = cgroup_id_v2(cgrp) else { return 0 };
    // `self` is the first member of struct cgroup, so the parent css is the parent cgroup.
    let parent: *const u8 = match unsafe {
        bpf_probe_read_kernel(cgrp.wrapping_add(global(&OFF_CGROUP_PARENT) as usize) as *const *const u8)
    } {
        Ok(p) if !p.is_null() => p,
        _ => return 0,
    };
    let Some(parent_id) = cgroup_id_v2(parent) else { return 0 };
    let Some(pp) = (unsafe { WARDEN_CGROUPS.get(&parent_id) }) else { return 0 };
    let root = if pp.flags & cgroup_flags::INHERITED != 0 { pp.root_cgroup } else { parent_id };
    let child = CgroupPolicy {
        profile_id: pp.profile_id,
        mode: pp.mode,
        flags: cgroup_flags::INHERITED,
        _pad: [0; 2],
        root_cgroup: root,
    };
    if WARDEN_CGROUPS.insert(&id, &child, 0).is_err() {
        if let Some(n) = WARDEN_STATE.get_ptr_mut(STATE_INHERIT_FAILURES) {
            unsafe { *n += 1 };
        }
    }
    0
}

#[raw_tracepoint(tracepoint = "cgroup_rmdir")]
pub fn warden_cgroup_rmdir(ctx: RawTracePointContext) -> i32 {
    let cgrp: *const u8 = ctx.arg::<*const u8>(0);
    let Some(id) = cgroup_id_v2(cgrp) else { return 0 };
    if let Some(p) = unsafe { WARDEN_CGROUPS.get(&id) } {
        // Only entries the kernel made; a container's own entry is the daemon's to remove.
        if p.flags & cgroup_flags::INHERITED != 0 {
            let _ = WARDEN_CGROUPS.remove(&id);
        }
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[no_mangle]
#[link_section = "license"]
pub static LICENSE: [u8; 4] = *b"GPL\0";
