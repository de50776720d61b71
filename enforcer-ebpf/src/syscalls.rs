//! The syscall layer: `warden_sys_enter` (raw_tp sys_enter) checks each syscall of a confined
//! process against its profile's syscall bitmap (SIGKILL in enforce, report in complain, record
//! in learn), refuses 32-bit compat syscalls, and judges socket families that have no cgroup
//! hook at socket()/socketpair(). Attached only while some confined cgroup needs it: it runs for
//! every process on the machine.
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_send_signal},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use warden_common::{cgroup_flags, kind, mode, profile_flags, CgroupPolicy, SYSCALL_BITMAP_BITS};

use crate::{
    globals::{global, OFF_TASK_TI_STATUS},
    learn::learn_info,
    maps::WARDEN_LEARN_SC,
    network::{AF_INET, AF_INET6},
    policy::{current_entry, profile, resolve_entry},
    verdict::{judge, Attempt},
};

const SIGKILL: u32 = 9;

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

/// Whether the current task is in a 32-bit (compat) syscall, whose number indexes another
/// table (ia32 `mount` is 21, native 21 is `access`). x86_64: the TS_COMPAT bit of
/// thread_info.status. Elsewhere always false: aarch64 marks compat tasks differently
/// (TIF_32BIT in thread_info.flags) and warden does not read it yet; see docs/design.md.
#[inline(always)]
pub(crate) fn in_compat_syscall() -> bool {
    if arch::TS_COMPAT == 0 {
        return false;
    }
    // A BTF task pointer and a plain load (the verifier checks the offset against
    // task_struct's BTF; it is a constant from frozen .rodata): no bpf_get_current_task +
    // bpf_probe_read_kernel pair on every allowed syscall.
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    let off = global(&OFF_TASK_TI_STATUS) as usize;
    let status: u32 = unsafe { core::ptr::read_volatile(task.wrapping_add(off) as *const u32) };
    status & arch::TS_COMPAT != 0
}

#[raw_tracepoint(tracepoint = "sys_enter")]
#[inline(always)]
pub fn warden_sys_enter(ctx: RawTracePointContext) -> i32 {
    // First step: one lookup. Unconfined processes leave here.
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some((id, entry)) = current_entry(cgid) else { return 0 };
    on_syscall(&ctx, id, entry);
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
        // Learning inside a baseline (cgroup_flags::FLOOR): its syscall list still kills.
        if pol.flags & cgroup_flags::FLOOR != 0 {
            floor_syscall(cgid, root, &pol, nr);
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
    if in_compat_syscall() {
        deny_syscall(cgid, root, &pol, kind::COMPAT_SYSCALL, nr as u32);
        return;
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
                    from_packet: false,
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
                from_packet: false,
            };
            if judge(cgid, root, &pol, false, &a) {
                unsafe { bpf_send_signal(SIGKILL) };
            }
        }
    }
}

/// Learn mode inside a baseline: the baseline's syscall list (the profile) is enforced as in
/// enforce mode. Only the list: falling through to the whole enforce path after the learn
/// record took sys_enter over the BPF stack limit, and socket families are judged by the
/// BPF-LSM socket gate (which enforces under a floor) where it runs.
#[inline(always)]
fn floor_syscall(cgid: u64, root: u64, pol: &CgroupPolicy, nr: u64) {
    let Some(hdr) = profile(pol.profile_id) else {
        deny_syscall(cgid, root, pol, kind::SYSCALL, nr as u32);
        return;
    };
    if hdr.flags & profile_flags::SYSCALLS == 0 || hdr.flags & profile_flags::SYSCALLS_LOG_ONLY != 0 {
        return;
    }
    if in_compat_syscall() {
        deny_syscall(cgid, root, pol, kind::COMPAT_SYSCALL, nr as u32);
        return;
    }
    // Masked and combined with `&` for the verifier, as in on_syscall.
    let word = hdr.syscalls[((nr >> 6) & 7) as usize];
    let allowed = (nr < SYSCALL_BITMAP_BITS as u64) & ((word >> (nr & 63)) & 1 == 1);
    if !allowed {
        deny_syscall(cgid, root, pol, kind::SYSCALL, nr as u32);
    }
}

/// The syscall is outside the profile: SIGKILL in enforce (delivered before the process runs
/// another instruction; the syscall itself has already run on kernels without BPF-LSM), event
/// only in complain.
#[inline(always)]
pub(crate) fn deny_syscall(cgid: u64, root: u64, pol: &CgroupPolicy, k: u8, nr: u32) {
    let a = Attempt { kind: k, nr, family: 0, port: 0, addr: [0; 16], path: core::ptr::null(), from_packet: false };
    if judge(cgid, root, pol, false, &a) {
        unsafe { bpf_send_signal(SIGKILL) };
    }
}
