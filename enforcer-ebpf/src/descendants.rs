//! Descendants of confined cgroups (raw_tp cgroup_mkdir / cgroup_rmdir): a cgroup made below a
//! confined cgroup inherits its policy in WARDEN_CGROUPS before mkdir() returns, so no process
//! can escape by moving into a fresh sub-cgroup; the kernel removes the inherited entry again
//! at rmdir. And the arming at exec of a cgroup confined before its entrypoint ran
//! (`warden_exec_arm`, cgroup_flags::ARM_AT_EXEC).
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_probe_read_kernel},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use warden_common::{cgroup_flags, CgroupPolicy};

use crate::{
    globals::{
        global, OFF_CGROUP_KN, OFF_CGROUP_PARENT, OFF_CGROUP_ROOT, OFF_CGROUP_ROOT_HIERARCHY_ID, OFF_KERNFS_NODE_ID,
    },
    maps::{STATE_INHERIT_FAILURES, WARDEN_CGROUPS, WARDEN_DENY_EXEMPT, WARDEN_STATE},
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

/// The first successful exec in a cgroup confined with cgroup_flags::ARM_AT_EXEC (the
/// runtime's init becoming the entrypoint) arms its policy. Runs in the task that exec'd, after
/// the new program is in place and before it runs a single instruction. Always attached (and
/// pinned), so the arming does not depend on the daemon being alive: that is the case it is
/// for. Cost for everyone else: one hash lookup per exec.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
#[inline(always)]
pub fn warden_exec_arm(_ctx: RawTracePointContext) -> i32 {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let Some(p) = WARDEN_CGROUPS.get_ptr_mut(&cgid) else { return 0 };
    let (flags, root_id) = unsafe { ((*p).flags, (*p).root_cgroup) };
    let root = if flags & cgroup_flags::INHERITED != 0 {
        match WARDEN_CGROUPS.get_ptr_mut(&root_id) {
            Some(r) => r,
            None => return 0,
        }
    } else {
        p
    };
    unsafe {
        if (*root).flags & cgroup_flags::ARM_AT_EXEC != 0 {
            (*root).flags &= !cgroup_flags::ARM_AT_EXEC;
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
    // A cgroup exempt from the node-wide deny lists takes its exemption with it.
    let _ = WARDEN_DENY_EXEMPT.remove(&id);
    0
}
