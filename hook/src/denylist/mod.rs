//! Node-wide deny lists (threat feeds, cloud metadata addresses, internal ranges): files in
//! `deny_lists.dir`, one list per file, named by its file name. Every entry applies to every
//! confined container whatever its profile allows, in every mode (and, with
//! `deny_lists.node_cgroup`, to every container below that cgroup): connect and sendmsg to a
//! listed destination fail with EPERM, with an event and a metric naming the list and line.
//!
//! Updates are whole versions: the folder is read, each file parsed, the entries of all lists
//! written as the kernel trie's inactive version, and one write switches to it
//! (`Enforcer::install_deny_lists`). A file with a bad line is refused WHOLE and its previous
//! version stays in force (or, never loaded, it is not in force): skipping the bad line would
//! drop a destination the operator meant to block, silently, and a feed that turned into
//! garbage (an HTML error page saved as the list) would otherwise empty the list. The refusal
//! names the file and line, in the log, `warden status` and `warden_deny_list_errors_total`.
pub mod parse;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use ipnet::IpNet;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use warden_common::{DenyEntry, DenyKey, DENY_KEY_HEAD_BITS, DENY_MAX_LISTS};

use crate::enforcer::{deny::DenyItem, Enforcer};
pub use parse::{parse, ListEntry, PortSpec};

/// One list as parsed from its file.
#[derive(Debug, Clone)]
pub struct List {
    pub entries: Vec<ListEntry>,
    /// The first 12 hex digits of the file's SHA-256.
    pub version: String,
}

/// A list's state, as `warden status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ListStatus {
    pub name: String,
    pub file: String,
    /// Entries in force (lines; a port without a protocol is one entry here).
    pub entries: usize,
    /// The version in force (file hash), if any.
    pub version: Option<String>,
    /// Why the file's current content is refused (the version above, if any, stays in force).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub hits: u64,
}

/// What one reload did.
#[derive(Debug, Clone, Default)]
pub struct Reloaded {
    pub entries: usize,
    pub lists: usize,
    /// Lists refused (file: reason).
    pub refused: Vec<String>,
    pub load: Duration,
}

/// The daemon's deny lists: what is in force, by list name, and the ids events carry.
#[derive(Debug, Default)]
pub struct DenyLists {
    dir: PathBuf,
    ids: BTreeMap<String, u32>,
    in_force: BTreeMap<String, List>,
    errors: BTreeMap<String, String>,
}

/// Whether a folder entry may be a list: not hidden (editors' and Kubernetes' `..data`
/// folders), not an editor's or package manager's leftover.
pub fn is_list_name(name: &str) -> bool {
    !(name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".tmp")
        || name.contains(".dpkg-")
        || name.ends_with(".rpmnew")
        || name.ends_with(".rpmsave"))
}

/// Reads the list files of `dir` (a missing folder holds no lists): name -> content or error.
fn read_dir(dir: &Path) -> Result<BTreeMap<String, Result<String, String>>> {
    let mut out = BTreeMap::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(anyhow::Error::from(e).context(format!("reading deny-list folder {}", dir.display()))),
    };
    for ent in rd {
        let ent = ent?;
        let Some(name) = ent.file_name().to_str().map(str::to_string) else { continue };
        if !is_list_name(&name) {
            continue;
        }
        // Follows symlinks (a ConfigMap's files are links into its ..data folder).
        let path = ent.path();
        if !path.is_file() {
            continue;
        }
        out.insert(name, std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display())));
    }
    Ok(out)
}

/// The trie entries of `lists` (ids by name): IPv4 as IPv4-mapped IPv6, one entry per
/// protocol when a port has none. Duplicates keep their first list and line.
pub fn compile(lists: &BTreeMap<String, List>, ids: &BTreeMap<String, u32>) -> Vec<DenyItem> {
    // Keyed by (prefix, ported, protocol, port, address): the trie key, comparable.
    let mut out: BTreeMap<(u32, u8, u8, u16, [u8; 16]), DenyItem> = BTreeMap::new();
    for (name, list) in lists {
        let id = ids[name];
        for e in &list.entries {
            let (addr, bits) = match e.net {
                IpNet::V4(n) => (n.network().to_ipv6_mapped().octets(), 96 + n.prefix_len() as u32),
                IpNet::V6(n) => (n.network().octets(), n.prefix_len() as u32),
            };
            let entry = DenyEntry { list: id, line: e.line };
            let mut push = |ported: u8, proto: u8, port: u16| {
                let key = DenyKey { version: 0, ported, proto, port_be: port.to_be_bytes(), addr };
                let prefix_len = DENY_KEY_HEAD_BITS + bits;
                out.entry((prefix_len, ported, proto, port, addr)).or_insert(DenyItem { prefix_len, key, entry });
            };
            match e.port {
                None => push(0, 0, 0),
                Some(PortSpec { proto: Some(p), port }) => push(1, p, port),
                Some(PortSpec { proto: None, port }) => {
                    push(1, 6, port);
                    push(1, 17, port);
                }
            }
        }
    }
    out.into_values().collect()
}

impl DenyLists {
    pub fn new(dir: &Path) -> DenyLists {
        DenyLists { dir: dir.to_path_buf(), ..Default::default() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the folder again and puts the result in force as one new version. Lists whose
    /// file does not parse keep their previous version. Err: nothing changed (the folder
    /// could not be read, or the kernel refused the new version).
    pub fn reload(&mut self, enf: &mut Enforcer) -> Result<Reloaded> {
        let files = read_dir(&self.dir)?;
        let mut next: BTreeMap<String, List> = BTreeMap::new();
        let mut errors: BTreeMap<String, String> = BTreeMap::new();
        let mut ids = self.ids.clone();
        for (name, content) in files {
            let parsed = content.and_then(|text| {
                let entries = parse(&text).map_err(|e| {
                    format!("{}:{}: {}: {:?}", self.dir.join(&name).display(), e.line, e.reason, e.text)
                })?;
                let version = hex12(&Sha256::digest(text.as_bytes()));
                Ok(List { entries, version })
            });
            let parsed = parsed.and_then(|l| {
                if !ids.contains_key(&name) {
                    let id = ids.len() as u32;
                    if id >= DENY_MAX_LISTS {
                        return Err(format!("more than {DENY_MAX_LISTS} deny lists since warden started: restart it"));
                    }
                    ids.insert(name.clone(), id);
                }
                Ok(l)
            });
            match parsed {
                Ok(l) => {
                    next.insert(name, l);
                }
                Err(why) => {
                    if let Some(old) = self.in_force.get(&name) {
                        next.insert(name.clone(), old.clone());
                    }
                    errors.insert(name, why);
                }
            }
        }
        let items = compile(&next, &ids);
        let names: Vec<(u32, String)> = next.keys().map(|n| (ids[n], n.clone())).collect();
        let done = enf.install_deny_lists(&items, &names)?;
        let out = Reloaded {
            entries: done.entries,
            lists: next.len(),
            refused: errors.iter().map(|(n, e)| format!("{n}: {e}")).collect(),
            load: done.load,
        };
        self.ids = ids;
        self.in_force = next;
        self.errors = errors;
        Ok(out)
    }

    /// Each list (in force or refused), with its hits from the kernel.
    pub fn status(&self, hits: impl Fn(u32) -> u64) -> Vec<ListStatus> {
        let mut names: Vec<&String> = self.in_force.keys().chain(self.errors.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                let l = self.in_force.get(n);
                ListStatus {
                    name: n.clone(),
                    file: self.dir.join(n).display().to_string(),
                    entries: l.map_or(0, |l| l.entries.len()),
                    version: l.map(|l| l.version.clone()),
                    error: self.errors.get(n).cloned(),
                    hits: self.ids.get(n).map_or(0, |id| hits(*id)),
                }
            })
            .collect()
    }

    /// (list name, id) of every list that has an id.
    pub fn ids(&self) -> impl Iterator<Item = (&String, &u32)> {
        self.ids.iter()
    }
}

fn hex12(d: &[u8]) -> String {
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_maps_v4_ports_and_duplicates() {
        let entries = parse("10.0.0.0/8\n10.0.0.0/8\n192.0.2.1 53\n2001:db8::/32 tcp/443\n").unwrap();
        let lists = BTreeMap::from([("feed".to_string(), List { entries, version: "x".into() })]);
        let ids = BTreeMap::from([("feed".to_string(), 3)]);
        let items = compile(&lists, &ids);
        // The duplicate keeps line 1; 53 without a protocol is TCP and UDP.
        assert_eq!(items.len(), 4, "{items:?}");
        let v4 = items.iter().find(|i| i.key.ported == 0).unwrap();
        assert_eq!(v4.prefix_len, DENY_KEY_HEAD_BITS + 96 + 8);
        assert_eq!(&v4.key.addr[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(v4.entry, DenyEntry { list: 3, line: 1 });
        let ported: Vec<(u8, u16, u32)> = items
            .iter()
            .filter(|i| i.key.ported == 1)
            .map(|i| (i.key.proto, u16::from_be_bytes(i.key.port_be), i.prefix_len))
            .collect();
        assert!(ported.contains(&(6, 53, DENY_KEY_HEAD_BITS + 128)));
        assert!(ported.contains(&(17, 53, DENY_KEY_HEAD_BITS + 128)));
        assert!(ported.contains(&(6, 443, DENY_KEY_HEAD_BITS + 32)));
    }

    #[test]
    fn list_names() {
        for n in ["spamhaus-drop.txt", "metadata", "firehol_level1.netset"] {
            assert!(is_list_name(n), "{n}");
        }
        for n in ["..data", ".x.swp", "feed~", "feed.tmp", "feed.dpkg-old", "feed.rpmnew"] {
            assert!(!is_list_name(n), "{n}");
        }
    }
}
