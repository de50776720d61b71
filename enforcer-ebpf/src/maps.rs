//! The maps. All but the per-CPU path scratch are pinned by name under the pin folder, which is
//! how userspace finds them and how enforcement outlives the daemon: the names must not change.
//! Key and value layouts are the `#[repr(C)]` types of warden-common.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, PerCpuHashMap, RingBuf},
};
use warden_common::{
    CgroupPolicy, Counters, DenyEntry, DenyKey, DenyListName, FileKey, LearnFileKey, LearnFileUse, LearnInfo, LearnKey,
    Net4Key, Net6Key, PathScratch, PortRules, ProfileHeader, ProfileMeta, RateWindow, SyscallSet, DENY_MAX_ENTRIES,
    DENY_MAX_LISTS, LEARN_FILES_ENTRIES, LEARN_NET_ENTRIES,
};

/// BPF_F_NO_PREALLOC: hash-map elements are allocated when inserted (bpf_mem_alloc; allowed in
/// tracing programs since 6.1), so a map costs its bucket array (16 bytes per slot) until used.
/// Every map whose entries follow use (learn and complain records, counters, rate windows,
/// rules) is allocated this way: an idle node pays ~13 MB instead of 84 MB (issue 19).
/// `WARDEN_CGROUPS` stays preallocated on purpose: the cgroup_mkdir program's insert for a new
/// sub-cgroup must not fail for want of memory (a failed inherit is a sub-cgroup without its
/// root's policy; with preallocation it fails only when the table is full, which is counted).
const NO_PREALLOC: u32 = 1;

/// Confined cgroups by cgroup2 id: the daemon's entries and the ones the mkdir tracepoint
/// inherits for their descendants.
#[map]
pub(crate) static WARDEN_CGROUPS: HashMap<u64, CgroupPolicy> = HashMap::pinned(65536, 0);
/// Compiled profiles by profile id: flags, socket families, syscall bitmap.
#[map]
pub(crate) static WARDEN_PROFILES: HashMap<u32, ProfileHeader> = HashMap::pinned(4096, NO_PREALLOC);
/// Userspace only (which profile version an id holds); defined here so it is pinned with the rest.
#[map]
pub(crate) static WARDEN_PROFILE_META: HashMap<u32, ProfileMeta> = HashMap::pinned(4096, NO_PREALLOC);
/// IPv4 connect/sendmsg rules: (profile id, address prefix) -> port rules.
#[map]
pub(crate) static WARDEN_CONNECT4: LpmTrie<Net4Key, PortRules> = LpmTrie::pinned(65536, 0);
/// IPv6 connect/sendmsg rules: (profile id, address prefix) -> port rules.
#[map]
pub(crate) static WARDEN_CONNECT6: LpmTrie<Net6Key, PortRules> = LpmTrie::pinned(65536, 0);
/// Bind rules by profile id.
#[map]
pub(crate) static WARDEN_BIND: HashMap<u32, PortRules> = HashMap::pinned(4096, NO_PREALLOC);
/// Exact violation and event counts per root cgroup.
#[map]
pub(crate) static WARDEN_COUNTERS: PerCpuHashMap<u64, Counters> = PerCpuHashMap::pinned(65536, NO_PREALLOC);
/// Event rate window per root cgroup.
#[map]
pub(crate) static WARDEN_RATE: HashMap<u64, RateWindow> = HashMap::pinned(65536, NO_PREALLOC);
/// Syscalls seen per root cgroup: learned (learn mode) or would-deny (complain mode).
#[map]
pub(crate) static WARDEN_LEARN_SC: HashMap<u64, SyscallSet> = HashMap::pinned(65536, NO_PREALLOC);
/// Distinct network items per root cgroup: learned (learn mode) or would-deny (complain mode).
#[map]
pub(crate) static WARDEN_LEARN_NET: HashMap<LearnKey, u8> = HashMap::pinned(LEARN_NET_ENTRIES, NO_PREALLOC);
/// Learn record bounds and socket families per root cgroup.
#[map]
pub(crate) static WARDEN_LEARN_INFO: HashMap<u64, LearnInfo> = HashMap::pinned(65536, NO_PREALLOC);
/// Distinct paths per root cgroup, with the access bits used: learned (learn mode) or
/// would-deny (complain mode). Entries are allocated as they come (BPF_F_NO_PREALLOC).
#[map]
pub(crate) static WARDEN_LEARN_FILES: HashMap<LearnFileKey, LearnFileUse> =
    HashMap::pinned(LEARN_FILES_ENTRIES, NO_PREALLOC);
/// Events (denied, would-deny, learned) for the daemon: `Event`, or `FileEvent` for files and execs.
#[map]
pub(crate) static WARDEN_EVENTS: RingBuf = RingBuf::pinned(1 << 20, 0);
/// Files rules: (profile id, path bytes) -> access bits (see warden_common::FileKey).
#[map]
pub(crate) static WARDEN_FILES: LpmTrie<FileKey, u32> = LpmTrie::pinned(65536, 0);
/// Per-CPU scratch for path keys (too large for the stack). Not pinned: each loaded object has
/// its own. The LSM programs are not sleepable, so nothing else runs on this CPU meanwhile.
#[map]
pub(crate) static WARDEN_PATH_SCRATCH: PerCpuArray<PathScratch> = PerCpuArray::with_max_entries(1, 0);
/// Node-wide deny lists, both versions (see warden_common::DenyKey): allocated per entry, so
/// an empty trie costs nothing.
#[map]
pub(crate) static WARDEN_DENY: LpmTrie<DenyKey, DenyEntry> = LpmTrie::pinned(2 * DENY_MAX_ENTRIES, 0);
/// Deny-list hits by list id, per CPU (`warden_deny_list_hits_total`).
#[map]
pub(crate) static WARDEN_DENY_HITS: PerCpuArray<u64> = PerCpuArray::pinned(DENY_MAX_LISTS, 0);
/// Cgroups the node-wide deny programs leave alone (warden's own, and its namespace's
/// containers): cgroup id -> 1. The cgroup_rmdir program drops an entry with its cgroup.
#[map]
pub(crate) static WARDEN_DENY_EXEMPT: HashMap<u64, u8> = HashMap::pinned(4096, NO_PREALLOC);
/// Userspace only: deny-list names by list id (defined here so it is pinned with the rest).
#[map]
pub(crate) static WARDEN_DENY_NAMES: Array<DenyListName> = Array::pinned(DENY_MAX_LISTS, 0);
/// Index 0: pinned layout version (written by userspace). Index 1: cgroups that could not
/// inherit a policy because WARDEN_CGROUPS was full (the daemon alarms on it). Index 2: the
/// deny lists' state (warden_common::deny_state).
#[map]
pub(crate) static WARDEN_STATE: Array<u64> = Array::pinned(4, 0);

/// Index in WARDEN_STATE of the inherit-failure count (hook/src/enforcer/maps.rs reads it there).
pub(crate) const STATE_INHERIT_FAILURES: u32 = 1;
/// Index in WARDEN_STATE of the deny lists' state.
pub(crate) const STATE_DENY: u32 = 2;

/// This CPU's path scratch (file programs and file learning).
#[inline(always)]
pub(crate) fn scratch() -> Option<&'static mut PathScratch> {
    WARDEN_PATH_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}
