//! Profile hot reload (SIGHUP, or the profile folders' watch in `ops::reload`): every profile
//! in use is loaded and compiled again, a new version is written beside the old one and each
//! container's entry switches to it in one map update (`Enforcer::replace_profile`). A profile
//! that no longer loads or compiles keeps its old version running: the error is logged with
//! the file and the reason, and counted in `warden_profile_errors_total{stage="reload"}`.
use std::collections::{BTreeMap, BTreeSet};

use tracing::{error, info};

use super::Daemon;
use crate::profile;

/// What one reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Profiles whose new version now applies.
    pub changed: Vec<String>,
    /// Profiles that failed (old version kept).
    pub failed: Vec<String>,
}

impl Daemon {
    /// Reads the deny-list folder again and puts it in force as one new version (lists whose
    /// file does not parse keep their previous version; see crate::denylist).
    pub fn reload_deny_lists(&self, why: &str) -> Option<crate::denylist::Reloaded> {
        let mut deny = self.deny.lock().unwrap();
        let r = deny.reload(&mut self.enforcer.lock().unwrap());
        match r {
            Ok(r) => {
                log_deny_reload(&self.ops, &r, why);
                Some(r)
            }
            Err(e) => {
                self.ops.metrics.profile_error("deny-list");
                error!(dir = %deny.dir().display(), error = %format!("{e:#}"), why,
                       "deny-list reload FAILED: the lists in force stay");
                None
            }
        }
    }

    /// Recompiles every profile in use and switches its containers to changed versions.
    ///
    /// The work is done before the reload gate is taken, so that a reload of big profiles does
    /// not hold up StartContainer (issue 17): the config check and the compile of every profile
    /// in use at that moment. Under the gate (no confine between compiling and recording) the
    /// profiles in use are listed again; one that came into use meanwhile is compiled there.
    pub fn reload_profiles(&self, why: &str) -> Reloaded {
        // The same check as at start: a rule's profile that stopped compiling is reported now,
        // not at the next pod (its running containers keep their version below).
        for e in crate::config_check::check(&self.cfg).rule_errors {
            error!(error = %e, why, "config check after reload: a rule's profile does not compile");
        }
        let names = |in_use: std::collections::BTreeSet<String>| -> BTreeSet<String> {
            // Only profiles loaded by name from the profile folders (not learn mode's empty one).
            in_use.iter().filter_map(|c| self.ops.lookup_name(c)).collect()
        };
        let mut compiled: BTreeMap<String, anyhow::Result<profile::CompiledProfile>> =
            names(self.registry.profiles_in_use()).into_iter().map(|n| (n.clone(), self.load_profile(&n))).collect();

        // No confine may be between compiling a profile and recording its container while the
        // reload swaps versions (see `confine`).
        let _gate = self.ops.profiles_write();
        let mut out = Reloaded::default();
        for name in names(self.registry.profiles_in_use()) {
            let search = profile::resolve::SearchPath { dirs: self.cfg.profile_dirs.clone() };
            let file = search.find(&name).map(|p| p.display().to_string()).unwrap_or_else(|_| "(no file)".into());
            let c = compiled.remove(&name).unwrap_or_else(|| self.load_profile(&name));
            let r = c.and_then(|c| {
                let n = self.enforcer.lock().unwrap().replace_profile(&c)?;
                Ok((c.version(), n))
            });
            match r {
                Ok((_, 0)) => {}
                Ok((version, n)) => {
                    info!(profile = %name, file = %file, version = %version, containers = n, why, "profile reloaded: new version applies");
                    out.changed.push(name);
                }
                Err(e) => {
                    self.ops.metrics.profile_error("reload");
                    error!(profile = %name, file = %file, error = %format!("{e:#}"), why,
                           "profile reload FAILED: the previous version stays in force");
                    out.failed.push(name);
                }
            }
        }
        out
    }
}

/// Logs what a deny-list reload did: the version in force, and each refused file.
pub(crate) fn log_deny_reload(ops: &crate::ops::Ops, r: &crate::denylist::Reloaded, why: &str) {
    for refused in &r.refused {
        ops.metrics.profile_error("deny-list");
        error!(error = %refused, why, "deny list REFUSED: its previous version (if any) stays in force");
    }
    info!(lists = r.lists, entries = r.entries, load_ms = r.load.as_secs_f64() * 1000.0, why, "deny lists in force");
}
