//! Attaching programs: the hooks shared by every confined cgroup (the sys_enter raw
//! tracepoint, the BPF-LSM groups) with their idle grace, and the network programs of each
//! confined cgroup.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use aya::programs::{
    links::FdLink, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, Lsm, RawTracePoint,
};
use tracing::{debug, info, warn};
use warden_common::{mode, profile_flags};

use super::programs::{LsmGroup, CGROUP_PROGRAMS, LSM_PROGRAMS};
use super::Enforcer;

/// Which LSM groups a confined cgroup with profile `flags` in `mode` needs, in the order of
/// [`LSM_GROUPS`].
/// `floor`: learn mode inside a baseline, which enforces like enforce mode (cgroup_flags::FLOOR).
pub(super) fn lsm_groups_needed(flags: u32, mode: u8, floor: bool) -> [bool; 3] {
    let files = mode == mode::LEARN || flags & profile_flags::FILES != 0;
    let gate = (mode == mode::ENFORCE || floor)
        && ((flags & profile_flags::SYSCALLS != 0 && flags & profile_flags::SYSCALLS_LOG_ONLY == 0)
            || flags & profile_flags::FAMILIES != 0);
    // Ping and raw sends, binds without the cgroup hook, listen(): judged by the connect and
    // bind rules, and learned (a generated profile needs the ping destinations).
    let net = mode == mode::LEARN || flags & (profile_flags::CONNECT | profile_flags::BIND) != 0;
    [files, gate, net]
}

/// The LSM groups with the shared hook that tracks each one's idle time.
pub(super) const LSM_GROUPS: [(LsmGroup, SharedHook); 3] = [
    (LsmGroup::Files, SharedHook::LsmFiles),
    (LsmGroup::Gate, SharedHook::LsmGate),
    (LsmGroup::Net, SharedHook::LsmNet),
];

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
pub(super) enum SharedHook {
    SysEnter = 0,
    LsmFiles = 1,
    LsmGate = 2,
    LsmNet = 3,
}

impl Enforcer {
    /// Pin of the link of LSM hook `hook`.
    pub(super) fn lsm_pin(&self, hook: &str) -> PathBuf {
        self.link_pin(&format!("lsm_{hook}"))
    }

    /// Detaches up to `budget` of the LSM programs of `group` (one link each), taking what it
    /// spends from `budget`. Each detach is synchronous in the kernel (on 6.1 two RCU-tasks
    /// grace periods per trampoline: see `detach_idle`).
    pub(super) fn detach_lsm_group(&mut self, group: LsmGroup, budget: &mut usize) -> Result<()> {
        for (_, hook, g, _) in LSM_PROGRAMS {
            if *g != group || *budget == 0 {
                continue;
            }
            let pin = self.lsm_pin(hook);
            if pin.exists() {
                std::fs::remove_file(&pin).with_context(|| format!("detaching lsm/{hook}"))?;
                *budget -= 1;
                info!(hook, "lsm program detached: no confined cgroup needs it");
            }
        }
        Ok(())
    }

    /// Attaches the LSM programs of `group` that are not attached yet.
    pub(super) fn attach_lsm_group(&mut self, group: LsmGroup) -> Result<()> {
        for (prog, hook, g, required) in LSM_PROGRAMS {
            if *g != group {
                continue;
            }
            let pin = self.lsm_pin(hook);
            if pin.exists() || self.lsm.is_err() {
                continue;
            }
            if !self.load_lsm(prog, hook, *required)? {
                continue; // optional hook this kernel lacks
            }
            if let Some(fd) = self.fmod_progs.get(*prog) {
                // fmod_ret path: the same pin, so attach state and detach are path-blind.
                match super::modify_return::attach_and_pin(fd, &pin) {
                    Ok(()) => info!(hook, "lsm program attached (fmod_ret)"),
                    Err(e) if *required => return Err(e).with_context(|| format!("attaching {prog} as fmod_ret")),
                    Err(e) => warn!(hook, "lsm program not attached (fmod_ret): {e:#}"),
                }
                continue;
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
    /// Attaches raw tracepoint `tp` with program `prog` unless a pinned link exists already.
    pub(super) fn ensure_raw_tp(&mut self, prog: &str, tp: &str) -> Result<()> {
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

    /// Attaches the network programs to cgroup `cgid` (once; pinned per cgroup). Only the
    /// programs without a pin are attached: a cgroup confined by an older warden, which had
    /// fewer programs, gets the new ones without doubling the old.
    pub(super) fn attach_cgroup(&mut self, path: &Path, cgid: u64) -> Result<()> {
        let dir = self.cgroup_pin_dir(cgid);
        let missing: Vec<&str> = CGROUP_PROGRAMS.iter().copied().filter(|p| !dir.join(p).exists()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let cg = File::open(path).with_context(|| format!("opening cgroup {}", path.display()))?;
        let mut links: Vec<(&str, FdLink)> = Vec::new();
        for name in missing {
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
                aya::programs::Program::CgroupSkb(p) => {
                    let p: &mut CgroupSkb = p;
                    let id = p
                        .attach(&cg, CgroupSkbAttachType::Ingress, CgroupAttachMode::Single)
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

    /// Whether shared hook `h` should be attached: yes if `needed`; if not needed but still
    /// `attached`, yes until it has been idle for `idle_grace`. Past the grace the idle time
    /// is kept until the hook is wholly detached (a group can take several calls: `gc_with`'s
    /// budget), so a partly detached group stays due.
    pub(super) fn keep_while_idle(&mut self, h: SharedHook, needed: bool, attached: bool) -> bool {
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
        false
    }

    pub(super) fn lsm_group_attached(&self, group: LsmGroup) -> bool {
        LSM_PROGRAMS.iter().any(|(_, hook, g, _)| *g == group && self.lsm_pin(hook).exists())
    }

    /// Keep shared hooks attached for `grace` after their last user (see `SharedHook`). A
    /// daemon sets this and calls `detach_idle` now and then; zero (the default) detaches as
    /// soon as the last user is released.
    pub fn set_idle_grace(&mut self, grace: Duration) {
        self.idle_grace = grace;
    }

    /// Detaches ONE link of the shared hooks idle past the grace period; true while more are
    /// due. Cheap when nothing is idle (no map is read).
    ///
    /// One link per call because a detach is synchronous in the kernel and the caller holds the
    /// engine: on 6.1 each trampoline's detach waits for two RCU-tasks grace periods (ftrace
    /// shutting down its dynamic ops), ~0.25 s per hook in the VMs, ~5 s for every group at
    /// once. A StartContainer waiting that long for the engine misses containerd's deadline
    /// and is refused. The daemon calls this in a loop, letting go of the engine between calls
    /// (daemon/run.rs); apply and release never detach while a grace is set (`gc`).
    pub fn detach_idle(&mut self) -> Result<bool> {
        if self.idle_due() {
            self.gc_with(1)?;
        }
        Ok(self.idle_due())
    }

    /// Whether some shared hook is idle past the grace period (still attached, at least partly).
    fn idle_due(&self) -> bool {
        self.idle_since.iter().flatten().any(|t| t.elapsed() >= self.idle_grace)
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

    /// Benchmark measurement (issue 19, item 3): attaches the per-function syscall judge
    /// `prog` (`warden_sc_fentry_getppid` or `_read`, enforcer-ebpf syscall_fentry.rs) to kernel
    /// function `target`, loading it on first use (a tracing program is bound to its target at
    /// load: later calls must name the same one). Not pinned: detached when the link drops.
    /// Never used by the engine itself.
    #[doc(hidden)]
    pub fn attach_syscall_fentry(&mut self, prog: &str, target: &str) -> Result<FdLink> {
        if self.btf.is_none() {
            self.btf = Some(aya::Btf::from_sys_fs().context("reading the kernel BTF")?);
        }
        let btf = self.btf.as_ref().expect("parsed above");
        let p: &mut aya::programs::FEntry =
            self.ebpf.program_mut(prog).ok_or_else(|| anyhow!("program {prog} missing"))?.try_into()?;
        if p.fd().is_err() {
            p.load(target, btf).with_context(|| format!("loading {prog} for fentry/{target}"))?;
        }
        let id = p.attach().with_context(|| format!("attaching {prog} to fentry/{target}"))?;
        Ok(p.take_link(id)?.into())
    }

    /// Benchmark measurement: detaches the shared sys_enter program while policies stay in the
    /// maps, so the per-function judge can be measured alone. The next apply re-attaches it.
    #[doc(hidden)]
    pub fn detach_sys_enter_for_measurement(&mut self) -> Result<()> {
        let pin = self.link_pin("sys_enter");
        if pin.exists() {
            std::fs::remove_file(&pin).with_context(|| format!("removing {}", pin.display()))?;
        }
        Ok(())
    }

    pub fn sys_enter_attached(&self) -> bool {
        self.link_pin("sys_enter").exists()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsm_groups_follow_the_profile_and_mode() {
        use profile_flags::*;
        // [files, gate, net]
        assert_eq!(lsm_groups_needed(0, mode::ENFORCE, false), [false, false, false]);
        assert_eq!(lsm_groups_needed(0, mode::LEARN, false), [true, false, true], "learn records paths and ping sends");
        assert_eq!(lsm_groups_needed(CONNECT, mode::ENFORCE, false), [false, false, true]);
        assert_eq!(lsm_groups_needed(BIND, mode::COMPLAIN, false), [false, false, true]);
        assert_eq!(lsm_groups_needed(FAMILIES | CONNECT | BIND, mode::ENFORCE, false), [false, true, true]);
        assert_eq!(lsm_groups_needed(FAMILIES, mode::COMPLAIN, false), [false, false, false]);
        assert_eq!(lsm_groups_needed(SYSCALLS | SYSCALLS_LOG_ONLY, mode::ENFORCE, false), [false, false, false]);
        assert_eq!(lsm_groups_needed(FILES | SYSCALLS, mode::ENFORCE, false), [true, true, false]);
        assert_eq!(lsm_groups_needed(SYSCALLS, mode::LEARN, false), [true, false, true]);
        assert_eq!(
            lsm_groups_needed(SYSCALLS, mode::LEARN, true),
            [true, true, true],
            "learning inside a baseline gates"
        );
    }
}
