//! Which policy applies to a cgroup: its own entry in WARDEN_CGROUPS, or the one of the
//! confined ancestor it inherited from; and the compiled profile that policy names.
use warden_common::{cgroup_flags, CgroupPolicy, ProfileHeader};

use crate::maps::{WARDEN_CGROUPS, WARDEN_PROFILES};

/// The policy that applies to cgroup `cgid`: its own, or its confined ancestor's.
/// Returns (root cgroup id, root policy).
#[inline(always)]
pub(crate) fn policy_for(cgid: u64) -> Option<(u64, CgroupPolicy)> {
    let p = unsafe { WARDEN_CGROUPS.get(&cgid) }?;
    resolve_entry(cgid, p)
}

/// The policy an entry stands for: itself, or (inherited) its root's.
#[inline(always)]
pub(crate) fn resolve_entry(cgid: u64, p: &CgroupPolicy) -> Option<(u64, CgroupPolicy)> {
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

/// The compiled profile `id` (None: the profile is gone; callers fail closed).
#[inline(always)]
pub(crate) fn profile(id: u32) -> Option<&'static ProfileHeader> {
    unsafe { WARDEN_PROFILES.get(&id) }
}
