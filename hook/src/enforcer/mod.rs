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
pub mod maps;

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use aya::{
    maps::lpm_trie::Key,
    programs::{links::FdLink, CgroupAttachMode, CgroupSock, CgroupSockAddr, RawTracePoint},
    Ebpf, EbpfLoader,
};
use serde::Serialize;
use tracing::{debug, info, warn};
use warden_common::{
    cgroup_flags, globals, mode, profile_flags, CgroupPolicy, LearnInfo, Net4Key, Net6Key,
    ProfileMeta, SyscallSet, MAP_LAYOUT_VERSION,
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
pub struct Confined {
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
        _ => "unknown",
    }
}

pub struct Enforcer {
    ebpf: Ebpf,
    maps: Maps,
    pin_dir: PathBuf,
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

        if EBPF_OBJECT.is_empty() {
            bail!("this warden binary was built without its eBPF object (AYA_BUILD_SKIP): rebuild without it");
        }
        let off = KernelOffsets::from_running_kernel()?;
        debug!(?off, "kernel offsets from BTF");
        let rate_limit: u64 = std::env::var("WARDEN_EVENT_RATE_LIMIT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let maps_dir = maps::maps_dir(pin_dir);
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&maps_dir)
            .override_global(globals::CGROUP_KN, &off.cgroup_kn, true)
            .override_global(globals::KERNFS_NODE_ID, &off.kernfs_node_id, true)
            .override_global(globals::CGROUP_PARENT, &off.cgroup_parent, true)
            .override_global(globals::CGROUP_ROOT, &off.cgroup_root, true)
            .override_global(globals::CGROUP_ROOT_HIERARCHY_ID, &off.cgroup_root_hierarchy_id, true)
            .override_global(globals::TASK_TI_STATUS, &off.task_ti_status, true)
            .override_global(globals::EVENT_RATE_LIMIT, &rate_limit, true)
            .load(EBPF_OBJECT)
            .context("loading warden's eBPF object")?;

        for (name, prog) in ebpf.programs_mut() {
            let r = match prog {
                aya::programs::Program::RawTracePoint(p) => p.load(),
                aya::programs::Program::CgroupSockAddr(p) => p.load(),
                aya::programs::Program::CgroupSock(p) => p.load(),
                _ => continue,
            };
            r.with_context(|| format!("loading eBPF program {name}"))?;
        }
        let mut maps = Maps::open(pin_dir)?;
        maps.state.set(maps::STATE_LAYOUT, MAP_LAYOUT_VERSION as u64, 0)?;

        let mut e = Enforcer { ebpf, maps, pin_dir: pin_dir.to_path_buf(), _lock: lock };
        e.ensure_raw_tp("warden_cgroup_mkdir", "cgroup_mkdir")?;
        e.ensure_raw_tp("warden_cgroup_rmdir", "cgroup_rmdir")?;
        Ok(e)
    }

    pub fn maps(&self) -> &Maps {
        &self.maps
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
        let p: &mut RawTracePoint = self
            .ebpf
            .program_mut(prog)
            .ok_or_else(|| anyhow!("program {prog} missing from the object"))?
            .try_into()?;
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
                    let id = p.attach(&cg, CgroupAttachMode::Single).with_context(|| format!("attaching {name} to {}", path.display()))?;
                    p.take_link(id)?.try_into()?
                }
                aya::programs::Program::CgroupSock(p) => {
                    let p: &mut CgroupSock = p;
                    let id = p.attach(&cg, CgroupAttachMode::Single).with_context(|| format!("attaching {name} to {}", path.display()))?;
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
        let new_id = self.install_profile(profile)?;
        let mut n = 0;
        for (cgid, pol) in self.maps.roots() {
            if pol.profile_id == new_id {
                continue;
            }
            let same_name = self.maps.meta_of(pol.profile_id).map(|m| maps::name_of(&m) == profile.name).unwrap_or(false);
            if same_name {
                if needs_sys_enter(profile.header.flags, pol.mode) {
                    self.ensure_raw_tp("warden_sys_enter", "sys_enter")?;
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
            self.maps.connect4.insert(&Key::new(32 + *len as u32, Net4Key { profile_id_be: be, addr: *addr }), *rules, 0)?;
        }
        for (len, addr, rules) in &p.connect6 {
            self.maps.connect6.insert(&Key::new(32 + *len as u32, Net6Key { profile_id_be: be, addr: *addr }), *rules, 0)?;
        }
        if let Some(b) = &p.bind {
            self.maps.bind.insert(id, *b, 0)?;
        }
        let mut meta = ProfileMeta { hash: p.hash, ..Default::default() };
        let n = p.name.len().min(meta.name.len() - 1);
        meta.name[..n].copy_from_slice(&p.name.as_bytes()[..n]);
        self.maps.meta.insert(id, meta, 0)?;
        // The header last: a profile id is complete once its header exists.
        self.maps.profiles.insert(id, p.header, 0)?;
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
        let pin = self.link_pin("sys_enter");
        if need && !pin.exists() {
            self.ensure_raw_tp("warden_sys_enter", "sys_enter")?;
        } else if !need && pin.exists() {
            std::fs::remove_file(&pin).context("detaching sys_enter")?;
            info!("sys_enter detached: no confined cgroup needs it");
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
pub fn list(maps: &Maps) -> Vec<Confined> {
    let mut out: Vec<Confined> = maps
        .roots()
        .into_iter()
        .map(|(id, p)| {
            let meta = maps.meta_of(p.profile_id).unwrap_or_default();
            let c = maps.counters_of(id);
            Confined {
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
