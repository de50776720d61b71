//! Descendants of confined cgroups (raw_tp cgroup_mkdir / cgroup_rmdir): a cgroup made below a
//! confined cgroup inherits its policy in WARDEN_CGROUPS before mkdir() returns, so no process
//! can escape by moving into a fresh sub-cgroup; the kernel removes the inherited entry again
//! at rmdir.
use aya_ebpf::{helpers::bpf_probe_read_kernel, macros::raw_tracepoint, programs::RawTracePointContext};
use warden_common::{cgroup_flags, CgroupPolicy};

use crate::{
    globals::{
        global, OFF_CGROUP_KN, OFF_CGROUP_PARENT, OFF_CGROUP_ROOT, OFF_CGROUP_ROOT_HIERARCHY_ID, OFF_KERNFS_NODE_ID,
    },
    maps::{STATE_INHERIT_FAILURES, WARDEN_CGROUPS, WARDEN_STATE},
};

/// The cgroup2 id of a `struct cgroup *`, or None when the cgroup is on a cgroup v1 hierarchy
/// (or cannot be read).
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
