//! Running warden as a production daemon: structured, rate-limited denial logs ([`report`]),
//! Prometheus metrics ([`metrics`]), profile hot reload ([`reload`]) and least privilege
//! ([`privs`]). Kept apart from the daemon, which calls in at a few points: nothing here knows
//! a daemon type (a confined container is named by [`Labels`]).
pub mod metrics;
pub mod privs;
pub mod reload;
pub mod report;

use std::collections::HashMap;
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::config::Config;
use crate::enforcer::Mode;

/// A confined container as the denial logs and the metrics name it.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    /// Root cgroup id of the container's confinement.
    pub cgroup_id: u64,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
    pub profile: &'a str,
    pub mode: Mode,
    /// The operator's rule that decided the policy.
    pub rule: &'a str,
}

/// The daemon's operational state beside the enforcement state.
pub struct Ops {
    pub report: report::Reporter,
    pub metrics: metrics::Metrics,
    /// Read-held by a container's start from compiling its profile to writing it into the
    /// kernel; write-held by a reload. So a start racing a reload never installs a version
    /// older than the one the reload switched everybody to.
    profiles_gate: RwLock<()>,
    /// Profile name as compiled (the `name` field) -> name it was looked up by (file stem),
    /// for the reload to find the file again.
    lookup: Mutex<HashMap<String, String>>,
}

impl Ops {
    pub fn new(cfg: &Config) -> Ops {
        Ops {
            report: report::Reporter::new(cfg.log_rate_limit, Duration::from_secs(1)),
            metrics: metrics::Metrics::new(),
            profiles_gate: RwLock::new(()),
            lookup: Mutex::new(HashMap::new()),
        }
    }

    /// Held by a start while it compiles and applies a profile (see `profiles_gate`).
    pub fn profiles_read(&self) -> RwLockReadGuard<'_, ()> {
        self.profiles_gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Held by a reload while it recompiles and switches versions (see `profiles_gate`).
    pub fn profiles_write(&self) -> RwLockWriteGuard<'_, ()> {
        self.profiles_gate.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers which file name a compiled profile came from.
    pub fn note_profile(&self, lookup_name: &str, compiled_name: &str) {
        self.lookup.lock().unwrap().insert(compiled_name.to_string(), lookup_name.to_string());
    }

    pub fn lookup_name(&self, compiled_name: &str) -> Option<String> {
        self.lookup.lock().unwrap().get(compiled_name).cloned()
    }

    /// Tests: while this is held, a start that compiled its profile waits (in `note_profile`),
    /// inside the window the profiles gate covers.
    #[cfg(test)]
    pub(crate) fn lookup_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.lookup.lock().unwrap()
    }

    /// Tests: whether neither a start nor a reload holds the profiles gate.
    #[cfg(test)]
    pub(crate) fn profiles_gate_free(&self) -> bool {
        self.profiles_gate.try_write().is_ok()
    }
}

/// Installs the SIGHUP handler on `rt` (first thing in `warden run`).
pub fn hangup_signal(rt: &tokio::runtime::Runtime) -> anyhow::Result<tokio::signal::unix::Signal> {
    let _in_rt = rt.enter();
    Ok(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?)
}
