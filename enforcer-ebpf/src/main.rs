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
//! - `warden_file_open`, `warden_bprm_check` and the `warden_path_*` programs (BPF-LSM): the
//!   files allow-list (r/w/x by path, an LPM trie per profile); denial = EPERM.
//! - `warden_sb_mount`, `warden_ptrace`, `warden_bpf`, ... (BPF-LSM): dangerous syscalls outside
//!   the syscall allow-list fail with EPERM before they do anything (the sys_enter kill follows).
//!
//! The LSM programs are global `lsm` programs whose first step is the cgroup lookup, not
//! `lsm_cgroup` programs: warden uses ~20 hooks and the kernel allows at most 10 distinct
//! lsm_cgroup hooks system-wide (shared with every other user), descendants of a confined
//! cgroup are already covered by the WARDEN_CGROUPS entries the mkdir tracepoint writes, and the
//! loader attaches them only while some confined cgroup needs them (like sys_enter). The cost
//! for an unconfined process is one hash lookup per hook call.
//!
//! Every program function is `#[inline(always)]`: aya's macros wrap the body as an inner
//! function, and if LLVM keeps that as a separate subprogram, kernel 6.1's verifier rejects its
//! context argument ("reg type unsupported for arg#0").
#![no_std]
#![no_main]
// atomic_xadd: the bpf target has no AtomicU64::fetch_add, but the kernel has atomic add.
#![allow(internal_features)]
#![feature(core_intrinsics)]
// Map keys and values are passed to aya-ebpf by reference on purpose: taking them by value
// would copy each key (some are 256 bytes) onto the 512-byte BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_task_btf, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_send_signal,
    },
    macros::{cgroup_sock, cgroup_sock_addr, lsm, map, raw_tracepoint},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{LsmContext, RawTracePointContext, SockAddrContext, SockContext},
};
use warden_common::{
    access, cgroup_flags, file_op, kind, mode, profile_flags, verdict, CgroupPolicy, Counters, Event, FileEvent,
    FileKey, LearnFileKey, LearnFileUse, LearnInfo, LearnKey, Net4Key, Net6Key, PathScratch, PortRules, ProfileHeader,
    ProfileMeta, RateWindow, SyscallSet, EVENT_PATH_MAX, FILE_PATH_MAX, LEARN_FILES_ENTRIES, LEARN_FILES_PER_CGROUP,
    LEARN_ITEMS_PER_CGROUP, LEARN_NET_ENTRIES, LEARN_PATH_MAX, PATH_SCRATCH, SYSCALL_BITMAP_BITS,
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
static OFF_FILE_F_PATH: u64 = 0;
#[no_mangle]
static OFF_FILE_F_MODE: u64 = 0;
#[no_mangle]
static OFF_FILE_F_INODE: u64 = 0;
#[no_mangle]
static OFF_INODE_I_MODE: u64 = 0;
#[no_mangle]
static OFF_BPRM_FILE: u64 = 0;
#[no_mangle]
static OFF_PATH_MNT: u64 = 0;
#[no_mangle]
static OFF_PATH_DENTRY: u64 = 0;
#[no_mangle]
static OFF_DENTRY_PARENT: u64 = 0;
#[no_mangle]
static OFF_DENTRY_NAME_LEN: u64 = 0;
#[no_mangle]
static OFF_DENTRY_NAME: u64 = 0;
#[no_mangle]
static OFF_VFSMOUNT_ROOT: u64 = 0;
#[no_mangle]
static OFF_MOUNT_MNT: u64 = 0;
#[no_mangle]
static OFF_MOUNT_PARENT: u64 = 0;
#[no_mangle]
static OFF_MOUNT_MOUNTPOINT: u64 = 0;
#[no_mangle]
static OFF_MOUNT_NS: u64 = 0;
#[no_mangle]
static OFF_TASK_FS: u64 = 0;
#[no_mangle]
static OFF_FS_ROOT: u64 = 0;
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
/// Distinct paths per root cgroup, with the access bits used: learned (learn mode) or
/// would-deny (complain mode). Entries are allocated as they come (BPF_F_NO_PREALLOC).
#[map]
static WARDEN_LEARN_FILES: HashMap<LearnFileKey, LearnFileUse> =
    HashMap::pinned(LEARN_FILES_ENTRIES, 1 /* BPF_F_NO_PREALLOC */);
#[map]
static WARDEN_EVENTS: RingBuf = RingBuf::pinned(1 << 20, 0);
/// Files rules: (profile id, path bytes) -> access bits (see warden_common::FileKey).
#[map]
static WARDEN_FILES: LpmTrie<FileKey, u32> = LpmTrie::pinned(65536, 0);
/// Per-CPU scratch for path keys (too large for the stack). Not pinned: each loaded object has
/// its own. The LSM programs are not sleepable, so nothing else runs on this CPU meanwhile.
#[map]
static WARDEN_PATH_SCRATCH: PerCpuArray<PathScratch> = PerCpuArray::with_max_entries(1, 0);
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
    /// FILE and EXEC: the resolved path (NUL terminated, in the per-CPU scratch).
    path: *const u8,
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

    let pid_tgid = bpf_get_current_pid_tgid();
    let ev = Event {
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
    };
    if a.kind == kind::FILE || a.kind == kind::EXEC {
        let Some(mut entry) = WARDEN_EVENTS.reserve::<FileEvent>(0) else {
            counters.events_dropped += 1;
            return;
        };
        let p = entry.as_mut_ptr();
        unsafe {
            (*p).ev = ev;
            let dst = (*p).path.as_mut_ptr();
            if aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                dst as *mut _,
                EVENT_PATH_MAX as u32,
                a.path as *const _,
            ) != 0
            {
                *dst = 0;
            }
            (*p).path[EVENT_PATH_MAX - 1] = 0;
        }
        entry.submit(0);
    } else {
        let Some(mut entry) = WARDEN_EVENTS.reserve::<Event>(0) else {
            counters.events_dropped += 1;
            return;
        };
        entry.write(ev);
        entry.submit(0);
    }
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
/// Kinds whose items fit the learn dedupe key (address, port, protocol, family).
#[inline(always)]
fn is_network(k: u8) -> bool {
    k == kind::CONNECT || k == kind::SENDMSG || k == kind::BIND || k == kind::SOCKET
}

/// The learn record bounds of `root` (userspace creates them at confine; the kernel only as a
/// fallback).
#[inline(always)]
fn learn_info(root: u64) -> Option<*mut LearnInfo> {
    if let Some(i) = WARDEN_LEARN_INFO.get_ptr_mut(&root) {
        return Some(i);
    }
    let _ = WARDEN_LEARN_INFO.insert(&root, &LearnInfo::default(), 1 /* BPF_NOEXIST */);
    WARDEN_LEARN_INFO.get_ptr_mut(&root)
}

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
    let Some(info) = learn_info(root) else { return false };
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

/// Records a file or exec item of `root` in WARDEN_LEARN_FILES: the path in the per-CPU
/// scratch (`a.path`), the access bits in `a.nr`. Returns true when the path or one of its
/// bits is new (then an event goes out); a repeat costs one lookup. Bounded like `record`.
#[inline(always)]
fn record_file(root: u64, a: &Attempt) -> bool {
    let Some(s) = scratch() else { return false };
    let k = &mut s.learn_key;
    // Zero the key so equal paths make equal keys whatever the scratch held before.
    let words = k.path.as_mut_ptr() as *mut u64;
    let mut i = 0;
    while i < LEARN_PATH_MAX / 8 {
        unsafe { *words.add(i) = 0 };
        i += 1;
    }
    k.root_cgroup = root;
    let n = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
            k.path.as_mut_ptr() as *mut _,
            LEARN_PATH_MAX as u32,
            a.path as *const _,
        )
    };
    let need = (a.nr & 0xff) as u8;
    // The helper copied LEARN_PATH_MAX - 1 bytes and a NUL: the path may have been longer.
    let cut = n >= LEARN_PATH_MAX as i64;
    if let Some(v) = WARDEN_LEARN_FILES.get_ptr_mut(&*k) {
        return unsafe { merge_use(&mut *v, need, cut) };
    }
    let u = LearnFileUse {
        read: (need & access::READ != 0) as u8,
        write: (need & access::WRITE != 0) as u8,
        exec: (need & access::EXEC != 0) as u8,
        cut: cut as u8,
        _pad: [0; 4],
    };
    let Some(info) = learn_info(root) else { return false };
    let items = unsafe { core::ptr::addr_of_mut!((*info).file_items) };
    let truncated = unsafe { core::ptr::addr_of_mut!((*info).file_truncated) };
    if unsafe { core::ptr::read_volatile(items) } >= LEARN_FILES_PER_CGROUP {
        atomic_inc(truncated);
        return false;
    }
    if WARDEN_LEARN_FILES.insert(&*k, &u, 1 /* BPF_NOEXIST */).is_err() {
        match WARDEN_LEARN_FILES.get_ptr_mut(&*k) {
            // Another CPU added the path meanwhile: add our use to it.
            Some(v) => return unsafe { merge_use(&mut *v, need, cut) },
            None => atomic_inc(truncated), // the map is full
        }
        return false;
    }
    atomic_inc(items);
    true
}

/// Marks `need` (and `cut`) in a record; true if something was new. One byte per kind of use,
/// set with plain stores of 1: CPUs racing on the same record cannot lose each other's marks
/// (no read-modify-write of a shared word).
#[inline(always)]
unsafe fn merge_use(v: &mut LearnFileUse, need: u8, cut: bool) -> bool {
    let mut new = false;
    if need & access::READ != 0 && core::ptr::read_volatile(&v.read) == 0 {
        v.read = 1;
        new = true;
    }
    if need & access::WRITE != 0 && core::ptr::read_volatile(&v.write) == 0 {
        v.write = 1;
        new = true;
    }
    if need & access::EXEC != 0 && core::ptr::read_volatile(&v.exec) == 0 {
        v.exec = 1;
        new = true;
    }
    if cut && core::ptr::read_volatile(&v.cut) == 0 {
        v.cut = 1;
    }
    new
}

#[inline(always)]
fn is_file(k: u8) -> bool {
    k == kind::FILE || k == kind::EXEC
}

/// Mode logic shared by every layer: returns true when the attempt must be denied.
#[inline(always)]
fn judge(cgid: u64, root: u64, pol: &CgroupPolicy, allowed: bool, a: &Attempt) -> bool {
    if pol.mode == mode::LEARN {
        // Learn: everything goes through. Network, file and exec items are recorded in the
        // kernel (deduped, bounded); only a new item sends an event, and the record does not
        // depend on it (events may be dropped; records are not).
        if is_network(a.kind) {
            if record(root, a) {
                report(cgid, root, pol, verdict::LEARNED, a);
            }
        } else if is_file(a.kind) {
            if record_file(root, a) {
                report(cgid, root, pol, verdict::LEARNED, a);
            }
        } else if a.kind != kind::SYSCALL {
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
        } else if is_network(a.kind) {
            record(root, a);
        } else if is_file(a.kind) {
            record_file(root, a);
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
#[inline(always)]
pub fn warden_sys_enter(ctx: RawTracePointContext) -> i32 {
    // First step: one lookup. Unconfined processes leave here.
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some(entry) = (unsafe { WARDEN_CGROUPS.get(&cgid) }) else { return 0 };
    on_syscall(&ctx, cgid, entry);
    0
}

/// Calibration only (never attached by the engine): the cheapest possible sys_enter program,
/// so the benchmark can state warden's cost relative to the unavoidable cost of any hook.
// Its own ELF section (plain `raw_tp`, attached to sys_enter by name at run time): two programs
// in one section make older verifiers (6.1) treat the second as a subprogram of the first.
#[raw_tracepoint]
#[inline(always)]
pub fn warden_noop_sys_enter(_ctx: RawTracePointContext) -> i32 {
    0
}

#[inline(always)]
fn on_syscall(ctx: &RawTracePointContext, cgid: u64, entry: &CgroupPolicy) {
    let Some((root, pol)) = resolve_entry(cgid, entry) else { return };
    let nr: u64 = ctx.arg::<u64>(1);

    if pol.mode == mode::LEARN {
        if let Some(set) = WARDEN_LEARN_SC.get_ptr_mut(&root) {
            // One byte per syscall (no bit read-modify-write two CPUs could race on). Masked and
            // unconditional for the verifier (see the enforce path below); out-of-range numbers
            // OR in 0.
            let idx = (nr as usize) & (SYSCALL_BITMAP_BITS - 1);
            unsafe { (*set).seen[idx] |= (nr < SYSCALL_BITMAP_BITS as u64) as u8 };
        }
        // Socket families without a cgroup hook (unix, netlink, packet...) are only seen here.
        if nr == arch::NR_SOCKET || nr == arch::NR_SOCKETPAIR {
            let regs: *const u8 = ctx.arg::<*const u8>(0);
            let family: u64 = unsafe { bpf_probe_read_kernel(regs.wrapping_add(arch::PT_REGS_ARG0) as *const u64) }
                .unwrap_or(u64::MAX);
            if family < 64 {
                // A plain byte store in the cgroup's learn record (no dedupe insert, no event):
                // routing this through judge()/report() again made the program too much for
                // kernel 6.1's verifier.
                if let Some(info) = learn_info(root) {
                    unsafe { (*info).families[(family & 63) as usize] = 1 };
                }
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
        // A BTF task pointer and a plain load (the verifier checks the offset against
        // task_struct's BTF; it is a constant from frozen .rodata): no bpf_get_current_task +
        // bpf_probe_read_kernel pair on every allowed syscall.
        let task = unsafe { bpf_get_current_task_btf() } as *const u8;
        let off = global(&OFF_TASK_TI_STATUS) as usize;
        let status: u32 = unsafe { core::ptr::read_volatile(task.wrapping_add(off) as *const u32) };
        if status & arch::TS_COMPAT != 0 {
            deny_syscall(cgid, root, &pol, kind::COMPAT_SYSCALL, nr as u32);
            return;
        }
    }

    if restricts_syscalls {
        // The load is unconditional and masked, and the range test is combined with `&`, not
        // `&&`: behind a dominating `nr < 512` branch LLVM drops the mask, and older verifiers
        // (6.1) then see an unbounded index.
        let word = hdr.syscalls[((nr >> 6) & 7) as usize];
        let allowed = (nr < SYSCALL_BITMAP_BITS as u64) & ((word >> (nr & 63)) & 1 == 1);
        if !allowed {
            if hdr.flags & profile_flags::SYSCALLS_LOG_ONLY != 0 {
                let a = Attempt {
                    kind: kind::SYSCALL,
                    nr: nr as u32,
                    family: 0,
                    port: 0,
                    addr: [0; 16],
                    path: core::ptr::null(),
                };
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
        let family: u64 =
            unsafe { bpf_probe_read_kernel(regs.wrapping_add(arch::PT_REGS_ARG0) as *const u64) }.unwrap_or(u64::MAX);
        // inet and inet6 are left to warden_sock_create, which refuses with EPERM instead of
        // a kill.
        let has_cgroup_hook = family == AF_INET as u64 || family == AF_INET6 as u64;
        let allowed = has_cgroup_hook || (family < 64 && (hdr.families >> family) & 1 == 1);
        if !allowed {
            let a = Attempt {
                kind: kind::SOCKET,
                nr: nr as u32,
                family: family as u16,
                port: 0,
                addr: [0; 16],
                path: core::ptr::null(),
            };
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
    let a = Attempt { kind: k, nr, family: 0, port: 0, addr: [0; 16], path: core::ptr::null() };
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

// ---- files and execs (BPF-LSM) ---------------------------------------------------------------

/// LSM verdicts: 0 lets the operation go on, -EPERM refuses it.
const LSM_ALLOW: i32 = 0;
const LSM_DENY: i32 = -1;

const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;
const FMODE_EXEC: u32 = 0x20;

/// Path components (and mount crossings) the dir+dentry path builder follows.
const MAX_PATH_DEPTH: u32 = 40;

#[inline(always)]
fn scratch() -> Option<&'static mut PathScratch> {
    WARDEN_PATH_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
unsafe fn read<T>(base: *const u8, off: u64) -> Option<T> {
    bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T).ok()
}

/// The policy of the current process when its files (or execs) are judged or learned.
/// None: not confined, or its profile does not restrict files and it is not learning.
#[inline(always)]
fn files_policy() -> Option<(u64, u64, CgroupPolicy, bool)> {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let (root, pol) = policy_for(cgid)?;
    let restricts = match profile(pol.profile_id) {
        None => true, // confined, profile missing: fail closed
        Some(h) => h.flags & profile_flags::FILES != 0,
    };
    if !restricts && pol.mode != mode::LEARN {
        return None;
    }
    Some((cgid, root, pol, restricts))
}

/// Judges the path in `s.path` (`n`: its length with the NUL as the kernel returned it, or a
/// negative error) against the profile: the longest matching rule must grant `need`.
// Inlined into each file hook: the arguments are the hook's own registers, and a struct to
// carry them would only add stack traffic.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn judge_path(
    cgid: u64,
    root: u64,
    pol: &CgroupPolicy,
    restricts: bool,
    s: &mut PathScratch,
    n: i64,
    need: u8,
    op: u16,
    k: u8,
) -> i32 {
    if n <= 0 {
        s.path[0] = 0;
    }
    let allowed = if !restricts {
        true
    } else if n <= 0 {
        false // unresolvable path (too long, ...): fail closed
    } else {
        // A path longer than the key is judged by its first FILE_PATH_MAX bytes: only directory
        // rules can match those, which is exact (no exact rule is that long).
        let bytes = if n as usize > FILE_PATH_MAX { FILE_PATH_MAX } else { n as usize };
        s.prefixlen = 32 + (bytes as u32) * 8;
        s.profile_id_be = pol.profile_id.to_be_bytes();
        let key = unsafe { &*(s as *const PathScratch as *const Key<FileKey>) };
        match WARDEN_FILES.get(key) {
            Some(a) => (*a as u8) & need == need,
            None => false,
        }
    };
    let a = Attempt { kind: k, nr: need as u32, family: 0, port: op, addr: [0; 16], path: s.path.as_ptr() };
    if judge(cgid, root, pol, allowed, &a) {
        LSM_DENY
    } else {
        LSM_ALLOW
    }
}

/// bpf_d_path of `file->f_path` into the scratch; returns what the helper returned.
#[inline(always)]
fn file_path(s: &mut PathScratch, file: *const u8) -> i64 {
    let p = file.wrapping_add(global(&OFF_FILE_F_PATH) as usize) as *mut aya_ebpf::bindings::path;
    unsafe { aya_ebpf::helpers::generated::bpf_d_path(p, s.path.as_mut_ptr() as *mut _, PATH_SCRATCH as u32) }
}

#[lsm(hook = "file_open")]
#[inline(always)]
pub fn warden_file_open(ctx: LsmContext) -> i32 {
    let Some((cgid, root, pol, restricts)) = files_policy() else { return LSM_ALLOW };
    let file: *const u8 = ctx.arg(0);
    let fmode: u32 = unsafe { read(file, global(&OFF_FILE_F_MODE)) }.unwrap_or(0);
    if fmode & FMODE_EXEC != 0 {
        return LSM_ALLOW; // the exec itself is judged by bprm_check_security
    }
    let mut need = 0u8;
    if fmode & FMODE_READ != 0 {
        need |= access::READ;
    }
    if fmode & FMODE_WRITE != 0 {
        need |= access::WRITE;
    }
    if need == 0 {
        return LSM_ALLOW;
    }
    if on_internal_mount(file) {
        return LSM_ALLOW;
    }
    let Some(s) = scratch() else { return LSM_DENY };
    let mut n = file_path(s, file);
    // A directory is judged as `path/`, so the rule `/etc/` also covers opendir("/etc").
    let imode: u16 = unsafe {
        read::<*const u8>(file, global(&OFF_FILE_F_INODE)).and_then(|i| read::<u16>(i, global(&OFF_INODE_I_MODE)))
    }
    .unwrap_or(0);
    // FIFOs and sockets opened by path are IPC endpoints, not file contents (runc's exec fifo,
    // reopened through /proc/self/fd at container start, is one): not judged. Creating them
    // (mknod) is.
    if imode & S_IFMT == S_IFIFO || imode & S_IFMT == S_IFSOCK {
        return LSM_ALLOW;
    }
    if imode & S_IFMT == S_IFDIR && n >= 2 && (n as usize) < PATH_SCRATCH - 1 {
        // Through map memory, so the masked index is what the verifier sees.
        s.pos = (n as u64).wrapping_sub(2);
        let last = (unsafe { core::ptr::read_volatile(&s.pos) } as usize) & (PATH_SCRATCH - 1);
        if s.path[last] != b'/' {
            s.path[(last + 1) & (PATH_SCRATCH - 1)] = b'/';
            s.path[(last + 2) & (PATH_SCRATCH - 1)] = 0;
            n += 1;
        }
    }
    judge_path(cgid, root, &pol, restricts, s, n, need, file_op::OPEN, kind::FILE)
}

/// `MNT_NS_INTERNAL` (fs/mount.h): ERR_PTR(-EINVAL) in `mount->mnt_ns` of long-term kernel
/// mounts (clone_private_mount, kern_mount).
const MNT_NS_INTERNAL: u64 = -22i64 as u64;

/// Whether `file` lives on a kernel-internal mount that no path walk in any mount namespace
/// reaches. Since 6.8 overlayfs opens its layers' real files as "backing files" whose f_path is
/// the real path on a private clone of the layer mount (before, it was the overlay path), and
/// that open runs file_open again in the opener's context: judging it would judge the image's
/// layer path (`/var/lib/containerd/...`), not the path the process opened. The process's own
/// open of the overlay file was judged just before (do_dentry_open calls security_file_open
/// before f_op->open). Otherwise only magic links (/proc/PID/fd, /proc/PID/ns) reach such
/// mounts (memfd, nsfs), for objects the process already holds: nothing a path rule can name.
#[inline(always)]
fn on_internal_mount(file: *const u8) -> bool {
    let f_path = global(&OFF_FILE_F_PATH);
    let Some(mnt) = (unsafe { read::<u64>(file, f_path + global(&OFF_PATH_MNT)) }) else { return false };
    let mount = (mnt as *const u8).wrapping_sub(global(&OFF_MOUNT_MNT) as usize);
    matches!(unsafe { read::<u64>(mount, global(&OFF_MOUNT_NS)) }, Some(MNT_NS_INTERNAL))
}

const S_IFMT: u16 = 0o170000;
const S_IFDIR: u16 = 0o040000;
const S_IFIFO: u16 = 0o010000;
const S_IFSOCK: u16 = 0o140000;

/// Runs for the executable and again for a script's interpreter (binfmt_script), so both need x.
#[lsm(hook = "bprm_check_security")]
#[inline(always)]
pub fn warden_bprm_check(ctx: LsmContext) -> i32 {
    let Some((cgid, root, pol, restricts)) = files_policy() else { return LSM_ALLOW };
    let bprm: *const u8 = ctx.arg(0);
    // A direct load (not a probe read): the verifier knows bprm->file as a trusted struct file.
    let file: *const u8 =
        unsafe { core::ptr::read_volatile(bprm.wrapping_add(global(&OFF_BPRM_FILE) as usize) as *const *const u8) };
    let Some(s) = scratch() else { return LSM_DENY };
    let n = file_path(s, file);
    judge_path(cgid, root, &pol, restricts, s, n, access::EXEC, file_op::EXEC, kind::EXEC)
}

/// Builds the path of `dentry` on mount `vfsmnt`, as the current task sees it (up to its root,
/// across mounts), into `s.path`; returns its length with the NUL, or -1. bpf_d_path is not
/// allowed in the path_* hooks, so this walks d_parent / mnt_parent like d_path does.
#[inline(always)]
fn build_path(s: &mut PathScratch, vfsmnt: *const u8, dentry: *const u8) -> i64 {
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let (root_mnt, root_dentry) = unsafe {
        let Some(fs) = read::<*const u8>(task, global(&OFF_TASK_FS)) else { return -1 };
        let r = global(&OFF_FS_ROOT);
        let Some(m) = read::<*const u8>(fs, r + global(&OFF_PATH_MNT)) else { return -1 };
        let Some(d) = read::<*const u8>(fs, r + global(&OFF_PATH_DENTRY)) else { return -1 };
        (m as u64, d as u64)
    };
    const END: usize = PATH_SCRATCH - 1;
    const MASK: u64 = (PATH_SCRATCH - 1) as u64;
    s.work[END] = 0;
    s.pos = END as u64;
    s.cur_mnt = vfsmnt as u64;
    s.cur_dentry = dentry as u64;
    let mut done = false;
    let mut i = 0;
    while i < MAX_PATH_DEPTH {
        i += 1;
        // Loop state from map memory: unknown scalars to the verifier, so iterations prune.
        let mnt = unsafe { core::ptr::read_volatile(&s.cur_mnt) };
        let den = unsafe { core::ptr::read_volatile(&s.cur_dentry) };
        let pos = unsafe { core::ptr::read_volatile(&s.pos) } & MASK;
        if den == root_dentry && mnt == root_mnt {
            done = true;
            break;
        }
        let Some(mnt_root) = (unsafe { read::<u64>(mnt as *const u8, global(&OFF_VFSMOUNT_ROOT)) }) else { return -1 };
        if den == mnt_root {
            // Top of this mount: continue from its mountpoint in the parent mount.
            let mount = (mnt as *const u8).wrapping_sub(global(&OFF_MOUNT_MNT) as usize);
            let Some(parent) = (unsafe { read::<u64>(mount, global(&OFF_MOUNT_PARENT)) }) else { return -1 };
            if parent == mount as u64 {
                done = true; // root of the mount tree
                break;
            }
            let Some(mp) = (unsafe { read::<u64>(mount, global(&OFF_MOUNT_MOUNTPOINT)) }) else { return -1 };
            s.cur_dentry = mp;
            s.cur_mnt = parent + global(&OFF_MOUNT_MNT);
            continue;
        }
        let Some(parent) = (unsafe { read::<u64>(den as *const u8, global(&OFF_DENTRY_PARENT)) }) else { return -1 };
        if parent == den {
            done = true; // root of a detached tree
            break;
        }
        let Some(len) = (unsafe { read::<u32>(den as *const u8, global(&OFF_DENTRY_NAME_LEN)) }) else { return -1 };
        let Some(name) = (unsafe { read::<u64>(den as *const u8, global(&OFF_DENTRY_NAME)) }) else { return -1 };
        let len = (len & 0xff) as u64;
        if len + 1 >= pos {
            return -1; // longer than the scratch: fail closed
        }
        let p = (pos - len) & MASK;
        if unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                s.work.as_mut_ptr().wrapping_add(p as usize) as *mut _,
                len as u32,
                name as *const _,
            )
        } != 0
        {
            return -1;
        }
        let p = (p.wrapping_sub(1)) & MASK;
        s.work[p as usize] = b'/';
        s.pos = p;
        s.cur_dentry = parent;
    }
    if !done {
        return -1;
    }
    let mut pos = s.pos & MASK;
    if pos == END as u64 {
        pos -= 1;
        s.work[pos as usize] = b'/';
    }
    let n = ((PATH_SCRATCH as u64) - pos) & MASK;
    let src = s.work.as_ptr().wrapping_add(pos as usize);
    if unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(s.path.as_mut_ptr() as *mut _, n as u32, src as *const _)
    } != 0
    {
        return -1;
    }
    n as i64
}

/// Judges `dentry` below the directory `dir` (a `struct path *`) for `need`.
#[inline(always)]
fn dir_entry(dir: *const u8, dentry: *const u8, need: u8, op: u16) -> i32 {
    let Some((cgid, root, pol, restricts)) = files_policy() else { return LSM_ALLOW };
    let Some(s) = scratch() else { return LSM_DENY };
    let Some(mnt) = (unsafe { read::<*const u8>(dir, global(&OFF_PATH_MNT)) }) else { return LSM_DENY };
    let n = build_path(s, mnt, dentry);
    judge_path(cgid, root, &pol, restricts, s, n, need, op, kind::FILE)
}

/// Judges the object of a `struct path *` for `need`.
#[inline(always)]
fn whole_path(path: *const u8, need: u8, op: u16) -> i32 {
    let Some(dentry) = (unsafe { read::<*const u8>(path, global(&OFF_PATH_DENTRY)) }) else { return LSM_DENY };
    dir_entry(path, dentry, need, op)
}

#[lsm(hook = "path_mknod")]
#[inline(always)]
pub fn warden_path_mknod(ctx: LsmContext) -> i32 {
    dir_entry(ctx.arg(0), ctx.arg(1), access::WRITE, file_op::CREATE)
}

#[lsm(hook = "path_mkdir")]
#[inline(always)]
pub fn warden_path_mkdir(ctx: LsmContext) -> i32 {
    dir_entry(ctx.arg(0), ctx.arg(1), access::WRITE, file_op::MKDIR)
}

#[lsm(hook = "path_unlink")]
#[inline(always)]
pub fn warden_path_unlink(ctx: LsmContext) -> i32 {
    dir_entry(ctx.arg(0), ctx.arg(1), access::WRITE, file_op::UNLINK)
}

#[lsm(hook = "path_rmdir")]
#[inline(always)]
pub fn warden_path_rmdir(ctx: LsmContext) -> i32 {
    dir_entry(ctx.arg(0), ctx.arg(1), access::WRITE, file_op::RMDIR)
}

#[lsm(hook = "path_symlink")]
#[inline(always)]
pub fn warden_path_symlink(ctx: LsmContext) -> i32 {
    dir_entry(ctx.arg(0), ctx.arg(1), access::WRITE, file_op::SYMLINK)
}

/// Both ends of a rename need w.
#[lsm(hook = "path_rename")]
#[inline(always)]
pub fn warden_path_rename(ctx: LsmContext) -> i32 {
    let r = dir_entry(ctx.arg(0), ctx.arg(1), access::WRITE, file_op::RENAME_FROM);
    if r != LSM_ALLOW {
        return r;
    }
    dir_entry(ctx.arg(2), ctx.arg(3), access::WRITE, file_op::RENAME_TO)
}

/// The new name needs w; and since files are judged by path, a hard link must not reach more
/// than its source: the source must grant r (a link is a new way to open it).
#[lsm(hook = "path_link")]
#[inline(always)]
pub fn warden_path_link(ctx: LsmContext) -> i32 {
    let old_dentry: *const u8 = ctx.arg(0);
    let new_dir: *const u8 = ctx.arg(1);
    let r = dir_entry(new_dir, ctx.arg(2), access::WRITE, file_op::LINK);
    if r != LSM_ALLOW {
        return r;
    }
    // Same mount as the new name (the kernel refuses cross-mount links before this hook).
    dir_entry(new_dir, old_dentry, access::READ, file_op::LINK_SOURCE)
}

#[lsm(hook = "path_truncate")]
#[inline(always)]
pub fn warden_path_truncate(ctx: LsmContext) -> i32 {
    whole_path(ctx.arg(0), access::WRITE, file_op::TRUNCATE)
}

#[lsm(hook = "path_chmod")]
#[inline(always)]
pub fn warden_path_chmod(ctx: LsmContext) -> i32 {
    whole_path(ctx.arg(0), access::WRITE, file_op::CHMOD)
}

#[lsm(hook = "path_chown")]
#[inline(always)]
pub fn warden_path_chown(ctx: LsmContext) -> i32 {
    whole_path(ctx.arg(0), access::WRITE, file_op::CHOWN)
}

// ---- dangerous syscalls refused before they run (BPF-LSM) ------------------------------------

#[cfg(bpf_target_arch = "x86_64")]
const PT_REGS_SYSCALL_NR: usize = 15 * 8; // orig_ax
#[cfg(not(bpf_target_arch = "x86_64"))]
const PT_REGS_SYSCALL_NR: usize = 34 * 8 + 8; // aarch64 syscallno

/// The syscall the current task is in (from its saved user registers), or -1.
#[inline(always)]
fn current_syscall() -> i64 {
    unsafe {
        let task = aya_ebpf::helpers::generated::bpf_get_current_task_btf();
        let regs = aya_ebpf::helpers::generated::bpf_task_pt_regs(task) as *const u8;
        match bpf_probe_read_kernel(regs.wrapping_add(PT_REGS_SYSCALL_NR) as *const i32) {
            Ok(n) => n as i64,
            Err(_) => -1,
        }
    }
}

/// EPERM when a confined process in enforce mode reached this hook through a syscall its
/// profile does not allow (sys_enter has already sent SIGKILL and reported it; this makes sure
/// the syscall has no effect). Log-only syscall policies are left alone.
#[inline(always)]
fn syscall_gate() -> i32 {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some((_, pol)) = policy_for(cgid) else { return LSM_ALLOW };
    if pol.mode != mode::ENFORCE {
        return LSM_ALLOW;
    }
    let Some(hdr) = profile(pol.profile_id) else { return LSM_DENY };
    if hdr.flags & profile_flags::SYSCALLS == 0 || hdr.flags & profile_flags::SYSCALLS_LOG_ONLY != 0 {
        return LSM_ALLOW;
    }
    let nr = current_syscall();
    let allowed =
        nr >= 0 && nr < SYSCALL_BITMAP_BITS as i64 && (hdr.syscalls[((nr >> 6) & 7) as usize] >> (nr & 63)) & 1 == 1;
    if allowed {
        LSM_ALLOW
    } else {
        LSM_DENY
    }
}

#[lsm(hook = "sb_mount")]
#[inline(always)]
pub fn warden_sb_mount(_ctx: LsmContext) -> i32 {
    syscall_gate()
}

#[lsm(hook = "sb_umount")]
#[inline(always)]
pub fn warden_sb_umount(_ctx: LsmContext) -> i32 {
    syscall_gate()
}

#[lsm(hook = "move_mount")]
#[inline(always)]
pub fn warden_move_mount(_ctx: LsmContext) -> i32 {
    syscall_gate()
}

#[lsm(hook = "ptrace_access_check")]
#[inline(always)]
pub fn warden_ptrace(_ctx: LsmContext) -> i32 {
    syscall_gate()
}

#[lsm(hook = "bpf")]
#[inline(always)]
pub fn warden_bpf(_ctx: LsmContext) -> i32 {
    syscall_gate()
}

#[lsm(hook = "perf_event_open")]
#[inline(always)]
pub fn warden_perf_event_open(_ctx: LsmContext) -> i32 {
    syscall_gate()
}

#[lsm(hook = "kernel_load_data")]
#[inline(always)]
pub fn warden_kernel_load_data(_ctx: LsmContext) -> i32 {
    syscall_gate()
}

#[lsm(hook = "kernel_read_file")]
#[inline(always)]
pub fn warden_kernel_read_file(_ctx: LsmContext) -> i32 {
    syscall_gate()
}

#[lsm(hook = "userns_create")]
#[inline(always)]
pub fn warden_userns_create(_ctx: LsmContext) -> i32 {
    syscall_gate()
}

/// Anonymous inodes made with a security context: io_uring_setup's ring (and userfaultfd).
/// The hook has no io_uring argument; syscall_gate judges the syscall that reached it.
#[lsm(hook = "inode_init_security_anon")]
#[inline(always)]
pub fn warden_anon_inode(_ctx: LsmContext) -> i32 {
    syscall_gate()
}

#[lsm(hook = "key_alloc")]
#[inline(always)]
pub fn warden_key_alloc(_ctx: LsmContext) -> i32 {
    syscall_gate()
}

/// Socket families outside the profile's list fail with EPERM (sys_enter's kill follows for
/// socket()/socketpair()); kernel-internal sockets are not judged.
#[lsm(hook = "socket_create")]
#[inline(always)]
pub fn warden_socket_create(ctx: LsmContext) -> i32 {
    let kern: i32 = ctx.arg(3);
    if kern != 0 {
        return LSM_ALLOW;
    }
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some((_, pol)) = policy_for(cgid) else { return LSM_ALLOW };
    if pol.mode != mode::ENFORCE {
        return LSM_ALLOW;
    }
    let Some(hdr) = profile(pol.profile_id) else { return LSM_DENY };
    if hdr.flags & profile_flags::FAMILIES == 0 {
        return LSM_ALLOW;
    }
    let family: i32 = ctx.arg(0);
    if (0..64).contains(&family) && (hdr.families >> family) & 1 == 1 {
        LSM_ALLOW
    } else {
        LSM_DENY
    }
}

// ---- descendants -----------------------------------------------------------------------------

/// Reads the cgroup2 id of a `struct cgroup *` and whether it is on the cgroup2 hierarchy.
#[inline(always)]
fn cgroup_id_v2(cgrp: *const u8) -> Option<u64> {
    unsafe {
        let root: *const u8 =
            bpf_probe_read_kernel(cgrp.wrapping_add(global(&OFF_CGROUP_ROOT) as usize) as *const *const u8).ok()?;
        let hid: i32 =
            bpf_probe_read_kernel(root.wrapping_add(global(&OFF_CGROUP_ROOT_HIERARCHY_ID) as usize) as *const i32)
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
#[inline(always)]
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
#[inline(always)]
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
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[no_mangle]
#[link_section = "license"]
pub static LICENSE: [u8; 4] = *b"GPL\0";
