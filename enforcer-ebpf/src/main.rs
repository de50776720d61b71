//! warden's eBPF programs. They are deliberately small: every decision is a lookup in tables
//! that userspace compiled from a profile (see hook/src/enforcer). Maps are pinned by name so
//! enforcement outlives the daemon.
//!
//! Programs, by module:
//! - `syscalls`: `warden_sys_enter` (raw_tp sys_enter): per-profile syscall bitmap; SIGKILL /
//!   report / learn. Attached only while some confined cgroup needs it.
//! - `syscall_fentry`: `warden_sc_fentry_getppid` / `_read`: the same syscall judge as per-function
//!   fentry programs, for the benchmark only (issue 19, item 3; the engine never loads them).
//! - `network`: `warden_connect4/6`, `warden_sendmsg4/6`, `warden_bind4/6` (cgroup sock_addr)
//!   and `warden_sock_create` (cgroup sock): network allow-lists; denial = EPERM. Attached to
//!   each confined cgroup, so they only ever run for confined processes. `warden_ingress`
//!   (cgroup_skb ingress): connections to listeners on ports the profile may not bind (listen()
//!   without bind() runs no bind hook) are dropped.
//! - `deny`: the node-wide deny lists (one LPM trie), checked first by the connect/sendmsg
//!   programs above and `warden_socket_sendmsg`; `warden_deny_connect4/6` and
//!   `warden_deny_sendmsg4/6` apply them to unconfined containers below an operator's cgroup.
//! - `descendants`: `warden_cgroup_mkdir` / `warden_cgroup_rmdir` (raw_tp): a cgroup made below
//!   a confined cgroup inherits its policy before mkdir() returns, so no process can escape by
//!   moving into a fresh sub-cgroup. `warden_exec_arm` (raw_tp sched_process_exec) arms a
//!   cgroup confined at createRuntime at its first exec (cgroup_flags::ARM_AT_EXEC).
//! - `files`: `warden_file_open`, `warden_bprm_check` and the `warden_path_*` programs
//!   (BPF-LSM): the files allow-list (r/w/x by path, an LPM trie per profile); denial = EPERM.
//! - `gates`: `warden_sb_mount`, `warden_ptrace`, `warden_bpf`, ... (BPF-LSM): dangerous
//!   syscalls outside the syscall allow-list fail with EPERM before they do anything (the
//!   sys_enter kill follows); `warden_socket_create` also refuses inet protocols the profile
//!   does not name before the kernel looks the protocol up (or autoloads its module).
//! - `net_lsm`: `warden_socket_bind`, `warden_socket_listen`, `warden_socket_sendmsg`
//!   (BPF-LSM): listen() on an unbound socket, binds and sends of raw and ping sockets, which
//!   no cgroup hook can refuse, judged by the bind and connect rules; denial = EPERM.
//!
//! What they share: `maps` (all maps), `globals` (read-only kernel offsets and settings),
//! `policy` (which policy applies to a cgroup), `verdict` (the mode logic: deny, report or
//! record), `report` (counters, rate window, events) and `learn` (the deduplicated records).
//!
//! The LSM programs are global `lsm` programs whose first step is the cgroup lookup, not
//! `lsm_cgroup` programs: warden uses ~20 hooks and the kernel allows at most 10 distinct
//! lsm_cgroup hooks system-wide (shared with every other user), descendants of a confined
//! cgroup are already covered by the WARDEN_CGROUPS entries the mkdir tracepoint writes, and the
//! loader attaches them only while some confined cgroup needs them (like sys_enter). The cost
//! for an unconfined process is one hash lookup per hook call.
//!
//! Every program function is `#[inline(always)]`: aya's macros wrap the body as an inner
//! function, and if LLVM keeps that as a separate subprogram, kernel 6.1's verifier rejects its
//! context argument ("reg type unsupported for arg#0").
#![no_std]
#![no_main]
// atomic_xadd (learn.rs): the bpf target has no AtomicU64::fetch_add, but the kernel has atomic add.
#![allow(internal_features)]
#![feature(core_intrinsics)]
// Map keys and values are passed to aya-ebpf by reference on purpose: taking them by value
// would copy each key (some are 256 bytes) onto the 512-byte BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]

mod deny;
mod descendants;
mod files;
mod gates;
mod globals;
mod learn;
mod maps;
mod net_lsm;
mod network;
mod policy;
mod report;
mod syscall_fentry;
mod syscalls;
mod verdict;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// The licence the kernel sees: LSM programs and GPL-only helpers (bpf_probe_read_kernel,
/// bpf_get_current_task, ...) need a GPL-compatible one. See the licence field in Cargo.toml.
#[no_mangle]
#[link_section = "license"]
pub static LICENSE: [u8; 4] = *b"GPL\0";
