//! Typed handles on warden's pinned maps. Read-only commands (status, events) open these from
//! the pins without loading any program; the enforcer opens them after loading.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use aya::maps::{lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use warden_common::{
    cgroup_flags, CgroupPolicy, Counters, DenyEntry, DenyKey, DenyListName, FileKey, LearnFileKey, LearnFileUse,
    LearnInfo, LearnKey, Net4Key, Net6Key, PortRules, ProfileHeader, ProfileMeta, RateWindow, SyscallSet,
    MAP_LAYOUT_VERSION,
};

pub const STATE_LAYOUT: u32 = 0;
pub const STATE_INHERIT_FAILURES: u32 = 1;
/// The deny lists' state (warden_common::deny_state bits).
pub const STATE_DENY: u32 = 2;

pub struct Maps {
    pub cgroups: HashMap<MapData, u64, CgroupPolicy>,
    pub profiles: HashMap<MapData, u32, ProfileHeader>,
    pub meta: HashMap<MapData, u32, ProfileMeta>,
    pub connect4: LpmTrie<MapData, Net4Key, PortRules>,
    pub connect6: LpmTrie<MapData, Net6Key, PortRules>,
    pub bind: HashMap<MapData, u32, PortRules>,
    pub files: LpmTrie<MapData, FileKey, u32>,
    pub counters: PerCpuHashMap<MapData, u64, Counters>,
    pub rate: HashMap<MapData, u64, RateWindow>,
    pub learn: HashMap<MapData, u64, SyscallSet>,
    pub learn_net: HashMap<MapData, LearnKey, u8>,
    pub learn_info: HashMap<MapData, u64, LearnInfo>,
    pub learn_files: HashMap<MapData, LearnFileKey, LearnFileUse>,
    pub state: Array<MapData, u64>,
    pub deny: LpmTrie<MapData, DenyKey, DenyEntry>,
    pub deny_hits: PerCpuArray<MapData, u64>,
    pub deny_names: Array<MapData, DenyListName>,
    pub deny_exempt: HashMap<MapData, u64, u8>,
}

pub fn maps_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("maps")
}

fn open(dir: &Path, name: &str) -> Result<Map> {
    let p = dir.join(name);
    let data = MapData::from_pin(&p).with_context(|| format!("opening pinned map {}", p.display()))?;
    Map::from_map_data(data).with_context(|| format!("pinned map {}", p.display()))
}

impl Maps {
    /// Opens every pinned map, refusing pins of another layout version.
    pub fn open(pin_dir: &Path) -> Result<Maps> {
        let dir = maps_dir(pin_dir);
        if !dir.join("WARDEN_CGROUPS").exists() {
            bail!("no warden state pinned at {} (nothing confined yet?)", pin_dir.display());
        }
        check_layout(pin_dir)?;
        Ok(Maps {
            cgroups: open(&dir, "WARDEN_CGROUPS")?.try_into()?,
            profiles: open(&dir, "WARDEN_PROFILES")?.try_into()?,
            meta: open(&dir, "WARDEN_PROFILE_META")?.try_into()?,
            connect4: open(&dir, "WARDEN_CONNECT4")?.try_into()?,
            connect6: open(&dir, "WARDEN_CONNECT6")?.try_into()?,
            bind: open(&dir, "WARDEN_BIND")?.try_into()?,
            files: open(&dir, "WARDEN_FILES")?.try_into()?,
            counters: open(&dir, "WARDEN_COUNTERS")?.try_into()?,
            rate: open(&dir, "WARDEN_RATE")?.try_into()?,
            learn: open(&dir, "WARDEN_LEARN_SC")?.try_into()?,
            learn_net: open(&dir, "WARDEN_LEARN_NET")?.try_into()?,
            learn_info: open(&dir, "WARDEN_LEARN_INFO")?.try_into()?,
            learn_files: open(&dir, "WARDEN_LEARN_FILES")?.try_into()?,
            state: open(&dir, "WARDEN_STATE")?.try_into()?,
            deny: open(&dir, "WARDEN_DENY")?.try_into()?,
            deny_hits: open(&dir, "WARDEN_DENY_HITS")?.try_into()?,
            deny_names: open(&dir, "WARDEN_DENY_NAMES")?.try_into()?,
            deny_exempt: open(&dir, "WARDEN_DENY_EXEMPT")?.try_into()?,
        })
    }

    pub fn events(pin_dir: &Path) -> Result<RingBuf<MapData>> {
        Ok(open(&maps_dir(pin_dir), "WARDEN_EVENTS")?.try_into()?)
    }

    /// Root (non-inherited) entries: the confined cgroups.
    pub fn roots(&self) -> Vec<(u64, CgroupPolicy)> {
        self.cgroups.iter().filter_map(|r| r.ok()).filter(|(_, p)| p.flags & cgroup_flags::INHERITED == 0).collect()
    }

    pub fn inherited_of(&self, root: u64) -> Vec<u64> {
        self.cgroups
            .iter()
            .filter_map(|r| r.ok())
            .filter(|(_, p)| p.flags & cgroup_flags::INHERITED != 0 && p.root_cgroup == root)
            .map(|(id, _)| id)
            .collect()
    }

    /// Per-kind counters of a confined cgroup, summed over CPUs.
    pub fn counters_of(&self, root: u64) -> Counters {
        let mut sum = Counters::default();
        if let Ok(per_cpu) = self.counters.get(&root, 0) {
            for c in per_cpu.iter() {
                for (s, v) in sum.violations.iter_mut().zip(c.violations.iter()) {
                    *s += v;
                }
                sum.events_dropped += c.events_dropped;
                sum.events_sent += c.events_sent;
            }
        }
        sum
    }

    /// The distinct network items recorded for `root` (learned, or would-deny in complain).
    pub fn learned_items(&self, root: u64) -> Vec<LearnKey> {
        let mut v: Vec<LearnKey> =
            self.learn_net.keys().filter_map(|k| k.ok()).filter(|k| k.root_cgroup == root).collect();
        v.sort();
        v
    }

    /// The distinct paths recorded for `root` (learned, or would-deny in complain), with their
    /// uses; the path up to its NUL (lossy UTF-8).
    pub fn learned_files(&self, root: u64) -> Vec<(String, LearnFileUse)> {
        let mut v: Vec<(String, LearnFileUse)> = self
            .learn_files
            .iter()
            .filter_map(|r| r.ok())
            .filter(|(k, _)| k.root_cgroup == root)
            .map(|(k, u)| {
                let end = k.path.iter().position(|b| *b == 0).unwrap_or(k.path.len());
                (String::from_utf8_lossy(&k.path[..end]).into_owned(), u)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn learn_info_of(&self, root: u64) -> LearnInfo {
        self.learn_info.get(&root, 0).unwrap_or_default()
    }

    /// Drops everything recorded for `root`: syscall bytes, network items, counters.
    pub fn clear_learned(&mut self, root: u64) {
        let _ = self.learn.remove(&root);
        for k in self.learned_items(root) {
            let _ = self.learn_net.remove(&k);
        }
        let keys: Vec<LearnFileKey> =
            self.learn_files.keys().filter_map(|k| k.ok()).filter(|k| k.root_cgroup == root).collect();
        for k in keys {
            let _ = self.learn_files.remove(&k);
        }
        let _ = self.learn_info.remove(&root);
    }

    pub fn meta_of(&self, profile_id: u32) -> Option<ProfileMeta> {
        self.meta.get(&profile_id, 0).ok()
    }

    /// The name of deny list `id` (as the daemon last wrote it), or `list<id>`.
    pub fn deny_list_name(&self, id: u32) -> String {
        match self.deny_names.get(&id, 0) {
            Ok(n) if n.name[0] != 0 => {
                let end = n.name.iter().position(|b| *b == 0).unwrap_or(n.name.len());
                String::from_utf8_lossy(&n.name[..end]).into_owned()
            }
            _ => format!("list{id}"),
        }
    }

    /// Hits of deny list `id`, summed over CPUs.
    pub fn deny_hits_of(&self, id: u32) -> u64 {
        self.deny_hits.get(&id, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    pub fn inherit_failures(&self) -> u64 {
        self.state.get(&STATE_INHERIT_FAILURES, 0).unwrap_or(0)
    }

    /// Keys of every connect-trie entry of `profile_id`.
    pub fn trie_keys(&self, profile_id: u32) -> (Vec<Key<Net4Key>>, Vec<Key<Net6Key>>) {
        let be = profile_id.to_be_bytes();
        let k4 = self.connect4.keys().filter_map(|k| k.ok()).filter(|k| k.data().profile_id_be == be).collect();
        let k6 = self.connect6.keys().filter_map(|k| k.ok()).filter(|k| k.data().profile_id_be == be).collect();
        (k4, k6)
    }
}

impl Maps {
    /// Keys of every files-trie entry of `profile_id`.
    pub fn file_keys(&self, profile_id: u32) -> Vec<Key<FileKey>> {
        let be = profile_id.to_be_bytes();
        self.files.keys().filter_map(|k| k.ok()).filter(|k| k.data().profile_id_be == be).collect()
    }
}

/// Refuses to adopt pinned maps written by a warden with another layout.
pub fn check_layout(pin_dir: &Path) -> Result<()> {
    let p = maps_dir(pin_dir).join("WARDEN_STATE");
    if !p.exists() {
        return Ok(());
    }
    let state: Array<MapData, u64> = open(&maps_dir(pin_dir), "WARDEN_STATE")?.try_into()?;
    let v = state.get(&STATE_LAYOUT, 0).unwrap_or(0);
    if v != 0 && v != MAP_LAYOUT_VERSION as u64 {
        bail!(
            "pinned warden state at {} has map layout version {v}, this warden uses {MAP_LAYOUT_VERSION}: \
             nothing was adopted or changed. Drain the node (or release every confined cgroup with the \
             warden that created them), run `warden reset --pin-dir {}` to drop all pinned enforcement, \
             then start this version",
            pin_dir.display(),
            pin_dir.display()
        );
    }
    Ok(())
}

pub fn name_of(meta: &ProfileMeta) -> String {
    let end = meta.name.iter().position(|b| *b == 0).unwrap_or(meta.name.len());
    String::from_utf8_lossy(&meta.name[..end]).into_owned()
}
