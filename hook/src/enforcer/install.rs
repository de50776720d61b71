//! Confining and releasing cgroups: apply, release, replace a profile's version, install
//! compiled profiles into the kernel maps, and drop what no cgroup uses any more (gc).
use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use aya::maps::lpm_trie::Key;
use tracing::{debug, info, warn};
use warden_common::{cgroup_flags, profile_flags, CgroupPolicy, LearnInfo, Net4Key, Net6Key, ProfileMeta, SyscallSet};

use super::attach::{lsm_groups_needed, SharedHook, LSM_GROUPS};
use super::{files, maps, needs_sys_enter, Enforcer, Mode};
use crate::{cgroup, profile::CompiledProfile};

/// The profile header as the kernel holds it: the compiled header plus the FILES flag when the
/// profile has a `files` section (present but empty = nothing allowed).
pub fn kernel_header(p: &CompiledProfile) -> warden_common::ProfileHeader {
    let mut h = p.header;
    if p.files.is_some() {
        h.flags |= profile_flags::FILES;
    }
    h
}

/// When a policy applied by [`Enforcer::apply_policy`] takes effect, and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arming {
    /// Learn inside a baseline: the profile stays enforced (cgroup_flags::FLOOR).
    pub floor: bool,
    /// At the cgroup's first exec, or [`Enforcer::arm`] (cgroup_flags::ARM_AT_EXEC).
    pub at_exec: bool,
}

impl Enforcer {
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

    /// Confines the cgroup at `path` to `profile` in `mode`. All or nothing: on error no
    /// entry, link or profile of this call is left behind.
    pub fn apply(&mut self, path: &Path, profile: &CompiledProfile, mode: Mode) -> Result<u64> {
        self.apply_policy(path, profile, mode, Arming { floor: false, at_exec: false })
    }

    /// [`apply`](Self::apply); with `arming.floor` in learn mode, `profile` stays enforced
    /// while everything is recorded (an operator rule's baseline: cgroup_flags::FLOOR); with
    /// `arming.at_exec` the policy takes effect at the cgroup's first exec or at
    /// [`arm`](Self::arm), whichever comes first (cgroup_flags::ARM_AT_EXEC).
    pub fn apply_policy(&mut self, path: &Path, profile: &CompiledProfile, mode: Mode, arming: Arming) -> Result<u64> {
        let cgid = cgroup::cgroup_id(path)?;
        self.check_layers(profile)?;
        let profile_id = self.install_profile(profile)?;
        let arming = Arming { floor: arming.floor && mode == Mode::Learn, ..arming };
        let r = self.apply_installed(path, cgid, profile_id, profile, mode, arming);
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
        arming: Arming,
    ) -> Result<()> {
        let Arming { floor, at_exec } = arming;
        if needs_sys_enter(profile.header.flags, mode.raw()) {
            self.ensure_raw_tp("warden_sys_enter", "sys_enter")?;
        }
        // LSM programs before the entry: the policy must be complete when it takes effect.
        let needed = lsm_groups_needed(kernel_header(profile).flags, mode.raw(), floor);
        for ((group, _), need) in LSM_GROUPS.iter().zip(needed) {
            if need {
                self.attach_lsm_group(*group)?;
            }
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
        let flags = if floor { cgroup_flags::FLOOR } else { 0 } | if at_exec { cgroup_flags::ARM_AT_EXEC } else { 0 };
        let entry = CgroupPolicy { profile_id, mode: mode.raw(), flags, _pad: [0; 2], root_cgroup: cgid };
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
        //
        // Re-applying exactly the entry that is there (NRI's Synchronize after a reconnect or a
        // daemon restart, for every running container) changes nothing either: without this,
        // Synchronize with n containers cost n gc passes, O(n^2) (4 s at 1,000 containers).
        if previous.is_none() || previous == Some(entry) {
            return Ok(());
        }
        self.gc()
    }

    /// Arms the policy of `cgid` now if it waits for its first exec (cgroup_flags::ARM_AT_EXEC);
    /// true when it was waiting.
    pub fn arm(&mut self, cgid: u64) -> Result<bool> {
        let mut p = self.maps.cgroups.get(&cgid, 0).with_context(|| format!("cgroup {cgid} is not confined"))?;
        if p.flags & cgroup_flags::INHERITED != 0 || p.flags & cgroup_flags::ARM_AT_EXEC == 0 {
            return Ok(false);
        }
        p.flags &= !cgroup_flags::ARM_AT_EXEC;
        self.maps.cgroups.insert(cgid, p, 0).context("arming the cgroup's policy entry")?;
        Ok(true)
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
                let needed =
                    lsm_groups_needed(kernel_header(profile).flags, pol.mode, pol.flags & cgroup_flags::FLOOR != 0);
                for ((group, _), need) in LSM_GROUPS.iter().zip(needed) {
                    if need {
                        self.attach_lsm_group(*group)?;
                    }
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
    pub(super) fn gc(&mut self) -> Result<()> {
        // With a grace (the daemon), idle hooks are detached by `detach_idle` only, one link at
        // a time: never in apply or release, which run inside a container's start or stop.
        let budget = if self.idle_grace.is_zero() { usize::MAX } else { 0 };
        self.gc_with(budget)
    }

    /// `gc`, detaching at most `budget` links of idle shared hooks.
    pub(super) fn gc_with(&mut self, mut budget: usize) -> Result<()> {
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
        let mut needed = [false; LSM_GROUPS.len()];
        for (_, p) in &roots {
            let flags = self.maps.profiles.get(&p.profile_id, 0).map(|h| h.flags).unwrap_or(0);
            for (n, g) in needed.iter_mut().zip(lsm_groups_needed(flags, p.mode, p.flags & cgroup_flags::FLOOR != 0)) {
                *n |= g;
            }
        }
        for ((group, hook), need) in LSM_GROUPS.iter().zip(needed) {
            if self.keep_while_idle(*hook, need, self.lsm_group_attached(*group)) {
                self.attach_lsm_group(*group)?;
            } else {
                self.detach_lsm_group(*group, &mut budget)?;
                if !self.lsm_group_attached(*group) {
                    self.idle_since[*hook as usize] = None;
                }
            }
        }
        let pin = self.link_pin("sys_enter");
        let need = self.keep_while_idle(SharedHook::SysEnter, need, pin.exists());
        if need && !pin.exists() {
            self.ensure_raw_tp("warden_sys_enter", "sys_enter")?;
        } else if !need && pin.exists() && budget > 0 {
            std::fs::remove_file(&pin).context("detaching sys_enter")?;
            self.idle_since[SharedHook::SysEnter as usize] = None;
            info!("sys_enter detached: no confined cgroup needs it");
        }
        Ok(())
    }
}
