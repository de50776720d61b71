//! The enforcement engine's userspace API: load warden's eBPF programs (adopting whatever is
//! pinned), and confine, re-profile and release cgroups.
//!
//! Pinned layout under the pin folder (default /sys/fs/bpf/warden):
//! - `maps/WARDEN_*`          every map (policy tables, counters, events)
//! - `links/cgroup_mkdir`,`links/cgroup_rmdir`  descendant tracking, always attached
//! - `links/sys_enter`        the syscall hook, present only while some cgroup needs it
//! - `cgroups/<id>/<program>` the network programs attached to each confined cgroup
//!
//! All state lives in the pins, so any warden process (daemon or CLI) adopts it. Writers take
//! an exclusive flock on the pin folder.
pub mod files;
pub mod maps;

mod attach;
pub mod deny;
mod install;
mod modify_return;
mod programs;

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use aya::{Btf, Ebpf};
use serde::Serialize;
use tracing::{debug, info};
use warden_common::{mode, profile_flags, MAP_LAYOUT_VERSION};

pub use install::{kernel_header, Arming};
pub use maps::Maps;

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/warden";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Complain,
    Learn,
}

impl Mode {
    pub fn raw(self) -> u8 {
        match self {
            Mode::Enforce => mode::ENFORCE,
            Mode::Complain => mode::COMPLAIN,
            Mode::Learn => mode::LEARN,
        }
    }

    pub fn from_raw(v: u8) -> Option<Mode> {
        match v {
            mode::ENFORCE => Some(Mode::Enforce),
            mode::COMPLAIN => Some(Mode::Complain),
            mode::LEARN => Some(Mode::Learn),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Complain => "complain",
            Mode::Learn => "learn",
        }
    }
}

/// One confined cgroup, as `list` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct PinnedCgroup {
    pub cgroup_id: u64,
    pub profile: String,
    pub profile_id: u32,
    pub version: String,
    pub mode: String,
    pub descendants: usize,
    pub violations: std::collections::BTreeMap<&'static str, u64>,
    pub events_sent: u64,
    pub events_dropped: u64,
}

pub fn kind_name(k: u8) -> &'static str {
    use warden_common::kind::*;
    match k {
        SYSCALL => "syscall",
        CONNECT => "connect",
        SENDMSG => "sendmsg",
        BIND => "bind",
        SOCKET => "socket",
        COMPAT_SYSCALL => "compat-syscall",
        FILE => "file",
        EXEC => "exec",
        warden_common::learn_kind::KERNEL_CHOSEN_LISTENER => "own-listener",
        _ => "unknown",
    }
}

pub struct Enforcer {
    ebpf: Ebpf,
    maps: Maps,
    pin_dir: PathBuf,
    /// Ok: how the BPF-LSM programs run here (lsm/ or fmod_ret). Err: why the bpf-lsm layer
    /// is unusable here.
    lsm: std::result::Result<crate::kernel::probe::LsmPath, String>,
    /// The fmod_ret path (issue 18): the relocated object while programs are being loaded,
    /// and each loaded program by name.
    fmod: Option<modify_return::Relocated>,
    fmod_progs: std::collections::HashMap<String, std::os::fd::OwnedFd>,
    /// The kernel's BTF, parsed when the first LSM program is loaded.
    btf: Option<Btf>,
    /// How long a shared hook (sys_enter, each LSM group) stays attached after the last
    /// cgroup that needed it went away; zero detaches at once. See `SharedHook`.
    idle_grace: Duration,
    /// When each shared hook (indexed by `SharedHook`) became unneeded while still attached.
    idle_since: [Option<Instant>; 4],
    _lock: File,
}

impl Enforcer {
    /// Loads the programs (maps reuse their pins) and makes sure descendant tracking is
    /// attached. Takes the writer lock for the life of the value.
    pub fn open(pin_dir: &Path) -> Result<Enforcer> {
        let bpffs = pin_dir.parent().unwrap_or(Path::new("/"));
        if !crate::kernel::probe::is_bpffs(bpffs) && !crate::kernel::probe::is_bpffs(pin_dir) {
            bail!(
                "{} is not a bpffs mount: warden pins its state there (mount -t bpf bpf {})",
                bpffs.display(),
                bpffs.display()
            );
        }
        for sub in ["maps", "links", "cgroups"] {
            std::fs::create_dir_all(pin_dir.join(sub))
                .with_context(|| format!("creating {}", pin_dir.join(sub).display()))?;
        }
        let lock = File::open(pin_dir).with_context(|| format!("opening {}", pin_dir.display()))?;
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).context("locking the pin folder");
        }
        maps::check_layout(pin_dir)?;
        let ebpf = programs::load_object(pin_dir)?;
        // LSM programs are loaded when first attached (set_lsm_group): verifying them is the
        // costly part of a load, and most warden invocations find their links pinned already.
        let lsm = crate::kernel::probe::bpf_lsm_status();
        if let Err(why) = &lsm {
            debug!("bpf-lsm layer unavailable: {why}");
        }
        let mut maps = Maps::open(pin_dir)?;
        maps.state.set(maps::STATE_LAYOUT, MAP_LAYOUT_VERSION as u64, 0)?;

        let mut e = Enforcer {
            ebpf,
            maps,
            pin_dir: pin_dir.to_path_buf(),
            lsm,
            fmod: None,
            fmod_progs: Default::default(),
            btf: None,
            idle_grace: Duration::ZERO,
            idle_since: [None; 4],
            _lock: lock,
        };
        e.ensure_raw_tp("warden_cgroup_mkdir", "cgroup_mkdir")?;
        e.ensure_raw_tp("warden_cgroup_rmdir", "cgroup_rmdir")?;
        e.ensure_raw_tp("warden_exec_arm", "sched_process_exec")?;
        programs::return_load_memory();
        Ok(e)
    }

    pub fn maps(&self) -> &Maps {
        &self.maps
    }

    /// Whether the BPF-LSM layer (files, execs, syscalls refused before they run) works here;
    /// Err says what is missing.
    pub fn lsm_status(&self) -> std::result::Result<(), &str> {
        self.lsm.as_ref().map(|_| ()).map_err(|s| s.as_str())
    }

    /// How the BPF-LSM programs run here, if they can.
    pub fn lsm_path(&self) -> Option<crate::kernel::probe::LsmPath> {
        self.lsm.as_ref().ok().copied()
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    fn link_pin(&self, name: &str) -> PathBuf {
        self.pin_dir.join("links").join(name)
    }

    fn cgroup_pin_dir(&self, id: u64) -> PathBuf {
        self.pin_dir.join("cgroups").join(id.to_string())
    }
}

/// Drops every pinned map and link under `pin_dir`: all enforcement by this warden ends (links
/// detach when their last pin goes, maps are freed with them). Used by tests and package purge.
pub fn reset(pin_dir: &Path) -> Result<bool> {
    if !pin_dir.exists() {
        return Ok(false);
    }
    let lock = File::open(pin_dir).with_context(|| format!("opening {}", pin_dir.display()))?;
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("locking the pin folder");
    }
    // Links first, so nothing runs against half-removed maps.
    for sub in ["cgroups", "links"] {
        let d = pin_dir.join(sub);
        if d.exists() {
            std::fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
        }
    }
    std::fs::remove_dir_all(pin_dir).with_context(|| format!("removing {}", pin_dir.display()))?;
    info!(pin_dir = %pin_dir.display(), "all warden state removed");
    Ok(true)
}

/// The syscall hook is needed by a syscall allow-list, a socket-family list (non-inet families
/// are judged at socket()), and learn mode.
pub fn needs_sys_enter(profile_flags: u32, mode: u8) -> bool {
    mode == mode::LEARN || profile_flags & (profile_flags::SYSCALLS | profile_flags::FAMILIES) != 0
}

/// The confined cgroups, for `warden status`. Reads the pins only.
pub fn list(maps: &Maps) -> Vec<PinnedCgroup> {
    let mut out: Vec<PinnedCgroup> = maps
        .roots()
        .into_iter()
        .map(|(id, p)| {
            let meta = maps.meta_of(p.profile_id).unwrap_or_default();
            let c = maps.counters_of(id);
            PinnedCgroup {
                cgroup_id: id,
                profile: maps::name_of(&meta),
                profile_id: p.profile_id,
                version: meta.hash[..6].iter().map(|b| format!("{b:02x}")).collect(),
                mode: Mode::from_raw(p.mode).map(|m| m.as_str().to_string()).unwrap_or_else(|| format!("?{}", p.mode)),
                descendants: maps.inherited_of(id).len(),
                violations: (0..warden_common::kind::COUNT as u8)
                    .map(|k| (kind_name(k), c.violations[k as usize]))
                    .filter(|(_, v)| *v > 0)
                    .collect(),
                events_sent: c.events_sent,
                events_dropped: c.events_dropped,
            }
        })
        .collect();
    out.sort_by_key(|c| c.cgroup_id);
    out
}
