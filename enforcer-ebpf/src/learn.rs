//! Learning (and complain mode's would-deny record): distinct network items and paths per root
//! cgroup, deduplicated and bounded in the kernel, so a repeat costs one lookup and sends no
//! event. Syscalls and socket families are plain byte stores (see `judge` and the syscall hook).
use warden_common::{
    access, LearnFileUse, LearnInfo, LearnKey, LEARN_FILES_PER_CGROUP, LEARN_ITEMS_PER_CGROUP, LEARN_PATH_MAX,
};

use crate::{
    maps::{scratch, WARDEN_LEARN_FILES, WARDEN_LEARN_INFO, WARDEN_LEARN_NET},
    verdict::Attempt,
};

#[inline(always)]
fn atomic_inc(p: *mut u64) {
    // An atomic add whose result is unused: BPF_ATOMIC_ADD (XADD), no lost counts across CPUs.
    unsafe { core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(p, 1) };
}

/// The learn record of `root` in WARDEN_LEARN_INFO: its bounds and socket families (userspace
/// creates it at confine; the kernel only as a fallback).
#[inline(always)]
pub(crate) fn learn_info(root: u64) -> Option<*mut LearnInfo> {
    if let Some(i) = WARDEN_LEARN_INFO.get_ptr_mut(&root) {
        return Some(i);
    }
    let _ = WARDEN_LEARN_INFO.insert(&root, &LearnInfo::default(), 1 /* BPF_NOEXIST */);
    WARDEN_LEARN_INFO.get_ptr_mut(&root)
}

/// Records a network item of `root` in WARDEN_LEARN_NET, deduplicated: returns true only the
/// first time. A repeat costs this one lookup. Past the per-cgroup bound, or with the map full,
/// the item is counted as truncated instead (never lost silently). Independent of the event
/// rate limit.
#[inline(always)]
pub(crate) fn record(root: u64, a: &Attempt) -> bool {
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
pub(crate) fn record_file(root: u64, a: &Attempt) -> bool {
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
