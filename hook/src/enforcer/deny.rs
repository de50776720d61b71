//! The node-wide deny lists in the kernel: `WARDEN_DENY` (one LPM trie, two versions side by
//! side), the state word that says which version is in force, the list names for events, and
//! the node-wide programs for containers warden does not confine. What goes in is decided by
//! `crate::denylist`; this module only writes it.
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::lpm_trie::Key,
    programs::{links::FdLink, CgroupAttachMode, CgroupSockAddr},
};
use tracing::{info, warn};
use warden_common::{deny_state, DenyEntry, DenyKey, DenyListName, DENY_MAX_ENTRIES};

use super::{maps::STATE_DENY, Enforcer};

/// Programs applying the deny lists to the containers warden does not confine, attached to
/// `deny_lists.node_cgroup` as bpf links, which the kernel always attaches as
/// BPF_F_ALLOW_MULTI (`cgroup_bpf_link_attach`; link_create refuses the flag itself, so aya's
/// `Single` is the mode to pass): they run below it, beside each confined container's own
/// programs. Links pinned as `links/deny_<program>`.
pub(super) const NODE_WIDE_PROGRAMS: &[&str] =
    &["warden_deny_connect4", "warden_deny_connect6", "warden_deny_sendmsg4", "warden_deny_sendmsg6"];

/// One trie entry: the prefix length over the whole key and the key (its version is set when
/// installed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenyItem {
    pub prefix_len: u32,
    pub key: DenyKey,
    pub entry: DenyEntry,
}

/// What an install did.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyInstall {
    pub entries: usize,
    /// From the first write to the switch: the time a new version takes to be in force.
    pub load: Duration,
}

/// How long the old version stays in the trie after the switch: a program that read the state
/// word just before it may still be looking the old version up (programs run for microseconds
/// under RCU; this is orders of magnitude more).
const OLD_VERSION_GRACE: Duration = Duration::from_millis(50);

impl Enforcer {
    /// Writes `items` as the inactive version, names the lists, and switches to it in one write
    /// of the state word; then drops the old version. On an error nothing changes: the entries
    /// written so far are removed and the version in force stays.
    pub fn install_deny_lists(&mut self, items: &[DenyItem], names: &[(u32, String)]) -> Result<DenyInstall> {
        if items.len() > DENY_MAX_ENTRIES as usize {
            anyhow::bail!(
                "the deny lists hold {} entries (a port without a protocol counts twice), more than the {} \
                 one version may hold: nothing changed",
                items.len(),
                DENY_MAX_ENTRIES
            );
        }
        let t0 = Instant::now();
        let st = self.maps.state.get(&STATE_DENY, 0).unwrap_or(0);
        let cur = (st & deny_state::VERSION != 0) as u8;
        let next = 1 - cur;
        // Leftovers of the inactive version (a previous install that failed, a daemon that
        // died between writing and cleaning).
        self.remove_deny_version(next);
        let mut ported = false;
        for (n, it) in items.iter().enumerate() {
            let key = Key::new(it.prefix_len, DenyKey { version: next, ..it.key });
            ported |= it.key.ported != 0;
            if let Err(e) = self.maps.deny.insert(&key, it.entry, 0) {
                self.remove_deny_version(next);
                return Err(e).with_context(|| {
                    format!("writing deny-list entry {n} of {} (nothing changed; the lists in force stay)", items.len())
                });
            }
        }
        for (id, name) in names {
            let mut n = DenyListName { name: [0; 64] };
            let b = name.as_bytes();
            let len = b.len().min(63);
            n.name[..len].copy_from_slice(&b[..len]);
            self.maps.deny_names.set(*id, n, 0).context("writing a deny-list name")?;
        }
        let mut word = if next == 1 { deny_state::VERSION } else { 0 };
        if !items.is_empty() {
            word |= deny_state::ACTIVE;
        }
        if ported {
            word |= deny_state::PORTED;
        }
        self.maps.state.set(STATE_DENY, word, 0).context("switching the deny lists' version")?;
        let load = t0.elapsed();
        std::thread::sleep(OLD_VERSION_GRACE);
        self.remove_deny_version(cur);
        Ok(DenyInstall { entries: items.len(), load })
    }

    /// Removes every trie entry of `version`.
    fn remove_deny_version(&mut self, version: u8) {
        let keys: Vec<Key<DenyKey>> =
            self.maps.deny.keys().filter_map(|k| k.ok()).filter(|k| k.data().version == version).collect();
        for k in keys {
            let _ = self.maps.deny.remove(&k);
        }
    }

    /// Attaches the node-wide deny programs to `cgroup` (a path below the cgroup2 mount, never
    /// the root), or detaches them when None. Re-attached on each call: the configured cgroup
    /// may have changed since the pins were made.
    pub fn attach_deny_node_wide(&mut self, cgroup: Option<&Path>) -> Result<()> {
        for prog in NODE_WIDE_PROGRAMS {
            let pin = self.link_pin(&format!("deny_{prog}"));
            if pin.exists() {
                std::fs::remove_file(&pin).with_context(|| format!("removing {}", pin.display()))?;
            }
        }
        let Some(path) = cgroup else { return Ok(()) };
        if !path.exists() {
            // warden may start before kubelet has made the pods' cgroup; kubelet (cgroupfs or
            // systemd driver) adopts an existing folder, and every pod lands below the programs.
            std::fs::create_dir_all(path).with_context(|| format!("creating cgroup {}", path.display()))?;
            info!(cgroup = %path.display(), "deny_lists.node_cgroup did not exist: created");
        }
        let cg =
            File::open(path).with_context(|| format!("opening cgroup {} (deny_lists.node_cgroup)", path.display()))?;
        let mut pinned = Vec::new();
        for prog in NODE_WIDE_PROGRAMS {
            let r = (|| -> Result<()> {
                let p: &mut CgroupSockAddr = self
                    .ebpf
                    .program_mut(prog)
                    .ok_or_else(|| anyhow!("program {prog} missing from the object"))?
                    .try_into()?;
                let id = p
                    .attach(&cg, CgroupAttachMode::Single)
                    .with_context(|| format!("attaching {prog} to {}", path.display()))?;
                let link: FdLink = p.take_link(id)?.try_into()?;
                let pin = self.link_pin(&format!("deny_{prog}"));
                link.pin(&pin).with_context(|| format!("pinning {}", pin.display()))?;
                pinned.push(pin);
                Ok(())
            })();
            if let Err(e) = r {
                for p in &pinned {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
        }
        info!(cgroup = %path.display(), "deny lists apply to every container below this cgroup");
        Ok(())
    }

    /// Leaves cgroup `cgid` out of the node-wide deny programs (warden's own namespace); the
    /// kernel drops the entry when the cgroup is removed.
    pub fn exempt_from_deny_lists(&mut self, cgid: u64) -> Result<()> {
        self.maps.deny_exempt.insert(cgid, 1, 0).context("writing a deny-list exemption")
    }

    /// Clears the deny-list hit counters (a new daemon numbers the lists afresh).
    pub fn reset_deny_hits(&mut self) {
        let ncpu = aya::util::nr_cpus().unwrap_or(1);
        for id in 0..warden_common::DENY_MAX_LISTS {
            let zero = aya::maps::PerCpuValues::try_from(vec![0u64; ncpu]);
            match zero {
                Ok(z) => {
                    let _ = self.maps.deny_hits.set(id, z, 0);
                }
                Err(e) => {
                    warn!("deny-list hit counters not reset: {e}");
                    return;
                }
            }
        }
    }
}
