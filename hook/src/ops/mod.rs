//! Running warden as a production daemon: structured, rate-limited denial logs ([`report`]),
//! Prometheus metrics ([`metrics`]), profile hot reload ([`reload`]) and least privilege
//! ([`privs`]). Kept apart from `daemon.rs`, which calls in at a few points.
pub mod metrics;
pub mod privs;
pub mod reload;
pub mod report;

use std::collections::HashMap;
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::config::Config;

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

    /// Remembers which file name a compiled profile came from.
    pub fn note_profile(&self, lookup_name: &str, compiled_name: &str) {
        self.lookup.lock().unwrap().insert(compiled_name.to_string(), lookup_name.to_string());
    }

    pub fn lookup_name(&self, compiled_name: &str) -> Option<String> {
        self.lookup.lock().unwrap().get(compiled_name).cloned()
    }
}

/// The daemon's background tasks, on its tokio runtime: SIGHUP reloads the profiles, the
/// denial log limiter's windows are closed every second (summaries of suppressed lines), and
/// `/metrics` is served when configured.
pub fn spawn_tasks(
    daemon: &std::sync::Arc<crate::daemon::Daemon>,
    mut hup: tokio::signal::unix::Signal,
    metrics: Option<std::net::TcpListener>,
) {
    let d = daemon.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading profiles");
            let d = d.clone();
            // Compiling and writing maps blocks: off the runtime thread.
            let _ = tokio::task::spawn_blocking(move || d.reload_profiles("SIGHUP")).await;
        }
    });
    let d = daemon.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            d.ops.report.flush();
            n += 1;
            if n % 10 == 0 {
                // Shared hooks idle past hook_idle_detach_seconds are detached (off the runtime
                // thread: detaching waits for the kernel's RCU grace periods).
                let d = d.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = d.enforcer.lock().unwrap().detach_idle() {
                        tracing::warn!("detaching idle hooks: {e:#}");
                    }
                })
                .await;
            }
        }
    });
    if let Some(l) = metrics {
        let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(address = %addr, "serving Prometheus metrics at /metrics");
        tokio::spawn(metrics::serve(l, daemon.clone()));
    }
}

/// Installs the SIGHUP handler on `rt` (first thing in `warden run`).
pub fn hangup_signal(rt: &tokio::runtime::Runtime) -> anyhow::Result<tokio::signal::unix::Signal> {
    let _in_rt = rt.enter();
    Ok(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?)
}
