//! Types shared by warden's eBPF programs and its userspace: the layout of every pinned map's
//! keys and values, event records, and the constants both sides must agree on.
//!
//! Everything here is `#[repr(C)]`, fixed-size and free of padding surprises (explicit `_pad`
//! fields), because the kernel sees raw bytes. Changing a layout here changes the pinned map
//! layout: bump [`MAP_LAYOUT_VERSION`].
#![no_std]

/// Version of the pinned map layout. A daemon refuses to adopt pins of another version.
pub const MAP_LAYOUT_VERSION: u32 = 4;

/// Number of syscall numbers a profile bitmap covers. x86_64 and aarch64 numbers are all below
/// 512; any number at or above it (x32 numbers have bit 30 set) is outside every allow-list.
pub const SYSCALL_BITMAP_BITS: usize = 512;
pub const SYSCALL_BITMAP_WORDS: usize = SYSCALL_BITMAP_BITS / 64;

/// Port ranges one network rule chain may hold (see [`PortRules`]).
pub const MAX_PORT_RULES: usize = 32;

/// Nesting depth of confined cgroups followed by the inherit logic (a sanity bound).
pub const MAX_CGROUP_DEPTH: u32 = 64;

/// Enforcement mode of a confined cgroup.
pub mod mode {
    /// Deny and report.
    pub const ENFORCE: u8 = 1;
    /// Allow, report what enforce would deny.
    pub const COMPLAIN: u8 = 2;
    /// Allow everything, record what is done.
    pub const LEARN: u8 = 3;
}

/// Flags of a [`CgroupPolicy`].
pub mod cgroup_flags {
    /// The entry was created by the kernel for a cgroup made below a confined one; its policy is
    /// the one of `root_cgroup`'s entry (looked up at every decision, so profile swaps and
    /// releases of the root apply to descendants at once).
    pub const INHERITED: u8 = 1;
    /// Learn mode inside a baseline (an operator's rule, issue 16): everything is recorded as
    /// in learn mode, and what `profile_id` (the baseline) does not allow is still denied as
    /// in enforce mode. Only on root entries (descendants read their root's).
    pub const FLOOR: u8 = 2;
    /// Confined by the createRuntime backstop (issue 17): the cgroup's only process is still the
    /// runtime's init (runc init: pivot_root, mounts, hostname, capabilities, setuid, then the
    /// exec of the entrypoint), which no workload profile describes. Nothing is judged or
    /// recorded until the first successful exec in the cgroup clears the flag
    /// (`warden_exec_arm`, sched_process_exec), or the daemon clears it at StartContainer, when
    /// the runtime's init waits at its exec fifo. Only on root entries.
    pub const ARM_AT_EXEC: u8 = 4;
}

/// Flags of a [`ProfileHeader`]: which layers the profile restricts. An absent section in the
/// profile means the layer is not restricted, so its flag is clear.
pub mod profile_flags {
    pub const SYSCALLS: u32 = 1 << 0;
    /// Syscalls outside the allow-list are only logged, never killed (`"default": "log"`).
    pub const SYSCALLS_LOG_ONLY: u32 = 1 << 1;
    pub const CONNECT: u32 = 1 << 2;
    pub const BIND: u32 = 1 << 3;
    /// Socket families are restricted to `families` (a bitmap of AF_* numbers).
    pub const FAMILIES: u32 = 1 << 4;
    /// SOCK_RAW inet sockets are allowed (only meaningful with FAMILIES).
    pub const RAW_SOCKETS: u32 = 1 << 5;
    /// A `files` section is present: opens, writes and execs are judged against the
    /// `WARDEN_FILES` trie (BPF-LSM).
    pub const FILES: u32 = 1 << 6;
}

/// Access bits of a files rule (value of the `WARDEN_FILES` trie).
pub mod access {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const EXEC: u8 = 4;
}

/// What a FILE/EXEC event's process tried (carried in [`Event::port`]).
pub mod file_op {
    pub const OPEN: u16 = 0;
    /// open(O_CREAT) of a new file, mknod.
    pub const CREATE: u16 = 1;
    pub const MKDIR: u16 = 2;
    pub const UNLINK: u16 = 3;
    pub const RMDIR: u16 = 4;
    pub const RENAME_FROM: u16 = 5;
    pub const RENAME_TO: u16 = 6;
    /// The new name of a hard link.
    pub const LINK: u16 = 7;
    pub const SYMLINK: u16 = 8;
    pub const TRUNCATE: u16 = 9;
    pub const CHMOD: u16 = 10;
    pub const CHOWN: u16 = 11;
    pub const EXEC: u16 = 12;
    /// The existing name of a hard link (the new name may not grant more than it has).
    pub const LINK_SOURCE: u16 = 13;
}

/// Bytes of path a files-trie key holds: LPM key data is at most 256 bytes, 4 go to the profile
/// id. An exact-file rule stores its path plus the terminating NUL, so rule paths are at most
/// `FILE_PATH_MAX - 1` bytes.
pub const FILE_PATH_MAX: usize = 252;

/// Bytes of path an event carries (FILE and EXEC events, see [`FileEvent`]).
pub const EVENT_PATH_MAX: usize = 256;

/// Key data of the `WARDEN_FILES` LPM trie: profile id (big endian, so it is a prefix) + path
/// bytes. A directory rule `/etc/` is the 5 bytes `/etc/` (prefix length 32 + 5*8 bits): it
/// covers `/etc/passwd`, not `/etcx`. An exact rule is the path plus its NUL, so it matches that
/// path only. Values are [`access`] bits, with every containing directory rule's bits folded in
/// by userspace: the longest match alone answers.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileKey {
    pub profile_id_be: [u8; 4],
    pub path: [u8; FILE_PATH_MAX],
}

impl Default for FileKey {
    fn default() -> Self {
        Self { profile_id_be: [0; 4], path: [0; FILE_PATH_MAX] }
    }
}

/// Path bytes the kernel may write into [`PathScratch::path`] (NUL included).
pub const PATH_SCRATCH: usize = 512;

/// Per-CPU scratch of the file programs (too large for the 512-byte eBPF stack): laid out as an
/// LPM key (`prefixlen`, then [`FileKey`]), with room after the key's 252 path bytes so the
/// kernel can write paths up to `PATH_SCRATCH` bytes; a longer path is judged by its first 252
/// bytes (only directory rules can match it, which is exact: no exact rule is that long).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PathScratch {
    pub prefixlen: u32,
    pub profile_id_be: [u8; 4],
    pub path: [u8; PATH_SCRATCH],
    /// Key of `WARDEN_LEARN_FILES` being built (zeroed, then the path copied in).
    pub learn_key: LearnFileKey,
    /// Work area of the path builder of the dir+dentry hooks (names are written right to left
    /// ending at PATH_SCRATCH - 1; the 256 spare bytes let the verifier see every write in bounds).
    pub work: [u8; PATH_SCRATCH + 256],
    /// Loop state of the path builder, kept in map memory (not registers) so that the verifier
    /// sees the same state at every iteration and prunes instead of exploring each path.
    pub cur_mnt: u64,
    pub cur_dentry: u64,
    pub pos: u64,
}

/// Kinds of attempts, used in events and counters.
pub mod kind {
    pub const SYSCALL: u8 = 0;
    pub const CONNECT: u8 = 1;
    pub const SENDMSG: u8 = 2;
    pub const BIND: u8 = 3;
    pub const SOCKET: u8 = 4;
    /// A syscall made through the 32-bit compat entry (int 0x80 / ia32): numbers mean other
    /// calls there, so a confined process may not use it at all.
    pub const COMPAT_SYSCALL: u8 = 5;
    /// Open, create, delete, rename, truncate, chmod/chown of a path ([`super::FileEvent`]).
    pub const FILE: u8 = 6;
    /// Execution of a file ([`super::FileEvent`]).
    pub const EXEC: u8 = 7;
    pub const COUNT: usize = 8;
}

/// Kinds of [`LearnKey`] items that are evidence, not attempts (never in events or counters).
pub mod learn_kind {
    /// A listener of the workload that took a port the kernel chose (bound to port 0, or
    /// listen() without bind) and was connected to: `port` and `addr` are the listener's own.
    /// Learn mode writes it so that connects to the workload's own kernel-chosen ports are not
    /// pinned to one run's numbers.
    pub const KERNEL_CHOSEN_LISTENER: u8 = 0x80;
}

/// Verdict recorded in an event.
pub mod verdict {
    pub const ALLOWED: u8 = 0;
    pub const DENIED: u8 = 1;
    /// Complain mode: enforce would have denied; the attempt went ahead.
    pub const WOULD_DENY: u8 = 2;
    /// Learn mode: the attempt was recorded.
    pub const LEARNED: u8 = 3;
}

/// Value of the `WARDEN_CGROUPS` map, keyed by cgroup2 id (u64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupPolicy {
    /// Compiled profile (one per profile version) this cgroup is held to.
    pub profile_id: u32,
    /// One of [`mode`].
    pub mode: u8,
    /// [`cgroup_flags`].
    pub flags: u8,
    pub _pad: [u8; 2],
    /// For an inherited entry: the confined ancestor whose policy applies. For a root entry:
    /// its own id.
    pub root_cgroup: u64,
}

/// Value of the `WARDEN_PROFILES` map, keyed by profile id (u32): what the per-syscall path and the
/// socket-creation path need, in one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileHeader {
    /// [`profile_flags`].
    pub flags: u32,
    /// inet/inet6 protocols other than TCP and UDP that sockets may be created with
    /// ([`protocol_bits`]; only meaningful with `FAMILIES`). This was padding written as zero,
    /// so a header written before the field existed allows none: the same layout, no layout
    /// version change, and profiles without `protocols` keep their content hash.
    pub protocols: u32,
    /// Allowed socket families: bit N set = AF number N allowed (N < 64).
    pub families: u64,
    /// Allowed syscalls: bit N of word N/64 = syscall number N (native arch numbers).
    pub syscalls: [u64; SYSCALL_BITMAP_WORDS],
}

impl Default for ProfileHeader {
    fn default() -> Self {
        Self { flags: 0, protocols: 0, families: 0, syscalls: [0; SYSCALL_BITMAP_WORDS] }
    }
}

/// Bits of [`ProfileHeader::protocols`]: inet/inet6 protocols besides TCP and UDP a profile
/// names (`network.protocols`). Why they must be named: the kernel runs no cgroup connect,
/// sendmsg or bind hook for several of them (ping sockets send without a sendmsg hook; SCTP
/// connects without pre_connect; raw and ping sockets bind through their own `bind` before
/// inet_bind's hook), so the only place warden can stop them is socket creation.
pub mod protocol_bits {
    /// IPPROTO_ICMP (1): AF_INET "ping" sockets (SOCK_DGRAM).
    pub const ICMP: u32 = 1 << 0;
    /// IPPROTO_ICMPV6 (58): AF_INET6 ping sockets.
    pub const ICMPV6: u32 = 1 << 1;
    /// IPPROTO_SCTP (132).
    pub const SCTP: u32 = 1 << 2;
    /// IPPROTO_UDPLITE (136).
    pub const UDPLITE: u32 = 1 << 3;
    /// IPPROTO_MPTCP (262).
    pub const MPTCP: u32 = 1 << 4;
}

/// The [`protocol_bits`] bit of IPPROTO number `p` (0: a protocol no profile can name, so
/// never allowed). Shared by the eBPF programs and userspace.
#[inline(always)]
pub const fn protocol_bit(p: u32) -> u32 {
    match p {
        1 => protocol_bits::ICMP,
        58 => protocol_bits::ICMPV6,
        132 => protocol_bits::SCTP,
        136 => protocol_bits::UDPLITE,
        262 => protocol_bits::MPTCP,
        _ => 0,
    }
}

/// Protocol selector of a [`PortRule`].
pub mod proto {
    pub const ANY: u8 = 0;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// One allowed port range for one protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRule {
    pub lo: u16,
    pub hi: u16,
    /// One of [`proto`].
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// Value of the connect LPM tries and of the `WARDEN_BIND` map: every port range allowed for an
/// address. Userspace folds the rules of all CIDRs containing a prefix into that prefix's
/// value, so the longest-prefix match alone answers "which ports may this address be reached
/// on" with one trie lookup and at most [`MAX_PORT_RULES`] comparisons.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRules {
    pub count: u32,
    pub _pad: u32,
    pub rules: [PortRule; MAX_PORT_RULES],
}

impl Default for PortRules {
    fn default() -> Self {
        Self { count: 0, _pad: 0, rules: [PortRule::default(); MAX_PORT_RULES] }
    }
}

impl PortRules {
    /// Whether `port` with protocol `proto` (IPPROTO_*) is allowed. Shared by the eBPF programs
    /// and the userspace tests so both judge identically.
    #[inline(always)]
    pub fn allows(&self, proto: u8, port: u16) -> bool {
        let n = if (self.count as usize) < MAX_PORT_RULES { self.count as usize } else { MAX_PORT_RULES };
        let mut i = 0;
        while i < MAX_PORT_RULES {
            if i >= n {
                break;
            }
            let r = &self.rules[i];
            if (r.proto == proto::ANY || r.proto == proto) && port >= r.lo && port <= r.hi {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// Key data of the IPv4 connect trie: profile id (big endian, so it is a prefix) + address.
/// The LPM prefix length counts the 32 profile-id bits plus the CIDR's bits.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Net4Key {
    pub profile_id_be: [u8; 4],
    pub addr: [u8; 4],
}

/// Key data of the IPv6 connect trie.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Net6Key {
    pub profile_id_be: [u8; 4],
    pub addr: [u8; 16],
}

/// Key data of the node-wide deny-list trie (`WARDEN_DENY`). Both address families in one trie:
/// IPv4 entries are stored IPv4-mapped (`::ffff:a.b.c.d/96+n`), which is also how a connect
/// through an AF_INET6 socket to a mapped address is judged (no bypass by address form).
/// Two versions live side by side (`version`): userspace fills the inactive one, then switches
/// `WARDEN_STATE[STATE_DENY]` to it, so a program sees either the old lists or the new, whole.
/// An entry without a port has `ported` 0 and `proto`/`port_be` 0; one with a port has
/// `ported` 1 and its protocol and port, so its prefix covers them: a lookup per form, each one
/// LPM walk, whatever the number of entries.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DenyKey {
    pub version: u8,
    pub ported: u8,
    pub proto: u8,
    pub port_be: [u8; 2],
    pub addr: [u8; 16],
}

/// Bits of `DenyKey` before the address: a full-address lookup has prefix `DENY_KEY_HEAD_BITS + 128`.
pub const DENY_KEY_HEAD_BITS: u32 = 40;
/// Entries one version of the deny lists may hold (the trie holds two versions).
pub const DENY_MAX_ENTRIES: u32 = 1 << 19;
/// Deny lists the daemon tells apart in events and hit counters (list ids are 0..DENY_MAX_LISTS).
pub const DENY_MAX_LISTS: u32 = 256;

/// Value of the deny-list trie: which list and line the entry came from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DenyEntry {
    /// The list's id (stable for the daemon's lifetime; names in `warden status`).
    pub list: u32,
    pub line: u32,
}

/// Value of the userspace-only `WARDEN_DENY_NAMES` array, indexed by list id: the list's
/// (file) name, NUL padded, so that `warden events` names lists from the pins alone.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenyListName {
    pub name: [u8; 64],
}

/// `WARDEN_STATE[STATE_DENY]` bits: whether any deny list is in force, which version, and
/// whether any entry has a port (else the ported lookup is skipped).
pub mod deny_state {
    pub const ACTIVE: u64 = 1;
    pub const VERSION: u64 = 2;
    pub const PORTED: u64 = 4;
}

/// Value of the userspace-only `WARDEN_PROFILE_META` map, keyed by profile id: lets a restarted daemon
/// know which profile version an id holds (pinned state is the only state).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileMeta {
    /// SHA-256 of the compiled profile: the version.
    pub hash: [u8; 32],
    /// Profile name, NUL padded.
    pub name: [u8; 64],
}

impl Default for ProfileMeta {
    fn default() -> Self {
        Self { hash: [0; 32], name: [0; 64] }
    }
}

/// Value of the `WARDEN_COUNTERS` per-CPU map, keyed by the root cgroup id: exact per-kind counts of
/// violations (denied in enforce, would-deny in complain), kept even when events are dropped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub violations: [u64; kind::COUNT],
    /// Events not delivered: rate limit reached or ring buffer full.
    pub events_dropped: u64,
    pub events_sent: u64,
}

/// Value of the `WARDEN_RATE` map, keyed by root cgroup id: a fixed one-second window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateWindow {
    pub window_start_ns: u64,
    pub sent: u64,
}

/// Value of the `WARDEN_LEARN_SC` map, keyed by root cgroup id: syscalls seen in learn mode,
/// one byte per syscall number so the kernel sets an entry with a plain store (no
/// read-modify-write that two CPUs could race on and lose a bit).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallSet {
    pub seen: [u8; SYSCALL_BITMAP_BITS],
}

impl Default for SyscallSet {
    fn default() -> Self {
        Self { seen: [0; SYSCALL_BITMAP_BITS] }
    }
}

/// Learned items (learn mode) and would-deny items (complain mode) one confined cgroup may
/// hold in `WARDEN_LEARN_NET`. Past it the kernel records nothing new for that cgroup and
/// counts each refused item in [`LearnInfo::truncated`] (the visible truncation marker). The
/// check and the insert are not one atomic step, so CPUs racing on the last slot may overshoot
/// it by at most the number of CPUs.
pub const LEARN_ITEMS_PER_CGROUP: u64 = 1024;
/// Entries of `WARDEN_LEARN_NET` for all cgroups together (preallocated: 65536 x ~90 bytes,
/// about 6 MiB). A full map also marks the cgroup whose item did not fit as truncated.
pub const LEARN_NET_ENTRIES: u32 = 65536;

/// Distinct paths one cgroup may record (learn, or would-deny in complain) in
/// `WARDEN_LEARN_FILES`; past it, [`LearnInfo::file_truncated`] counts what was not recorded.
/// Worst case per cgroup: 4096 x (256-byte key + 8-byte value + ~50 bytes of hash entry)
/// = about 1.3 MiB of kernel memory, allocated as paths arrive (no preallocation).
pub const LEARN_FILES_PER_CGROUP: u64 = 4096;
/// Entries of `WARDEN_LEARN_FILES` for all cgroups together (about 20 MiB when full).
pub const LEARN_FILES_ENTRIES: u32 = 65536;
/// Path bytes a learn record holds, NUL included: longer paths are recorded cut, with
/// [`LearnFileUse::cut`] set, and generated as a rule for their longest directory that fits.
pub const LEARN_PATH_MAX: usize = 248;

/// Value of `WARDEN_LEARN_FILES`: which uses of the path were seen, one byte each (set to 1
/// with plain stores, so racing CPUs cannot lose each other's marks).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearnFileUse {
    pub read: u8,
    pub write: u8,
    pub exec: u8,
    /// The path was longer than [`LEARN_PATH_MAX`] - 1 bytes and is recorded cut.
    pub cut: u8,
    pub _pad: [u8; 4],
}

/// Key of the `WARDEN_LEARN_FILES` hash map: a path a cgroup used (as the kernel resolved it),
/// zero-padded so equal paths are equal keys. Value: [`LearnFileUse`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnFileKey {
    pub root_cgroup: u64,
    pub path: [u8; LEARN_PATH_MAX],
}

impl Default for LearnFileKey {
    fn default() -> Self {
        Self { root_cgroup: 0, path: [0; LEARN_PATH_MAX] }
    }
}

/// Key of the `WARDEN_LEARN_NET` hash map: one distinct network item of a confined cgroup,
/// deduplicated in the kernel (a repeat costs one lookup and sends no event).
/// connect/sendmsg: destination address and port (no source port is involved). bind: the
/// port asked for (0 = kernel-chosen). socket: family, `proto` = IPPROTO_* (0 when seen at the
/// socket() syscall), `port` = socket type (0 when seen at the syscall).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LearnKey {
    pub root_cgroup: u64,
    /// One of [`kind`] (CONNECT, SENDMSG, BIND, SOCKET), or [`learn_kind`].
    pub kind: u8,
    /// IPPROTO_* (truncated to 8 bits).
    pub proto: u8,
    pub family: u16,
    pub port: u16,
    pub _pad: [u8; 2],
    /// IPv4 in the first four bytes, or IPv6.
    pub addr: [u8; 16],
}

/// Value of the `WARDEN_LEARN_INFO` map, keyed by root cgroup id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnInfo {
    /// Distinct items this cgroup holds in `WARDEN_LEARN_NET`.
    pub items: u64,
    /// Attempts whose (new) item was not recorded: per-cgroup bound reached or map full.
    pub truncated: u64,
    /// Distinct paths this cgroup holds in `WARDEN_LEARN_FILES`.
    pub file_items: u64,
    /// File/exec attempts whose (new) path was not recorded: bound reached or map full.
    pub file_truncated: u64,
    /// Socket families created (byte N set = AF number N), recorded at socket()/socketpair()
    /// by the syscall hook with a plain store (families without a cgroup hook: unix, netlink).
    pub families: [u8; 64],
}

impl Default for LearnInfo {
    fn default() -> Self {
        Self { items: 0, truncated: 0, file_items: 0, file_truncated: 0, families: [0; 64] }
    }
}

/// Record in the `WARDEN_EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The cgroup the process was in.
    pub cgroup_id: u64,
    /// The confined cgroup whose policy applied (differs for descendants).
    pub root_cgroup: u64,
    pub ktime_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    pub profile_id: u32,
    /// Syscall number (SYSCALL, COMPAT_SYSCALL), IPPROTO_* for network kinds, or the
    /// [`access`] bits needed (FILE, EXEC).
    pub nr: u32,
    pub kind: u8,
    pub verdict: u8,
    pub mode: u8,
    pub _pad: u8,
    /// AF_* of the attempt (network kinds).
    pub family: u16,
    /// Host byte order port (network kinds); socket type for SOCKET; [`file_op`] for FILE and
    /// EXEC.
    pub port: u16,
    /// IPv4 in the first four bytes, or IPv6.
    pub addr: [u8; 16],
    pub comm: [u8; 16],
    /// Denied by a node-wide deny list: the list's id + 1 (0: not a deny-list denial). The
    /// daemon maps ids to list names ([`DenyEntry::list`]).
    pub deny_list: u32,
    /// Denied by a deny list: the entry's line in the list file.
    pub deny_line: u32,
}

/// Ring buffer record of the FILE and EXEC kinds: the common header plus the path the kernel
/// resolved (NUL terminated, truncated to [`EVENT_PATH_MAX`] - 1 bytes). Readers tell the two
/// records apart by `kind` (and the record length).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileEvent {
    pub ev: Event,
    pub path: [u8; EVENT_PATH_MAX],
}

/// Offsets into kernel structs, read from the running kernel's BTF by userspace and handed to
/// the programs as read-only globals (Rust eBPF has no CO-RE). Names are the global symbols.
pub mod globals {
    /// `struct cgroup` -> `kn` (struct kernfs_node *).
    pub const CGROUP_KN: &str = "OFF_CGROUP_KN";
    /// `struct kernfs_node` -> `id` (u64).
    pub const KERNFS_NODE_ID: &str = "OFF_KERNFS_NODE_ID";
    /// `struct cgroup` -> `self.parent` (struct cgroup_subsys_state *; `self` is a cgroup's css,
    /// so the parent css pointer is the parent cgroup).
    pub const CGROUP_PARENT: &str = "OFF_CGROUP_PARENT";
    /// `struct cgroup` -> `root` (struct cgroup_root *).
    pub const CGROUP_ROOT: &str = "OFF_CGROUP_ROOT";
    /// `struct cgroup_root` -> `hierarchy_id` (int). cgroup2 is hierarchy 0.
    pub const CGROUP_ROOT_HIERARCHY_ID: &str = "OFF_CGROUP_ROOT_HIERARCHY_ID";
    /// `struct task_struct` -> `thread_info.status` (x86: TS_COMPAT marks a 32-bit syscall).
    pub const TASK_TI_STATUS: &str = "OFF_TASK_TI_STATUS";
    /// `struct file` -> `f_path` (struct path).
    pub const FILE_F_PATH: &str = "OFF_FILE_F_PATH";
    /// `struct file` -> `f_mode` (fmode_t).
    pub const FILE_F_MODE: &str = "OFF_FILE_F_MODE";
    /// `struct file` -> `f_inode`; `struct inode` -> `i_mode` (umode_t).
    pub const FILE_F_INODE: &str = "OFF_FILE_F_INODE";
    pub const INODE_I_MODE: &str = "OFF_INODE_I_MODE";
    /// `struct linux_binprm` -> `file` (struct file *).
    pub const BPRM_FILE: &str = "OFF_BPRM_FILE";
    /// `struct path` -> `mnt`, `dentry`.
    pub const PATH_MNT: &str = "OFF_PATH_MNT";
    pub const PATH_DENTRY: &str = "OFF_PATH_DENTRY";
    /// `struct dentry` -> `d_parent`, `d_name.len`, `d_name.name`.
    pub const DENTRY_PARENT: &str = "OFF_DENTRY_PARENT";
    pub const DENTRY_NAME_LEN: &str = "OFF_DENTRY_NAME_LEN";
    pub const DENTRY_NAME: &str = "OFF_DENTRY_NAME";
    /// `struct vfsmount` -> `mnt_root`.
    pub const VFSMOUNT_ROOT: &str = "OFF_VFSMOUNT_ROOT";
    /// `struct mount` -> `mnt` (the embedded vfsmount), `mnt_parent`, `mnt_mountpoint`.
    pub const MOUNT_MNT: &str = "OFF_MOUNT_MNT";
    pub const MOUNT_PARENT: &str = "OFF_MOUNT_PARENT";
    pub const MOUNT_MOUNTPOINT: &str = "OFF_MOUNT_MOUNTPOINT";
    /// `struct mount` -> `mnt_ns`: kernel-internal mounts (overlayfs's private layer clones,
    /// shmem, nsfs) carry MNT_NS_INTERNAL there.
    pub const MOUNT_NS: &str = "OFF_MOUNT_NS";
    /// `struct task_struct` -> `fs`; `struct fs_struct` -> `root` (struct path).
    pub const TASK_FS: &str = "OFF_TASK_FS";
    pub const FS_ROOT: &str = "OFF_FS_ROOT";
    /// Network LSM programs (net_lsm.rs). 1 when every offset below was found in the
    /// kernel's BTF; 0 (then those programs judge nothing) otherwise.
    pub const NET_OFFSETS_OK: &str = "NET_OFFSETS_OK";
    /// `struct socket` -> `sk` (struct sock *).
    pub const SOCKET_SK: &str = "OFF_SOCKET_SK";
    /// `struct sock` -> `__sk_common.skc_family` (unsigned short), `skc_state` (u8),
    /// `skc_num` (u16, the local port in host order; 0 = not bound), `skc_daddr`,
    /// `skc_rcv_saddr` (__be32), `skc_v6_daddr`, `skc_v6_rcv_saddr` (struct in6_addr),
    /// `skc_prot` (struct proto *); `sk_type`, `sk_protocol` (u16).
    pub const SOCK_FAMILY: &str = "OFF_SOCK_FAMILY";
    pub const SOCK_STATE: &str = "OFF_SOCK_STATE";
    pub const SOCK_NUM: &str = "OFF_SOCK_NUM";
    pub const SOCK_DADDR: &str = "OFF_SOCK_DADDR";
    pub const SOCK_RCV_SADDR: &str = "OFF_SOCK_RCV_SADDR";
    pub const SOCK_V6_DADDR: &str = "OFF_SOCK_V6_DADDR";
    pub const SOCK_V6_RCV_SADDR: &str = "OFF_SOCK_V6_RCV_SADDR";
    pub const SOCK_PROT: &str = "OFF_SOCK_PROT";
    pub const SOCK_TYPE: &str = "OFF_SOCK_TYPE";
    pub const SOCK_PROTOCOL: &str = "OFF_SOCK_PROTOCOL";
    /// `struct proto` -> `bind`: non-NULL for protocols that bind without inet_bind's cgroup
    /// hook (raw, ping, SCTP).
    pub const PROTO_BIND: &str = "OFF_PROTO_BIND";
    /// `struct msghdr` -> `msg_name` (kernel copy of the destination), `msg_namelen` (int).
    pub const MSGHDR_NAME: &str = "OFF_MSGHDR_NAME";
    pub const MSGHDR_NAMELEN: &str = "OFF_MSGHDR_NAMELEN";
    /// Events per second per confined cgroup before events are dropped (counted).
    pub const EVENT_RATE_LIMIT: &str = "EVENT_RATE_LIMIT";
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all types are repr(C), Copy, and valid for any bit pattern.
    unsafe impl aya::Pod for CgroupPolicy {}
    unsafe impl aya::Pod for ProfileHeader {}
    unsafe impl aya::Pod for PortRules {}
    unsafe impl aya::Pod for Net4Key {}
    unsafe impl aya::Pod for Net6Key {}
    unsafe impl aya::Pod for ProfileMeta {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for RateWindow {}
    unsafe impl aya::Pod for SyscallSet {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for LearnKey {}
    unsafe impl aya::Pod for LearnInfo {}
    unsafe impl aya::Pod for LearnFileKey {}
    unsafe impl aya::Pod for LearnFileUse {}
    unsafe impl aya::Pod for FileEvent {}
    unsafe impl aya::Pod for FileKey {}
    unsafe impl aya::Pod for DenyKey {}
    unsafe impl aya::Pod for DenyEntry {}
    unsafe impl aya::Pod for DenyListName {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(size_of::<CgroupPolicy>(), 16);
        assert_eq!(size_of::<ProfileHeader>(), 16 + 8 * SYSCALL_BITMAP_WORDS);
        assert_eq!(size_of::<PortRule>(), 8);
        assert_eq!(size_of::<PortRules>(), 8 + 8 * MAX_PORT_RULES);
        assert_eq!(size_of::<Net4Key>(), 8);
        assert_eq!(size_of::<Net6Key>(), 20);
        assert_eq!(size_of::<Event>(), 8 * 3 + 4 * 4 + 4 + 4 + 16 + 16 + 4 + 4);
        // LPM key data: version, with-port flag, protocol, port, address; no padding.
        assert_eq!(size_of::<DenyKey>(), 1 + 1 + 1 + 2 + 16);
        assert_eq!(size_of::<DenyEntry>(), 8);
        assert_eq!(size_of::<DenyListName>(), 64);
        assert_eq!(size_of::<LearnKey>(), 32);
        assert_eq!(size_of::<LearnInfo>(), 32 + 64);
        assert_eq!(size_of::<FileEvent>(), size_of::<Event>() + EVENT_PATH_MAX);
        // LPM key data (without the 4-byte prefix length) is at most 256 bytes.
        assert_eq!(size_of::<FileKey>(), 256);
        assert_eq!(size_of::<PathScratch>(), 8 + 2 * PATH_SCRATCH + 256 + 24 + 256);
        assert_eq!(size_of::<LearnFileKey>(), 256);
    }

    #[test]
    fn port_rules_match_protocol_and_range() {
        let mut r = PortRules::default();
        r.rules[0] = PortRule { lo: 80, hi: 80, proto: proto::TCP, _pad: [0; 3] };
        r.rules[1] = PortRule { lo: 5000, hi: 5010, proto: proto::ANY, _pad: [0; 3] };
        r.count = 2;
        assert!(r.allows(proto::TCP, 80));
        assert!(!r.allows(proto::UDP, 80));
        assert!(r.allows(proto::UDP, 5005));
        assert!(!r.allows(proto::TCP, 5011));
        assert!(!PortRules::default().allows(proto::TCP, 80));
    }
}
