//! `warden run`: the daemon's threads and tasks, from start to exit.
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tracing::{error, info, warn};

use super::Daemon;
use crate::config::Config;
use crate::{control, nri, ops};

/// Runs the plugin until SIGTERM/SIGINT (or the runtime shuts it down). Enforcement stays
/// pinned on exit unless `release_on_exit`.
pub fn run(cfg: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // SIGHUP (reload) handled from the start: its default action would end the daemon.
    let hup = ops::hangup_signal(&rt)?;
    let release_on_exit = cfg.release_on_exit;
    let pin_dir = cfg.pin_dir.clone();
    let endpoint = nri::Endpoint::from_env_or(cfg.nri.socket_path.clone())?;
    let opts = nri::PluginOptions::from_env_or(&cfg.nri.plugin_name, &cfg.nri.plugin_index)?;
    let nri_enabled = cfg.nri.enabled;
    ops::privs::check_start()?;
    // `warden config check` at start: a rule whose default profile or baseline does not
    // compile would refuse every pod it covers; refuse to start instead, saying why.
    let checked = crate::config_check::check(&cfg);
    for e in &checked.profile_errors {
        warn!(error = %e, "profile does not compile: pods naming it will be refused");
    }
    if !checked.rule_errors.is_empty() {
        anyhow::bail!("config check failed: {}", checked.rule_errors.join("; "));
    }
    let metrics = cfg.metrics_address.as_deref().map(ops::metrics::bind).transpose()?;
    let watcher = if cfg.watch_profiles { ops::reload::watch(&cfg.profile_dirs)? } else { None };
    let deny_watcher = if cfg.deny_lists.watch {
        ops::reload::watch_with(std::slice::from_ref(&cfg.deny_lists.dir), ops::reload::is_deny_list_trigger)?
    } else {
        None
    };
    let drop_caps = cfg.drop_capabilities;
    let daemon = Arc::new(Daemon::new(cfg)?);
    // Before any other thread exists: capabilities are per thread and inherited.
    if drop_caps {
        ops::privs::drop_to_kept()?;
    }
    // Removes the socket file when `run` returns. Without NRI the socket is the only way in:
    // fatal. With NRI, enforcing containerd's containers matters more than `warden status`.
    let _control = match serve_control(&daemon) {
        Ok(s) => Some(s),
        Err(e) if nri_enabled => {
            error!(error = %format!("{e:#}"), "control socket NOT available (status, events and oci-hook will not reach this daemon); NRI enforcement continues");
            None
        }
        Err(e) => return Err(e),
    };
    if let Some(w) = watcher {
        let d = daemon.clone();
        std::thread::Builder::new().name("profile-watch".into()).spawn(move || {
            w.run(|why| {
                d.reload_profiles(why);
            })
        })?;
    }
    if let Some(w) = deny_watcher {
        let d = daemon.clone();
        std::thread::Builder::new().name("deny-list-watch".into()).spawn(move || {
            w.run(|why| {
                d.reload_deny_lists(why);
            })
        })?;
    }
    {
        let d = daemon.clone();
        std::thread::Builder::new().name("events".into()).spawn(move || d.log_events(pin_dir))?;
    }
    info!(?endpoint, "warden running");
    let d = daemon.clone();
    rt.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        spawn_tasks(&d, hup, metrics);
        let nri_plugin = async move {
            if !nri_enabled {
                warn!("NRI disabled (nri.enabled = false): containers are confined only through the control socket (warden oci-hook)");
                return std::future::pending().await;
            }
            nri::run_with_reconnect(endpoint, opts, d, Duration::from_secs(5), |p| info!(plugin = %p.name(), "registered with the runtime")).await
        };
        tokio::select! {
            r = nri_plugin => {
                info!(exit = ?r, "NRI plugin stopped");
            }
            _ = term.recv() => info!("SIGTERM"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT"),
        }
        anyhow::Ok(())
    })?;
    if release_on_exit {
        info!("releasing every confined container (release_on_exit)");
        daemon.release_all();
    } else {
        info!("exiting; enforcement stays pinned");
    }
    Ok(())
}

/// The control socket: once its path is ready (and no other daemon serves it), the records of
/// containers an earlier daemon confined through the OCI hook are adopted, then it listens.
fn serve_control(daemon: &Arc<Daemon>) -> Result<control::Server> {
    let prepared = control::prepare(&daemon.cfg.control_socket)?;
    daemon.adopt_oci();
    control::serve(prepared, daemon.clone())
}

/// The daemon's background tasks, on its tokio runtime: SIGHUP reloads the profiles, the
/// denial log limiter's windows are closed every second (summaries of suppressed lines), and
/// `/metrics` is served when configured.
fn spawn_tasks(daemon: &Arc<Daemon>, mut hup: tokio::signal::unix::Signal, metrics: Option<std::net::TcpListener>) {
    let d = daemon.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            info!("SIGHUP: reloading profiles and deny lists");
            let d = d.clone();
            // Compiling and writing maps blocks: off the runtime thread.
            let _ = tokio::task::spawn_blocking(move || {
                d.reload_profiles("SIGHUP");
                d.reload_deny_lists("SIGHUP");
            })
            .await;
        }
    });
    let d = daemon.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            d.ops.report.flush();
            d.check_pod_keys(None);
            n += 1;
            if n.is_multiple_of(10) {
                // Node-wide hooks idle past hook_idle_detach_seconds are detached (off the
                // runtime thread: a detach waits for the kernel's RCU grace periods), one link
                // per hold of the engine, with a pause between: a container start waits for one
                // link's detach at most, not for every group's (Enforcer::detach_idle).
                let d = d.clone();
                let _ = tokio::task::spawn_blocking(move || loop {
                    match d.enforcer.lock().unwrap().detach_idle() {
                        Ok(true) => std::thread::sleep(Duration::from_millis(50)),
                        Ok(false) => break,
                        Err(e) => {
                            tracing::warn!("detaching idle hooks: {e:#}");
                            break;
                        }
                    }
                })
                .await;
            }
        }
    });
    if let Some(l) = metrics {
        let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        info!(address = %addr, "serving Prometheus metrics at /metrics");
        let d = daemon.clone();
        tokio::spawn(ops::metrics::serve(
            l,
            Arc::new(move || {
                d.refresh_metrics();
                d.ops.metrics.encode()
            }),
        ));
    }
}

impl Daemon {
    /// Brings the metrics up to date with the kernel's counters and the daemon's state.
    pub fn refresh_metrics(&self) {
        let recs = self.registry.all();
        let m = &self.ops.metrics;
        m.set_confined(recs.len());
        let enf = self.enforcer.lock().unwrap();
        for l in &self.probe.layers {
            // bpf-lsm can still turn out unusable when its programs are verified (preload).
            let ok = l.available && (l.name != "bpf-lsm" || enf.lsm_status().is_ok());
            m.layer(l.name, ok);
        }
        for (_, r) in &recs {
            m.account(enf.maps(), &r.labels());
        }
        drop(enf);
        for l in self.deny_list_status() {
            m.deny_list(&l.name, l.hits, l.entries);
        }
    }
}
