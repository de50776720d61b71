//! Learn mode in userspace: read what the kernel recorded for a confined cgroup (syscall bytes
//! in `WARDEN_LEARN_SC`, deduplicated network items in `WARDEN_LEARN_NET`, the bound counters
//! in `WARDEN_LEARN_INFO`) and turn it into a profile. Profiles are unioned (`profile merge`)
//! by [`crate::profile::merge`].
//!
//! Layout: [`record`] reads the kernel maps into a [`Learned`]; [`generate`](mod@generate)
//! turns one into a profile; [`stability`] tells from several runs whether the record is
//! still growing.
//!
//! Generation rules (each one is stated in the generated profile's `description` when it
//! applied, and printed as the report):
//! - syscalls: exactly the learned ones, `default: kill`, plus [`ALWAYS_SYSCALLS`] (process
//!   end, signal return, and the housekeeping calls the container runtime's Go init makes only
//!   depending on timing before the entrypoint's exec).
//! - connect/sendmsg: one rule per destination address and protocol, the address exact (`/32`,
//!   `/128`; loopback included), its ports listed (adjacent ports joined into ranges). IPv4-mapped
//!   IPv6 destinations are written as IPv4 (enforce judges them by the IPv4 rules). No source
//!   port is ever involved. An address with more port ranges than the kernel table holds gets
//!   one range from its lowest to its highest port.
//! - connects to the workload's own listeners whose port the kernel chose (bound to port 0, or
//!   listen() without bind; the listener check records the port it sees as
//!   `learn_kind::KERNEL_CHOSEN_LISTENER`), on a loopback address and inside the ephemeral
//!   range: that address with the ephemeral range 32768-60999 instead of the run's number (the
//!   next run gets another port). Not for other addresses (a listener there may be someone
//!   else's), not for UDP (no listener state to see).
//! - bind: the ports bound, per protocol (0 = a kernel-chosen port, kept as 0). Ports in Linux's
//!   default ephemeral range 32768-60999 are collapsed into that whole range only when the run
//!   bound at least [`EPHEMERAL_COLLAPSE_MIN`] distinct ports there (plainly random ports);
//!   otherwise they stay exact.
//! - socket families: the ones created; raw inet sockets allowed only if one was created.
//! - files and execs (recorded by the BPF-LSM programs in `WARDEN_LEARN_FILES`, deduplicated
//!   and bounded in the kernel): one rule per path with the uses seen (`r`, `w`, `x`), as the
//!   kernel resolved it (symlinks followed). Generalised: `/proc/<pid>/...` (the kernel writes
//!   `/proc/self` as the pid) becomes `/proc/`; under the temp folders ([`TEMP_ROOTS`]) a path
//!   with a generated name in it (mkstemp/mkdtemp, Python's tempfile: see
//!   [`looks_generated`]) becomes the folder that holds the generated name (rules have no
//!   wildcards; that folder is the narrowest rule that names no run's own random name); a directory with more than
//!   [`GenerateOptions::collapse_dir_files`] entries used becomes a `dir/` prefix rule with
//!   their uses; a listed directory (opendir) needs its `dir/` prefix (the only rule that covers
//!   it), which covers what is below it too; a path the record had to cut becomes a rule for its
//!   longest directory; ` (deleted)` suffixes are dropped; paths a rule cannot name (not
//!   absolute) are left out. Where BPF-LSM is unavailable nothing is recorded and the section
//!   is left out (not restricted), and the report says so.
pub mod generate;
pub mod record;
pub mod stability;
#[cfg(test)]
mod tests;

pub use generate::{
    container_profile_name, generate, looks_generated, temp_name_dir, GenerateOptions, Generated, ALWAYS_SYSCALLS,
    COLLAPSE_DIR_FILES, EPHEMERAL, EPHEMERAL_COLLAPSE_MIN, TEMP_ROOTS,
};
pub use record::{item_addr, item_text, Learned};
