//! The verdict every layer shares: an [`Attempt`] and the mode logic that turns "allowed by
//! the profile or not" into deny, report, or record (`judge`), and what programs return for it.
use warden_common::{cgroup_flags, kind, mode, verdict, CgroupPolicy, DenyEntry, SYSCALL_BITMAP_BITS};

use crate::{
    learn::{record, record_file},
    maps::{WARDEN_DENY_HITS, WARDEN_LEARN_SC},
    report::{report, report_with},
};

/// cgroup sock_addr / sock programs: 1 lets the operation go on, 0 refuses it with EPERM.
pub(crate) const ALLOW: i32 = 1;
pub(crate) const DENY: i32 = 0;

/// LSM verdicts: 0 lets the operation go on, -EPERM refuses it.
pub(crate) const LSM_ALLOW: i32 = 0;
pub(crate) const LSM_DENY: i32 = -1;

/// What a process tried, as judged, reported (see warden_common::Event) and recorded.
pub(crate) struct Attempt {
    /// One of warden_common::kind.
    pub(crate) kind: u8,
    /// Syscall number (SYSCALL, COMPAT_SYSCALL, and SOCKET seen at socket()/socketpair()),
    /// IPPROTO_* (CONNECT, SENDMSG, BIND, SOCKET at sock_create), access bits (FILE, EXEC).
    pub(crate) nr: u32,
    pub(crate) family: u16,
    /// Port (CONNECT, SENDMSG, BIND), socket type (SOCKET at sock_create), file_op (FILE, EXEC).
    pub(crate) port: u16,
    pub(crate) addr: [u8; 16],
    /// FILE and EXEC: the resolved path (NUL terminated, in the per-CPU scratch).
    pub(crate) path: *const u8,
    /// Judged on a packet (softirq), not in the process's own syscall: the current task is not
    /// the one the attempt is about, so events carry no pid or comm.
    pub(crate) from_packet: bool,
}

/// Kinds whose items fit the learn dedupe key (address, port, protocol, family).
#[inline(always)]
fn is_network(k: u8) -> bool {
    k == kind::CONNECT || k == kind::SENDMSG || k == kind::BIND || k == kind::SOCKET
}

/// Kinds whose item is a path (recorded in WARDEN_LEARN_FILES).
#[inline(always)]
fn is_file(k: u8) -> bool {
    k == kind::FILE || k == kind::EXEC
}

/// Mode logic shared by every layer: returns true when the attempt must be denied.
#[inline(always)]
pub(crate) fn judge(cgid: u64, root: u64, pol: &CgroupPolicy, allowed: bool, a: &Attempt) -> bool {
    judge_listed(cgid, root, pol, allowed, a, None)
}

/// [`judge`], for an attempt a node-wide deny list may name (`listed`, see deny.rs): that is a
/// denial in every mode, counted for its list and reported with its list and line, through the
/// enforce path's report call: a second inlined report made warden_socket_sendmsg's stack
/// too large for 6.1's verifier (combined with the memcpy subprogram, over 512 bytes).
#[inline(always)]
pub(crate) fn judge_listed(
    cgid: u64,
    root: u64,
    pol: &CgroupPolicy,
    allowed: bool,
    a: &Attempt,
    listed: Option<DenyEntry>,
) -> bool {
    let (deny_list, deny_line) = match listed {
        Some(e) => {
            if let Some(n) = WARDEN_DENY_HITS.get_ptr_mut(e.list) {
                unsafe { *n += 1 };
            }
            (e.list + 1, e.line)
        }
        None => (0, 0),
    };
    if deny_list == 0 {
        if pol.mode == mode::LEARN {
            // Learn: everything goes through, except what an operator's baseline forbids when
            // learning inside one (cgroup_flags::FLOOR: the profile is the baseline). Network,
            // file and exec items are recorded in the kernel (deduped, bounded) either way; only
            // a new item sends an event, and the record does not depend on it (events may be
            // dropped; records are not). One report call site: a second one made LLVM emit code
            // the verifier refused (a read of an unset register in warden_sock_create).
            let new = if is_network(a.kind) {
                record(root, a)
            } else if is_file(a.kind) {
                record_file(root, a)
            } else {
                a.kind != kind::SYSCALL
            };
            let deny = pol.flags & cgroup_flags::FLOOR != 0 && !allowed;
            if new || deny {
                report(cgid, root, pol, if deny { verdict::DENIED } else { verdict::LEARNED }, a);
            }
            return deny;
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
    }
    // Enforce, or a deny list in any mode.
    report_with(cgid, root, pol, verdict::DENIED, a, deny_list, deny_line);
    true
}
