//! The pinned state as `warden status --json` prints it, with or without a daemon.
use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::enforcer::{self, Maps};

/// What `warden status --json` prints from the pins alone (also part of the daemon's answer).
pub fn pin_status(maps: &Maps, pin_dir: &Path) -> Value {
    let list = enforcer::list(maps);
    let learned_syscalls = |cgid: u64| -> Vec<&'static str> {
        match maps.learn.get(&cgid, 0) {
            Ok(set) => set
                .seen
                .iter()
                .enumerate()
                .filter(|(_, b)| **b != 0)
                .filter_map(|(n, _)| syscalls::Sysno::new(n).map(|s| s.name()))
                .collect(),
            Err(_) => Vec::new(),
        }
    };
    json!({
        "confined": list,
        "sys_enter_attached": pin_dir.join("links/sys_enter").exists(),
        "inherit_failures": maps.inherit_failures(),
        "learned_syscalls": list.iter().filter(|c| c.mode == "learn").map(|c| {
            (c.cgroup_id.to_string(), learned_syscalls(c.cgroup_id))
        }).collect::<BTreeMap<_, _>>(),
        // Learn and complain records: distinct network items held, and attempts whose new item
        // did not fit (the truncation marker).
        "learn_records": list.iter().filter(|c| c.mode == "learn" || c.mode == "complain").map(|c| {
            let i = maps.learn_info_of(c.cgroup_id);
            (c.cgroup_id.to_string(), json!({
                "items": i.items, "truncated": i.truncated, "bound": warden_common::LEARN_ITEMS_PER_CGROUP,
                "file_items": i.file_items, "file_truncated": i.file_truncated, "file_bound": warden_common::LEARN_FILES_PER_CGROUP,
            }))
        }).collect::<BTreeMap<_, _>>(),
    })
}
