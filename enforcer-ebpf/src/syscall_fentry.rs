//! Measurement only (issue 19, item 3; the engine never loads or attaches these): the syscall
//! judge as a per-function `fentry` program instead of the node-wide `sys_enter` tracepoint. A
//! program attached to one syscall's entry function runs only when that syscall is made, so an
//! allowed syscall that no profile forbids would pay nothing. `warden-bench --part syscalls`
//! attaches these to the measured syscall (getppid, read) to price a hooked call; see
//! docs/notes/issue19-syscall-layer.md for the design they stand for and what it would need.
//!
//! The decision is the enforce path of `warden_sys_enter` (cgroup lookup, profile, compat,
//! bitmap, SIGKILL), with the syscall number read from the task's saved registers as the
//! BPF-LSM gates do: a fentry program gets the entry function's arguments, not the number.
//! Learn mode and socket families stay with sys_enter and BPF-LSM.
use aya_ebpf::{helpers::bpf_get_current_cgroup_id, macros::fentry, programs::FEntryContext};
use warden_common::{kind, mode, profile_flags, SYSCALL_BITMAP_BITS};

use crate::{
    gates::current_syscall,
    policy::{current_entry, profile, resolve_entry},
    syscalls::{deny_syscall, in_compat_syscall},
};

#[inline(always)]
fn judge_current_syscall() {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    // Unconfined callers leave after this one lookup.
    let Some((id, entry)) = current_entry(cgid) else { return };
    let Some((root, pol)) = resolve_entry(id, entry) else { return };
    if pol.mode == mode::LEARN {
        return;
    }
    let Some(hdr) = profile(pol.profile_id) else {
        deny_syscall(cgid, root, &pol, kind::SYSCALL, 0);
        return;
    };
    if hdr.flags & profile_flags::SYSCALLS == 0 || hdr.flags & profile_flags::SYSCALLS_LOG_ONLY != 0 {
        return;
    }
    if in_compat_syscall() {
        deny_syscall(cgid, root, &pol, kind::COMPAT_SYSCALL, 0);
        return;
    }
    let nr = current_syscall();
    let allowed =
        nr >= 0 && nr < SYSCALL_BITMAP_BITS as i64 && (hdr.syscalls[((nr >> 6) & 7) as usize] >> (nr & 63)) & 1 == 1;
    if !allowed {
        deny_syscall(cgid, root, &pol, kind::SYSCALL, nr as u32);
    }
}

// One program per target: a tracing program is bound to its target function when it loads.
// The section names are only labels; the bench names the target (which differs between
// kernels: `__x64_sys_getppid` or its alias `__do_sys_getppid`) at load time.
#[fentry(function = "warden_measure_getppid")]
#[inline(always)]
pub fn warden_sc_fentry_getppid(_ctx: FEntryContext) -> i32 {
    judge_current_syscall();
    0
}

#[fentry(function = "warden_measure_read")]
#[inline(always)]
pub fn warden_sc_fentry_read(_ctx: FEntryContext) -> i32 {
    judge_current_syscall();
    0
}
