//! Profile hot reload, the trigger half: SIGHUP ([`super::hangup_signal`]) and this inotify
//! watch on the profile folders (a `*.json` file changed). What a reload does is the daemon's
//! (`daemon/reload.rs`): every profile in use is loaded and compiled again, a new version is
//! written beside the old one and each container's entry switches to it in one map update
//! (`Enforcer::replace_profile`). A profile that no longer loads or compiles keeps its old
//! version running: the error is logged with the file and the reason, and counted in
//! `warden_profile_errors_total{stage="reload"}`.
use std::collections::BTreeSet;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use inotify::{Inotify, WatchMask};
use tracing::{error, info, warn};

/// inotify watches on the profile folders (or the deny-list folder).
pub struct Watcher {
    inotify: Inotify,
    /// Whether a change to a folder entry of this name is worth a reload.
    trigger: fn(Option<&std::ffi::OsStr>) -> bool,
}

const MASK: WatchMask =
    WatchMask::CLOSE_WRITE.union(WatchMask::MOVED_TO).union(WatchMask::MOVED_FROM).union(WatchMask::DELETE);

/// Watches each existing folder (a missing one is skipped: it cannot hold profiles in use).
pub fn watch(dirs: &[PathBuf]) -> Result<Option<Watcher>> {
    watch_with(dirs, is_trigger)
}

/// Deny-list folder entries that may change a list (crate::denylist::is_list_name), and `..data`.
pub fn is_deny_list_trigger(name: Option<&std::ffi::OsStr>) -> bool {
    name.and_then(|n| n.to_str()).is_some_and(|n| crate::denylist::is_list_name(n) || n == "..data")
}

/// [`watch`] with another trigger.
pub fn watch_with(dirs: &[PathBuf], trigger: fn(Option<&std::ffi::OsStr>) -> bool) -> Result<Option<Watcher>> {
    let inotify = Inotify::init().context("inotify_init")?;
    let mut n = 0;
    for d in dirs {
        if !d.is_dir() {
            info!(dir = %d.display(), "folder missing: not watched (create it and send SIGHUP, or restart)");
            continue;
        }
        inotify.watches().add(d, MASK).with_context(|| format!("watching {}", d.display()))?;
        n += 1;
    }
    Ok((n > 0).then_some(Watcher { inotify, trigger }))
}

/// Whether a change to this folder entry may change a profile: a `*.json` file, or `..data`,
/// the symlink Kubernetes swaps atomically when a mounted ConfigMap is updated.
fn is_trigger(name: Option<&std::ffi::OsStr>) -> bool {
    // Editors' temporaries (.x.json.swp, x.json~, .x.json.tmp) are not profiles.
    name.and_then(|n| n.to_str()).is_some_and(|n| (n.ends_with(".json") && !n.starts_with('.')) || n == "..data")
}

impl Watcher {
    /// Reads change events forever (run on its own thread); a burst of changes (an editor's
    /// save, a package upgrade) becomes one reload once the folder is quiet for 200 ms:
    /// `reload` is called with what changed.
    pub fn run(mut self, reload: impl Fn(&str)) {
        let mut buf = [0u8; 4096];
        loop {
            let mut changed: BTreeSet<String> = BTreeSet::new();
            match self.inotify.read_events_blocking(&mut buf) {
                Ok(evs) => {
                    for e in evs {
                        if e.mask.contains(inotify::EventMask::IGNORED) {
                            // The folder itself went away (removed, unmounted): its watch is gone.
                            warn!("a profile folder is no longer watched (removed?): edits there need SIGHUP or a restart");
                        }
                        if (self.trigger)(e.name) {
                            changed.insert(e.name.unwrap_or_default().to_string_lossy().into_owned());
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    error!("profile folder watch stopped: {e}; SIGHUP still reloads");
                    return;
                }
            }
            if changed.is_empty() {
                continue;
            }
            // Debounce: keep collecting until nothing arrives for 200 ms.
            loop {
                let mut pfd = libc::pollfd { fd: self.inotify.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                if unsafe { libc::poll(&mut pfd, 1, 200) } <= 0 {
                    break;
                }
                match self.inotify.read_events(&mut buf) {
                    Ok(evs) => {
                        for e in evs {
                            if (self.trigger)(e.name) {
                                changed.insert(e.name.unwrap_or_default().to_string_lossy().into_owned());
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        warn!("profile folder watch: {e}");
                        break;
                    }
                }
            }
            let files: Vec<String> = changed.into_iter().collect();
            reload(&format!("changed: {}", files.join(", ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_profile_files_trigger() {
        use std::ffi::OsStr;
        assert!(is_trigger(Some(OsStr::new("web.json"))));
        assert!(is_trigger(Some(OsStr::new("..data"))), "a Kubernetes ConfigMap update");
        for n in [".web.json.swp", "web.json~", ".web.json.tmp", "README", ".hidden.json", "..data_tmp"] {
            assert!(!is_trigger(Some(OsStr::new(n))), "{n}");
        }
        assert!(!is_trigger(None));
    }
}
