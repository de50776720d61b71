//! The one skip gate of every end-to-end test: [`skip_unless`]. Outside CI a test whose
//! prerequisites are missing is skipped with the reason; with `CI=true` it fails, because a
//! kernel or containerd test that did not run proves nothing.
use std::path::Path;
use std::process::Command;

use crate::{bin, cgroup2_mount, in_ci, static_attempt};

/// What a test needs from the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Effective uid 0.
    Root,
    /// A cgroup2 mount.
    Cgroup2,
    /// /sys/fs/bpf is a bpffs mount.
    Bpffs,
    /// The `warden` and `warden-attempt` binaries are built.
    Binaries,
    /// A containerd to run: /sys/fs/cgroup, and apt-get or a cached containerd
    /// (scripts/containerd.sh installs it).
    Containerd,
    /// /usr/sbin/runc.
    Runc,
    /// The static `warden-attempt` (built by scripts/test.sh) to mount into containers.
    StaticAttempt,
    /// The kernel has SCTP (CONFIG_IP_SCTP, built in or loadable: `modprobe sctp` is tried).
    Sctp,
}

/// What every kernel test needs: root, cgroup2, bpffs and the built binaries.
pub const KERNEL: &[Need] = &[Need::Root, Need::Cgroup2, Need::Bpffs, Need::Binaries];
/// Kernel tests with a private containerd.
pub const CONTAINERD: &[Need] = &[Need::Root, Need::Containerd, Need::Cgroup2, Need::Bpffs, Need::Binaries];

pub const RUNC: &str = "/usr/sbin/runc";

impl Need {
    /// Why this machine lacks it, if it does.
    pub fn missing(self) -> Option<String> {
        let ok = match self {
            Need::Root => (unsafe { libc::geteuid() }) == 0,
            Need::Cgroup2 => cgroup2_mount().is_some(),
            Need::Bpffs => Path::new("/sys/fs/bpf").join(".").exists() && is_bpffs("/sys/fs/bpf"),
            Need::Binaries => {
                let absent: Vec<String> = ["warden", "warden-attempt"]
                    .iter()
                    .filter(|b| !bin(b).exists())
                    .map(|b| format!("{} not built (run `cargo build --bins` first)", bin(b).display()))
                    .collect();
                return (!absent.is_empty()).then(|| absent.join("; "));
            }
            Need::Containerd => {
                if !Path::new("/sys/fs/cgroup").exists() {
                    return Some("no /sys/fs/cgroup".into());
                }
                Command::new("apt-get").arg("--version").output().is_ok()
                    || Path::new("/var/cache/warden-build/containerd/usr/bin/containerd").exists()
            }
            Need::Runc => Path::new(RUNC).is_file(),
            Need::StaticAttempt => static_attempt().is_file(),
            Need::Sctp => sctp_available(),
        };
        if ok {
            return None;
        }
        Some(match self {
            Need::Root => "must run as root".into(),
            Need::Cgroup2 => "no cgroup2 mount".into(),
            Need::Bpffs => "/sys/fs/bpf is not a bpffs mount (scripts/setup.sh mounts it)".into(),
            Need::Containerd => "neither apt-get nor a cached containerd (scripts/containerd.sh)".into(),
            Need::Runc => format!("{RUNC} missing (apt-get install runc)"),
            Need::StaticAttempt => "static warden-attempt missing (scripts/test.sh builds it)".into(),
            Need::Sctp => {
                "this kernel has no SCTP: socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) fails with EPROTONOSUPPORT after `modprobe sctp` (CONFIG_IP_SCTP not set, or the module cannot be loaded)".into()
            }
            Need::Binaries => unreachable!("returned above"),
        })
    }
}

/// Why this machine cannot run a test needing `needs`, if it cannot (every reason, `; `-joined).
pub fn missing(needs: &[Need]) -> Option<String> {
    let why: Vec<String> = needs.iter().filter_map(|n| n.missing()).collect();
    (!why.is_empty()).then(|| why.join("; "))
}

/// Whether the calling test can run what it `needs`. When it cannot: outside CI, false (the
/// test returns, skipped, with the reason printed); with `CI=true`, panics.
pub fn skip_unless(needs: &[Need]) -> bool {
    match missing(needs) {
        None => true,
        Some(why) => skip(&why),
    }
}

/// Skips the calling test for `why` (false), or fails it under `CI=true`.
pub fn skip(why: &str) -> bool {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    if in_ci() {
        panic!("{test}: CI=true and this test cannot run: {why}");
    }
    eprintln!("SKIPPED {test} (not in CI): {why}");
    false
}

/// Whether an SCTP socket can be made here, after trying to load the module.
fn sctp_available() -> bool {
    let _ = Command::new("modprobe").arg("sctp").output();
    let fd = unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_STREAM, 132 /* IPPROTO_SCTP */)
    };
    if fd >= 0 {
        unsafe { libc::close(fd) };
    }
    fd >= 0
}

fn is_bpffs(p: &str) -> bool {
    let c = std::ffi::CString::new(p).unwrap();
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == 0xcafe4a11 }
}
