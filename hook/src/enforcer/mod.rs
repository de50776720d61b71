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

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use aya::{
    maps::lpm_trie::Key,
    programs::{links::FdLink, CgroupAttachMode, CgroupSock, CgroupSockAddr, Lsm, RawTracePoint},
    Btf, Ebpf, EbpfLoader,
};
use serde::Serialize;
use tracing::{debug, info, warn};
use warden_common::{
    cgroup_flags, globals, mode, profile_flags, CgroupPolicy, LearnInfo, Net4Key, Net6Key, ProfileMeta, SyscallSet,
    MAP_LAYOUT_VERSION,
};

use crate::{cgroup, kernel::btf::KernelOffsets, profile::CompiledProfile};
pub use maps::Maps;

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/warden";

/// The eBPF object built by hook/build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/warden"));

/// Programs attached to every confined cgroup.
const CGROUP_PROGRAMS: &[&str] = &[
    "warden_sock_create",
    "warden_connect4",
    "warden_connect6",
    "warden_sendmsg4",
    "warden_sendmsg6",
    "warden_bind4",
    "warden_bind6",
];

/// Which group of LSM programs a confined cgroup needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LsmGroup {
    /// Files and execs: a `files` section, or learn mode (which records paths and execs).
    Files,
    /// Dangerous syscalls refused before they run: a killing syscall policy or a family list.
    Gate,
}

/// BPF-LSM programs: (program, LSM hook, group, required). A required program that does not
/// load makes the bpf-lsm layer unusable; an optional one (a hook this kernel lacks) is skipped
/// with a warning. Links are pinned as `links/lsm_<hook>`.
const LSM_PROGRAMS: &[(&str, &str, LsmGroup, bool)] = &[
    ("warden_file_open", "file_open", LsmGroup::Files, true),
    ("warden_bprm_check", "bprm_check_security", LsmGroup::Files, true),
    ("warden_path_mknod", "path_mknod", LsmGroup::Files, true),
    ("warden_path_mkdir", "path_mkdir", LsmGroup::Files, true),
    ("warden_path_unlink", "path_unlink", LsmGroup::Files, true),
    ("warden_path_rmdir", "path_rmdir", LsmGroup::Files, true),
    ("warden_path_symlink", "path_symlink", LsmGroup::Files, true),
    ("warden_path_rename", "path_rename", LsmGroup::Files, true),
    ("warden_path_link", "path_link", LsmGroup::Files, true),
    ("warden_path_truncate", "path_truncate", LsmGroup::Files, true),
    ("warden_path_chmod", "path_chmod", LsmGroup::Files, true),
    ("warden_path_chown", "path_chown", LsmGroup::Files, true),
    ("warden_sb_mount", "sb_mount", LsmGroup::Gate, false),
    ("warden_sb_umount", "sb_umount", LsmGroup::Gate, false),
    ("warden_move_mount", "move_mount", LsmGroup::Gate, false),
    ("warden_ptrace", "ptrace_access_check", LsmGroup::Gate, false),
    ("warden_bpf", "bpf", LsmGroup::Gate, false),
    ("warden_perf_event_open", "perf_event_open", LsmGroup::Gate, false),
    ("warden_kernel_load_data", "kernel_load_data", LsmGroup::Gate, false),
    ("warden_kernel_read_file", "kernel_read_file", LsmGroup::Gate, false),
    ("warden_userns_create", "userns_create", LsmGroup::Gate, false),
    ("warden_key_alloc", "key_alloc", LsmGroup::Gate, false),
    ("warden_anon_inode", "inode_init_security_anon", LsmGroup::Gate, false),
    ("warden_socket_create", "socket_create", LsmGroup::Gate, false),
];

/// The profile header as the kernel holds it: the compiled header plus the FILES flag when the
/// profile has a `files` section (present but empty = nothing allowed).
pub fn kernel_header(p: &CompiledProfile) -> warden_common::ProfileHeader {
    let mut h = p.header;
    if p.files.is_some() {
        h.flags |= profile_flags::FILES;
    }
    h
}

fn lsm_groups_needed(flags: u32, mode: u8) -> (bool, bool) {
    let files = mode == mode::LEARN || flags & profile_flags::FILES != 0;
    let gate = mode == mode::ENFORCE
        && ((flags & profile_flags::SYSCALLS != 0 && flags & profile_flags::SYSCALLS_LOG_ONLY == 0)
            || flags & profile_flags::FAMILIES != 0);
    (files, gate)
}

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
        _ => "unknown",
    }
}

pub struct Enforcer {
    ebpf: Ebpf,
    maps: Maps,
    pin_dir: PathBuf,
    /// Ok: the BPF-LSM programs are loaded. Err: why the bpf-lsm layer is unusable here.
    lsm: std::result::Result<(), String>,
    /// The kernel's BTF, parsed when the first LSM program is loaded.
    btf: Option<Btf>,
    /// How long a shared hook (sys_enter, each LSM group) stays attached after the last
    /// cgroup that needed it went away; zero detaches at once. See `SharedHook`.
    idle_grace: Duration,
    /// When each shared hook (indexed by `SharedHook`) became unneeded while still attached.
    idle_since: [Option<Instant>; 3],
    _lock: File,
}

/// The hooks shared by every confined cgroup, attached while some cgroup needs them.
///
/// Why they may stay attached for a while after the last user (issue 14): every attach and
/// detach makes the kernel rewrite its own text on every CPU (the syscall tracepoint's static
/// call and static keys, the LSM hooks' static calls on 6.12+), with IPIs and RCU grace
/// periods. On a node where containers come and go that is a cost at every start and stop, and
/// it is how a 7.2 guest under qemu's multi-threaded TCG died with `Oops: int3` in
/// `trace_syscall_enter` (reproduced with no BPF at all by toggling the kernel's own
/// `raw_syscalls/sys_enter` event; see tests/vm/README.md). A daemon therefore keeps them for
/// `idle_grace` (config `hook_idle_detach_seconds`); the one-shot CLI detaches at once.
#[derive(Clone, Copy, Debug)]
enum SharedHook {
    SysEnter = 0,
    LsmFiles = 1,
    LsmGate = 2,
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

        if EBPF_OBJECT.is_empty() {
            bail!("this warden binary was built without its eBPF object (AYA_BUILD_SKIP): rebuild without it");
        }
        let off = KernelOffsets::from_running_kernel()?;
        debug!(?off, "kernel offsets from BTF");
        let rate_limit: u64 =
            std::env::var("WARDEN_EVENT_RATE_LIMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
        let maps_dir = maps::maps_dir(pin_dir);
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&maps_dir)
            .override_global(globals::CGROUP_KN, &off.cgroup_kn, true)
            .override_global(globals::KERNFS_NODE_ID, &off.kernfs_node_id, true)
            .override_global(globals::CGROUP_PARENT, &off.cgroup_parent, true)
            .override_global(globals::CGROUP_ROOT, &off.cgroup_root, true)
            .override_global(globals::CGROUP_ROOT_HIERARCHY_ID, &off.cgroup_root_hierarchy_id, true)
            .override_global(globals::TASK_TI_STATUS, &off.task_ti_status, true)
            .override_global(globals::FILE_F_PATH, &off.files.file_f_path, true)
            .override_global(globals::FILE_F_MODE, &off.files.file_f_mode, true)
            .override_global(globals::FILE_F_INODE, &off.files.file_f_inode, true)
            .override_global(globals::INODE_I_MODE, &off.files.inode_i_mode, true)
            .override_global(globals::BPRM_FILE, &off.files.bprm_file, true)
            .override_global(globals::PATH_MNT, &off.files.path_mnt, true)
            .override_global(globals::PATH_DENTRY, &off.files.path_dentry, true)
            .override_global(globals::DENTRY_PARENT, &off.files.dentry_parent, true)
            .override_global(globals::DENTRY_NAME_LEN, &off.files.dentry_name_len, true)
            .override_global(globals::DENTRY_NAME, &off.files.dentry_name, true)
            .override_global(globals::VFSMOUNT_ROOT, &off.files.vfsmount_root, true)
            .override_global(globals::MOUNT_MNT, &off.files.mount_mnt, true)
            .override_global(globals::MOUNT_PARENT, &off.files.mount_parent, true)
            .override_global(globals::MOUNT_MOUNTPOINT, &off.files.mount_mountpoint, true)
            .override_global(globals::MOUNT_NS, &off.files.mount_ns, true)
            .override_global(globals::TASK_FS, &off.files.task_fs, true)
            .override_global(globals::FS_ROOT, &off.files.fs_root, true)
            .override_global(globals::EVENT_RATE_LIMIT, &rate_limit, true)
            .load(EBPF_OBJECT)
            .context("loading warden's eBPF object")?;

        for (name, prog) in ebpf.programs_mut() {
            let r = match prog {
                aya::programs::Program::RawTracePoint(p) => p.load(),
                aya::programs::Program::CgroupSockAddr(p) => p.load(),
                aya::programs::Program::CgroupSock(p) => p.load(),
                // BPF-LSM programs: below, only where the layer works (this project's CI kernel
                // refuses every trampoline program with EPERM).
                _ => continue,
            };
            r.with_context(|| format!("loading eBPF program {name}"))?;
        }
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
            btf: None,
            idle_grace: Duration::ZERO,
            idle_since: [None; 3],
            _lock: lock,
        };
        e.ensure_raw_tp("warden_cgroup_mkdir", "cgroup_mkdir")?;
        e.ensure_raw_tp("warden_cgroup_rmdir", "cgroup_rmdir")?;
        return_load_memory();
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

    /// Refuses a profile whose files rules this kernel cannot enforce.
    fn check_layers(&self, profile: &CompiledProfile) -> Result<()> {
        if profile.files.is_some() {
            if let Err(why) = &self.lsm {
                bail!(
                    "profile {} has files rules, which need the bpf-lsm layer, and it is not usable here: {why}. {}",
                    profile.name,
                    crate::kernel::probe::ENABLE_BPF_LSM
                );
            }
        }
        Ok(())
    }

    /// Pin of the link of LSM hook `hook`.
    fn lsm_pin(&self, hook: &str) -> PathBuf {
        self.link_pin(&format!("lsm_{hook}"))
    }

    /// Loads LSM program `prog` for `hook` unless loaded. Ok(false): an optional program this
    /// kernel cannot load (warned); Err: a required one.
    fn load_lsm(&mut self, prog: &str, hook: &str, required: bool) -> Result<bool> {
        // Loaded already: no BTF needed (preload_lsm drops the parsed BTF afterwards).
        {
            let Some(p) = self.ebpf.program_mut(prog) else { bail!("program {prog} missing from the object") };
            let p: &mut Lsm = p.try_into()?;
            if p.fd().is_ok() {
                return Ok(true);
            }
        }
        if self.btf.is_none() {
            self.btf = Some(Btf::from_sys_fs().context("reading the kernel BTF for the BPF-LSM programs")?);
        }
        let btf = self.btf.as_ref().expect("parsed above");
        let Some(p) = self.ebpf.program_mut(prog) else { bail!("program {prog} missing from the object") };
        let p: &mut Lsm = p.try_into()?;
        match p.load(hook, btf) {
            Ok(()) => Ok(true),
            Err(e) => {
                let e = anyhow::Error::from(e);
                if required {
                    return Err(e).with_context(|| format!("the lsm/{hook} program does not load on this kernel"));
                }
                // A hook this kernel lacks: that syscall class keeps only the sys_enter kill.
                warn!(hook, "optional lsm program not loaded: {e:#}");
                Ok(false)
            }
        }
    }

    /// Loads (verifies) every BPF-LSM program now instead of at first use: for a long-running
    /// daemon, so that the first container with a `files` profile does not wait for the
    /// verifier inside the runtime's request timeout. A required program that does not load
    /// makes the layer unusable (profiles with `files` are then refused, with the reason).
    pub fn preload_lsm(&mut self) {
        if self.lsm.is_err() {
            return;
        }
        for (prog, hook, _, required) in LSM_PROGRAMS {
            if let Err(e) = self.load_lsm(prog, hook, *required) {
                warn!("bpf-lsm layer unusable: {e:#}");
                self.lsm = Err(format!("{e:#}"));
                return;
            }
        }
        info!("BPF-LSM programs loaded");
        // Every LSM program is verified: the parsed kernel BTF (tens of MB) is not needed
        // again unless one is reloaded (load_lsm parses it anew then).
        self.btf = None;
        return_load_memory();
    }

    /// Attaches (`want`) or detaches the LSM programs of `group`.
    fn set_lsm_group(&mut self, group: LsmGroup, want: bool) -> Result<()> {
        for (prog, hook, g, required) in LSM_PROGRAMS {
            if *g != group {
                continue;
            }
            let pin = self.lsm_pin(hook);
            if !want {
                if pin.exists() {
                    std::fs::remove_file(&pin).with_context(|| format!("detaching lsm/{hook}"))?;
                    info!(hook, "lsm program detached: no confined cgroup needs it");
                }
                continue;
            }
            if pin.exists() || self.lsm.is_err() {
                continue;
            }
            if !self.load_lsm(prog, hook, *required)? {
                continue; // optional hook this kernel lacks
            }
            let Some(p) = self.ebpf.program_mut(prog) else { bail!("program {prog} missing from the object") };
            let p: &mut Lsm = p.try_into()?;
            // Right after the last link of a hook went away, 7.x kernels were seen to refuse a
            // new attach with EBUSY for a moment (the trampoline is torn down asynchronously):
            // retry for up to ~1 s instead of failing a container's start.
            let mut attempt = 0;
            let attached = loop {
                match p.attach() {
                    Err(e) if attempt < 100 && is_ebusy(&e) => {
                        attempt += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    r => break r,
                }
            };
            if attempt > 0 {
                debug!(hook, retries = attempt, "lsm attach retried after EBUSY");
            }
            let r = attached.and_then(|id| p.take_link(id)).map_err(anyhow::Error::from).and_then(|l| {
                let link: FdLink = l.into();
                link.pin(&pin).map(|_| ()).map_err(anyhow::Error::from)
            });
            match r {
                Ok(()) => info!(hook, "lsm program attached"),
                Err(e) if *required => return Err(e).with_context(|| format!("attaching {prog} to lsm/{hook}")),
                Err(e) => warn!(hook, "lsm program not attached: {e:#}"),
            }
        }
        Ok(())
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

    /// Attaches raw tracepoint `tp` with program `prog` unless a pinned link exists already.
    fn ensure_raw_tp(&mut self, prog: &str, tp: &str) -> Result<()> {
        let pin = self.link_pin(tp);
        if pin.exists() {
            return Ok(());
        }
        let p: &mut RawTracePoint =
            self.ebpf.program_mut(prog).ok_or_else(|| anyhow!("program {prog} missing from the object"))?.try_into()?;
        let id = p.attach(tp).with_context(|| format!("attaching {prog} to raw tracepoint {tp}"))?;
        let link: FdLink = p.take_link(id)?.into();
        link.pin(&pin).with_context(|| format!("pinning {}", pin.display()))?;
        info!(tracepoint = tp, "attached");
        Ok(())
    }

    /// Confines the cgroup at `path` to `profile` in `mode`. All or nothing: on error no
    /// entry, link or profile of this call is left behind.
    pub fn apply(&mut self, path: &Path, profile: &CompiledProfile, mode: Mode) -> Result<u64> {
        let cgid = cgroup::cgroup_id(path)?;
        self.check_layers(profile)?;
        let profile_id = self.install_profile(profile)?;
        let r = self.apply_installed(path, cgid, profile_id, profile, mode);
        if r.is_err() {
            // Drop what this call added (the profile if unreferenced, the sys_enter hook if
            // unneeded); links were already unwound by attach_cgroup.
            if let Err(e) = self.gc() {
                warn!("cleanup after failed apply: {e:#}");
            }
        }
        r.map(|_| cgid)
    }

    fn apply_installed(
        &mut self,
        path: &Path,
        cgid: u64,
        profile_id: u32,
        profile: &CompiledProfile,
        mode: Mode,
    ) -> Result<()> {
        if needs_sys_enter(profile.header.flags, mode.raw()) {
            self.ensure_raw_tp("warden_sys_enter", "sys_enter")?;
        }
        // LSM programs before the entry: the policy must be complete when it takes effect.
        let (files, gate) = lsm_groups_needed(kernel_header(profile).flags, mode.raw());
        if files {
            self.set_lsm_group(LsmGroup::Files, true)?;
        }
        if gate {
            self.set_lsm_group(LsmGroup::Gate, true)?;
        }
        self.attach_cgroup(path, cgid)?;
        // Learn and complain record into the learn maps (learned items; would-deny items).
        // Switching into one of them from another mode starts a fresh record; switching to
        // enforce keeps it, so a profile can still be generated from it.
        let previous = self.maps.cgroups.get(&cgid, 0).ok().filter(|p| p.flags & cgroup_flags::INHERITED == 0);
        if matches!(mode, Mode::Learn | Mode::Complain) {
            if previous.is_some_and(|p| p.mode != mode.raw()) {
                self.maps.clear_learned(cgid);
            }
            if self.maps.learn.get(&cgid, 0).is_err() {
                self.maps.learn.insert(cgid, SyscallSet::default(), 0)?;
            }
            // The bound counters exist before the first item, so the truncation marker always
            // has a place (the kernel only creates one itself as a fallback).
            if self.maps.learn_info.get(&cgid, 0).is_err() {
                self.maps.learn_info.insert(cgid, LearnInfo::default(), 0).context("creating the learn record")?;
            }
        }
        // One map update switches the cgroup (and every descendant, which reads this entry) to
        // the new policy: no moment with half a profile.
        let entry = CgroupPolicy { profile_id, mode: mode.raw(), flags: 0, _pad: [0; 2], root_cgroup: cgid };
        self.maps.cgroups.insert(cgid, entry, 0).context("writing the cgroup's policy entry")?;
        // Sub-cgroups that exist already (new ones are caught by the cgroup_mkdir program).
        for d in cgroup::descendants(path) {
            let Ok(id) = cgroup::cgroup_id(&d) else { continue };
            match self.maps.cgroups.get(&id, 0) {
                Ok(p) if p.flags & cgroup_flags::INHERITED == 0 => continue, // confined on its own
                _ => {}
            }
            let child = CgroupPolicy { flags: cgroup_flags::INHERITED, ..entry };
            self.maps.cgroups.insert(id, child, 0).with_context(|| format!("confining {}", d.display()))?;
        }
        info!(cgroup = %path.display(), cgroup_id = cgid, profile = %profile.name, version = %profile.version(), mode = mode.as_str(), "confined");
        // Confining a cgroup that had no entry of its own only adds users: nothing can have
        // become unused, and the hooks it needs were attached above. gc() reads every entry
        // (O(confined cgroups) map syscalls), which made StartContainer cost ~80 ms with 500
        // confined containers (warden-bench's scale part).
        if previous.is_none() {
            return Ok(());
        }
        self.gc()
    }

    /// Attaches the network programs to cgroup `cgid` (once; pinned per cgroup).
    fn attach_cgroup(&mut self, path: &Path, cgid: u64) -> Result<()> {
        let dir = self.cgroup_pin_dir(cgid);
        if CGROUP_PROGRAMS.iter().all(|p| dir.join(p).exists()) {
            return Ok(());
        }
        let cg = File::open(path).with_context(|| format!("opening cgroup {}", path.display()))?;
        let mut links: Vec<(&str, FdLink)> = Vec::new();
        for name in CGROUP_PROGRAMS {
            let prog = self.ebpf.program_mut(name).ok_or_else(|| anyhow!("program {name} missing"))?;
            let link: FdLink = match prog {
                aya::programs::Program::CgroupSockAddr(p) => {
                    let p: &mut CgroupSockAddr = p;
                    let id = p
                        .attach(&cg, CgroupAttachMode::Single)
                        .with_context(|| format!("attaching {name} to {}", path.display()))?;
                    p.take_link(id)?.try_into()?
                }
                aya::programs::Program::CgroupSock(p) => {
                    let p: &mut CgroupSock = p;
                    let id = p
                        .attach(&cg, CgroupAttachMode::Single)
                        .with_context(|| format!("attaching {name} to {}", path.display()))?;
                    p.take_link(id)?.try_into()?
                }
                _ => bail!("{name} is not a cgroup program"),
            };
            links.push((name, link));
        }
        // Every program is attached; pin them. If pinning fails, unpin what was pinned and the
        // remaining links detach when dropped.
        std::fs::create_dir_all(&dir)?;
        let mut pinned = Vec::new();
        for (name, link) in links {
            match link.pin(dir.join(name)) {
                Ok(p) => pinned.push(p),
                Err(e) => {
                    for p in pinned {
                        let _ = p.unpin();
                    }
                    let _ = std::fs::remove_dir(&dir);
                    return Err(e).with_context(|| format!("pinning {name} link"));
                }
            }
        }
        Ok(())
    }

    /// Releases the confined cgroup `cgid`: its entry, its descendants' entries, its links,
    /// counters and learn record; then unused profiles and the syscall hook if unneeded.
    pub fn release(&mut self, cgid: u64) -> Result<bool> {
        let was = matches!(self.maps.cgroups.get(&cgid, 0), Ok(p) if p.flags & cgroup_flags::INHERITED == 0);
        if was {
            self.maps.cgroups.remove(&cgid)?;
        }
        for child in self.maps.inherited_of(cgid) {
            let _ = self.maps.cgroups.remove(&child);
        }
        let dir = self.cgroup_pin_dir(cgid);
        if dir.exists() {
            // Unlinking a link's pin drops the last reference: the kernel detaches it.
            for e in std::fs::read_dir(&dir)?.flatten() {
                std::fs::remove_file(e.path()).with_context(|| format!("unpinning {}", e.path().display()))?;
            }
            std::fs::remove_dir(&dir)?;
        }
        let _ = self.maps.counters.remove(&cgid);
        let _ = self.maps.rate.remove(&cgid);
        self.maps.clear_learned(cgid);
        self.gc()?;
        if was {
            info!(cgroup_id = cgid, "released");
        }
        Ok(was)
    }

    /// Switches every cgroup confined to a version of `profile.name` to this version: each
    /// cgroup's entry is replaced in one update. Returns how many cgroups switched.
    pub fn replace_profile(&mut self, profile: &CompiledProfile) -> Result<usize> {
        self.check_layers(profile)?;
        let new_id = self.install_profile(profile)?;
        let mut n = 0;
        for (cgid, pol) in self.maps.roots() {
            if pol.profile_id == new_id {
                continue;
            }
            let same_name =
                self.maps.meta_of(pol.profile_id).map(|m| maps::name_of(&m) == profile.name).unwrap_or(false);
            if same_name {
                if needs_sys_enter(profile.header.flags, pol.mode) {
                    self.ensure_raw_tp("warden_sys_enter", "sys_enter")?;
                }
                let (files, gate) = lsm_groups_needed(kernel_header(profile).flags, pol.mode);
                if files {
                    self.set_lsm_group(LsmGroup::Files, true)?;
                }
                if gate {
                    self.set_lsm_group(LsmGroup::Gate, true)?;
                }
                self.maps.cgroups.insert(cgid, CgroupPolicy { profile_id: new_id, ..pol }, 0)?;
                n += 1;
            }
        }
        self.gc()?;
        Ok(n)
    }

    /// Finds or writes the compiled profile; returns its id. One copy per version, shared.
    fn install_profile(&mut self, p: &CompiledProfile) -> Result<u32> {
        let mut max = 0;
        for r in self.maps.meta.iter() {
            let (id, meta) = r?;
            max = max.max(id);
            if meta.hash == p.hash && maps::name_of(&meta) == p.name && self.maps.profiles.get(&id, 0).is_ok() {
                return Ok(id);
            }
        }
        for k in self.maps.profiles.keys() {
            max = max.max(k?);
        }
        let id = max.checked_add(1).ok_or_else(|| anyhow!("profile ids exhausted"))?;
        let r = self.write_profile(id, p);
        if r.is_err() {
            self.remove_profile(id);
        }
        r.with_context(|| format!("writing profile {} into the kernel maps", p.name))?;
        debug!(profile = %p.name, id, version = %p.version(), "profile installed");
        Ok(id)
    }

    fn write_profile(&mut self, id: u32, p: &CompiledProfile) -> Result<()> {
        let be = id.to_be_bytes();
        for (len, addr, rules) in &p.connect4 {
            self.maps.connect4.insert(
                &Key::new(32 + *len as u32, Net4Key { profile_id_be: be, addr: *addr }),
                *rules,
                0,
            )?;
        }
        for (len, addr, rules) in &p.connect6 {
            self.maps.connect6.insert(
                &Key::new(32 + *len as u32, Net6Key { profile_id_be: be, addr: *addr }),
                *rules,
                0,
            )?;
        }
        if let Some(b) = &p.bind {
            self.maps.bind.insert(id, *b, 0)?;
        }
        if let Some(rules) = &p.files {
            for e in files::entries(rules)? {
                self.maps.files.insert(&Key::new(e.prefix_len(), e.file_key(id)), e.access as u32, 0)?;
            }
        }
        let mut meta = ProfileMeta { hash: p.hash, ..Default::default() };
        let n = p.name.len().min(meta.name.len() - 1);
        meta.name[..n].copy_from_slice(&p.name.as_bytes()[..n]);
        self.maps.meta.insert(id, meta, 0)?;
        // The header last: a profile id is complete once its header exists.
        self.maps.profiles.insert(id, kernel_header(p), 0)?;
        Ok(())
    }

    fn remove_profile(&mut self, id: u32) {
        let _ = self.maps.profiles.remove(&id);
        let (k4, k6) = self.maps.trie_keys(id);
        for k in k4 {
            let _ = self.maps.connect4.remove(&k);
        }
        for k in k6 {
            let _ = self.maps.connect6.remove(&k);
        }
        let _ = self.maps.bind.remove(&id);
        for k in self.maps.file_keys(id) {
            let _ = self.maps.files.remove(&k);
        }
        let _ = self.maps.meta.remove(&id);
    }

    /// Drops profiles no cgroup uses, and attaches/detaches the syscall hook as needed.
    fn gc(&mut self) -> Result<()> {
        let roots = self.maps.roots();
        let used: BTreeSet<u32> = roots.iter().map(|(_, p)| p.profile_id).collect();
        let mut ids: BTreeSet<u32> = self.maps.meta.keys().filter_map(|k| k.ok()).collect();
        ids.extend(self.maps.profiles.keys().filter_map(|k| k.ok()));
        for id in ids.difference(&used) {
            debug!(profile_id = id, "dropping unused profile");
            self.remove_profile(*id);
        }
        let need = roots.iter().any(|(_, p)| {
            let flags = self.maps.profiles.get(&p.profile_id, 0).map(|h| h.flags).unwrap_or(0);
            needs_sys_enter(flags, p.mode)
        });
        let (mut files, mut gate) = (false, false);
        for (_, p) in &roots {
            let flags = self.maps.profiles.get(&p.profile_id, 0).map(|h| h.flags).unwrap_or(0);
            let (f, g) = lsm_groups_needed(flags, p.mode);
            files |= f;
            gate |= g;
        }
        let files = self.keep_while_idle(SharedHook::LsmFiles, files, self.lsm_group_attached(LsmGroup::Files));
        self.set_lsm_group(LsmGroup::Files, files)?;
        let gate = self.keep_while_idle(SharedHook::LsmGate, gate, self.lsm_group_attached(LsmGroup::Gate));
        self.set_lsm_group(LsmGroup::Gate, gate)?;
        let pin = self.link_pin("sys_enter");
        let need = self.keep_while_idle(SharedHook::SysEnter, need, pin.exists());
        if need && !pin.exists() {
            self.ensure_raw_tp("warden_sys_enter", "sys_enter")?;
        } else if !need && pin.exists() {
            std::fs::remove_file(&pin).context("detaching sys_enter")?;
            info!("sys_enter detached: no confined cgroup needs it");
        }
        Ok(())
    }

    /// Whether shared hook `h` should be attached: yes if `needed`; if not needed but still
    /// `attached`, yes until it has been idle for `idle_grace`.
    fn keep_while_idle(&mut self, h: SharedHook, needed: bool, attached: bool) -> bool {
        let since = &mut self.idle_since[h as usize];
        if needed || !attached {
            *since = None;
            return needed;
        }
        let t = *since.get_or_insert_with(Instant::now);
        if t.elapsed() < self.idle_grace {
            debug!(hook = ?h, "kept attached while idle");
            return true;
        }
        *since = None;
        false
    }

    fn lsm_group_attached(&self, group: LsmGroup) -> bool {
        LSM_PROGRAMS.iter().any(|(_, hook, g, _)| *g == group && self.lsm_pin(hook).exists())
    }

    /// Keep shared hooks attached for `grace` after their last user (see `SharedHook`). A
    /// daemon sets this and calls `detach_idle` now and then; zero (the default) detaches as
    /// soon as the last user is released.
    pub fn set_idle_grace(&mut self, grace: Duration) {
        self.idle_grace = grace;
    }

    /// Detaches the shared hooks that have been idle for the grace period. Cheap when nothing
    /// is idle (no map is read).
    pub fn detach_idle(&mut self) -> Result<()> {
        let due = self.idle_since.iter().flatten().any(|t| t.elapsed() >= self.idle_grace);
        if due {
            self.gc()?;
        }
        Ok(())
    }

    /// Benchmark calibration: attaches the no-op sys_enter program (not pinned; detached when
    /// the returned link is dropped). Never used by the engine itself.
    #[doc(hidden)]
    pub fn attach_noop_sys_enter(&mut self) -> Result<FdLink> {
        let p: &mut RawTracePoint = self
            .ebpf
            .program_mut("warden_noop_sys_enter")
            .ok_or_else(|| anyhow!("program warden_noop_sys_enter missing"))?
            .try_into()?;
        let id = p.attach("sys_enter")?;
        Ok(p.take_link(id)?.into())
    }

    pub fn sys_enter_attached(&self) -> bool {
        self.link_pin("sys_enter").exists()
    }
}

/// Loading parses the kernel BTF and the eBPF object: tens of MB of heap, freed right after
/// but kept by glibc's malloc, which made an idle daemon's RSS ~40 MB instead of ~6 MB
/// (warden-bench's scale part measures both). Hand it back to the kernel.
fn return_load_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether a program error is the kernel's EBUSY.
fn is_ebusy(e: &aya::programs::ProgramError) -> bool {
    use std::error::Error as _;
    // The io::Error sits in the SyscallError inside; its Debug form names the errno.
    if format!("{e:?}").contains(&format!("code: {},", libc::EBUSY)) {
        return true;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(libc::EBUSY) {
                return true;
            }
        }
        src = s.source();
    }
    false
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
