//! Which policy applies to a cgroup: its own entry in WARDEN_CGROUPS, or the one of the
//! confined ancestor it inherited from; and the compiled profile that policy names.
use aya_ebpf::{
    bindings::__sk_buff,
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_skb_ancestor_cgroup_id},
};
use warden_common::{cgroup_flags, mode, CgroupPolicy, ProfileHeader};

use crate::maps::{STATE_INHERIT_FAILURES, WARDEN_CGROUPS, WARDEN_PROFILES, WARDEN_STATE};

/// Cgroup levels the fallback below looks at (a Kubernetes container is at level 4 or 5; its
/// own sub-cgroups below that).
const MAX_ANCESTOR_LEVELS: i32 = 16;

/// The entry of the current task's cgroup `cgid` (with the id it is keyed by).
///
/// Normally one lookup. But a sub-cgroup of a confined cgroup gets its inherited entry from
/// `cgroup_mkdir` (descendants.rs), which cannot refuse the mkdir: when WARDEN_CGROUPS is full
/// the insert fails and is only counted (STATE_INHERIT_FAILURES). A workload able to make
/// cgroups could fill the table and move into a fresh, entry-less sub-cgroup. So once that
/// count is non-zero, a miss looks up the task's ancestors (level 1 down to its parent) and
/// takes the nearest one with an entry: fail closed, and no cost for anyone until the table
/// has ever overflowed.
#[inline(always)]
pub(crate) fn current_entry(cgid: u64) -> Option<(u64, &'static CgroupPolicy)> {
    entry_or_ancestor(cgid, |level| unsafe { bpf_get_current_ancestor_cgroup_id(level) })
}

/// [`current_entry`] with the ancestors given by `ancestor(level)` (0 above the cgroup's own
/// level): the current task's for task-context programs; the socket's for `cgroup_skb`, which
/// runs in softirq where "current" is whoever was interrupted, and where 6.1 has no
/// bpf_get_current_ancestor_cgroup_id.
#[inline(always)]
fn entry_or_ancestor(cgid: u64, ancestor: impl Fn(i32) -> u64) -> Option<(u64, &'static CgroupPolicy)> {
    if let Some(p) = unsafe { WARDEN_CGROUPS.get(&cgid) } {
        return Some((cgid, p));
    }
    let failures = WARDEN_STATE.get(STATE_INHERIT_FAILURES).copied().unwrap_or(0);
    if failures == 0 {
        return None;
    }
    // Plain id and pointer, not an Option: a `None` carries an undefined payload, which LLVM
    // may copy between registers, and the verifier refuses any read of an unset register
    // (warden_sock_create failed to load on 6.18 once judge() grew).
    let mut found_id: u64 = 0;
    let mut found: *const CgroupPolicy = core::ptr::null();
    for level in 1..MAX_ANCESTOR_LEVELS {
        let id = ancestor(level);
        if id == 0 || id == cgid {
            break; // above the cgroup's own level, or the cgroup itself (already missed)
        }
        if let Some(p) = unsafe { WARDEN_CGROUPS.get(&id) } {
            found_id = id;
            found = p;
        }
    }
    if found.is_null() {
        return None;
    }
    Some((found_id, unsafe { &*found }))
}

/// The policy that applies to the socket of `skb` (a `cgroup_skb` program), whose cgroup is
/// `cgid`: as [`policy_for`], with the socket's ancestors.
#[inline(always)]
pub(crate) fn policy_for_skb(skb: *mut __sk_buff, cgid: u64) -> Option<(u64, CgroupPolicy)> {
    let (id, p) = entry_or_ancestor(cgid, |level| unsafe { bpf_skb_ancestor_cgroup_id(skb, level) })?;
    resolve_entry(id, p)
}

/// The policy that applies to the current task, whose cgroup is `cgid`: its own, or its
/// confined ancestor's. Returns (root cgroup id, root policy).
#[inline(always)]
pub(crate) fn policy_for(cgid: u64) -> Option<(u64, CgroupPolicy)> {
    let (id, p) = current_entry(cgid)?;
    resolve_entry(id, p)
}

/// The policy an entry stands for: itself, or (inherited) its root's. None while the root is
/// not armed yet (cgroup_flags::ARM_AT_EXEC: the runtime's init is still setting up).
#[inline(always)]
pub(crate) fn resolve_entry(cgid: u64, p: &CgroupPolicy) -> Option<(u64, CgroupPolicy)> {
    if p.flags & cgroup_flags::INHERITED == 0 {
        if p.flags & cgroup_flags::ARM_AT_EXEC != 0 {
            return None;
        }
        return Some((cgid, *p));
    }
    let root = p.root_cgroup;
    let r = unsafe { WARDEN_CGROUPS.get(&root) }?;
    if r.flags & (cgroup_flags::INHERITED | cgroup_flags::ARM_AT_EXEC) != 0 {
        return None;
    }
    Some((root, *r))
}

/// The compiled profile `id` (None: the profile is gone; callers fail closed).
#[inline(always)]
pub(crate) fn profile(id: u32) -> Option<&'static ProfileHeader> {
    unsafe { WARDEN_PROFILES.get(&id) }
}

/// Whether what the profile does not allow is refused: enforce mode, or learn mode inside an
/// operator's baseline (cgroup_flags::FLOOR), where the profile is the baseline.
#[inline(always)]
pub(crate) fn enforces(pol: &CgroupPolicy) -> bool {
    pol.mode == mode::ENFORCE || (pol.mode == mode::LEARN && pol.flags & cgroup_flags::FLOOR != 0)
}
