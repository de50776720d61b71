//! Pre-execution gates (BPF-LSM): dangerous syscalls outside a confined process's syscall
//! allow-list (mount, ptrace, bpf, perf_event_open, module loading, user namespaces, io_uring,
//! keys) fail with EPERM before they do anything, and so do socket families outside its
//! profile; the sys_enter kill follows. Inet protocols the profile does not name fail at
//! socket_create too (with an event: no kill follows those). Enforce mode only.
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_probe_read_kernel},
    macros::lsm,
    programs::LsmContext,
};
use warden_common::{kind, profile_flags, proto, protocol_bit, SYSCALL_BITMAP_BITS};

use crate::{
    policy::{enforces, policy_for, profile},
    syscalls::in_compat_syscall,
    verdict::{judge, Attempt, LSM_ALLOW, LSM_DENY},
};

#[cfg(bpf_target_arch = "x86_64")]
const PT_REGS_SYSCALL_NR: usize = 15 * 8; // orig_ax
#[cfg(not(bpf_target_arch = "x86_64"))]
const PT_REGS_SYSCALL_NR: usize = 34 * 8 + 8; // aarch64 syscallno

/// The syscall the current task is in (from its saved user registers), or -1.
#[inline(always)]
pub(crate) fn current_syscall() -> i64 {
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
    if !enforces(&pol) {
        return LSM_ALLOW;
    }
    let Some(hdr) = profile(pol.profile_id) else { return LSM_DENY };
    if hdr.flags & profile_flags::SYSCALLS == 0 || hdr.flags & profile_flags::SYSCALLS_LOG_ONLY != 0 {
        return LSM_ALLOW;
    }
    // A 32-bit (int 0x80 / ia32) call's number means another call: judged against the native
    // table, ia32 `mount` (21) would pass as `access`. A confined process may not use the
    // compat entry at all (sys_enter kills it), so the gate refuses it too.
    if in_compat_syscall() {
        return LSM_DENY;
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
///
/// inet/inet6 sockets of a protocol the profile does not name (`network.protocols`; SOCK_RAW
/// needs `raw_sockets`) fail here too, with a `socket` event: the same rule as the cgroup
/// sock_create program, but before inet_create looks the protocol up, which may autoload its
/// module (`net-pf-2-proto-132` for SCTP). Enforce mode only: in complain and learn mode the
/// cgroup program reports and records the socket.
#[lsm(hook = "socket_create")]
#[inline(always)]
pub fn warden_socket_create(ctx: LsmContext) -> i32 {
    let kern: i32 = ctx.arg(3);
    if kern != 0 {
        return LSM_ALLOW;
    }
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some((root, pol)) = policy_for(cgid) else { return LSM_ALLOW };
    if !enforces(&pol) {
        return LSM_ALLOW;
    }
    let Some(hdr) = profile(pol.profile_id) else { return LSM_DENY };
    if hdr.flags & profile_flags::FAMILIES == 0 {
        return LSM_ALLOW;
    }
    let family: i32 = ctx.arg(0);
    if !((0..64).contains(&family) && (hdr.families >> family) & 1 == 1) {
        return LSM_DENY;
    }
    if family != AF_INET && family != AF_INET6 {
        return LSM_ALLOW;
    }
    // The type without SOCK_NONBLOCK/SOCK_CLOEXEC (socket() strips them before this hook).
    let ty: i32 = ctx.arg::<i32>(1) & 0xf;
    let asked: i32 = ctx.arg(2);
    // Protocol 0 is the type's default (what inet_create would pick): TCP for SOCK_STREAM,
    // UDP for SOCK_DGRAM, SCTP for SOCK_SEQPACKET; for any other type none a profile can name.
    let p = if asked != 0 {
        asked
    } else {
        match ty {
            SOCK_STREAM => proto::TCP as i32,
            SOCK_DGRAM => proto::UDP as i32,
            SOCK_SEQPACKET => IPPROTO_SCTP,
            _ => 0,
        }
    };
    let allowed = if ty == SOCK_RAW {
        hdr.flags & profile_flags::RAW_SOCKETS != 0
    } else {
        p == proto::TCP as i32 || p == proto::UDP as i32 || (p > 0 && hdr.protocols & protocol_bit(p as u32) != 0)
    };
    let a = Attempt {
        kind: kind::SOCKET,
        nr: p as u32,
        family: family as u16,
        port: ty as u16,
        addr: [0; 16],
        path: core::ptr::null(),
        from_packet: false,
    };
    if judge(cgid, root, &pol, allowed, &a) {
        LSM_DENY
    } else {
        LSM_ALLOW
    }
}

const AF_INET: i32 = 2;
const AF_INET6: i32 = 10;
const SOCK_STREAM: i32 = 1;
const SOCK_DGRAM: i32 = 2;
const SOCK_RAW: i32 = 3;
const SOCK_SEQPACKET: i32 = 5;
const IPPROTO_SCTP: i32 = 132;
