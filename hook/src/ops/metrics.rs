//! Prometheus metrics (`metrics_address`, off by default), served by a small HTTP responder on
//! a tokio TcpListener: `GET /metrics` only.
//!
//! Denials come from the kernel's exact per-container counters (not from the events ring
//! buffer, which is rate limited): at each scrape, and once more when a container is released,
//! the growth of each counter since the last look is added to the series.
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, Result};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};
use warden_common::kind;

use super::Labels;
use crate::enforcer::{kind_name, Maps};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub profile: String,
    /// enforce (denied) or complain (would have been denied).
    pub mode: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// `start` (a container's profile at StartContainer) or `reload`.
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub request: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListLabels {
    /// The deny list's name (its file name).
    pub list: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LayerLabels {
    pub layer: String,
}

/// Last counter values seen for one confined cgroup.
#[derive(Default)]
struct Seen {
    violations: [u64; kind::COUNT],
    dropped: u64,
    /// Label sets of this container's denial series (removed at release).
    series: HashSet<DenialLabels>,
}

pub struct Metrics {
    registry: Registry,
    denials: Family<DenialLabels, Counter>,
    events_dropped: Counter,
    confined: Gauge,
    profile_errors: Family<StageLabels, Counter>,
    nri_latency: Family<RequestLabels, Histogram>,
    layers: Family<LayerLabels, Gauge>,
    unmatched_keys: Counter,
    seen: Mutex<HashMap<u64, Seen>>,
    deny_hits: Family<ListLabels, Counter>,
    deny_entries: Family<ListLabels, Gauge>,
    /// Last kernel hit count seen per list.
    deny_seen: Mutex<HashMap<String, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("warden");
        let denials = Family::<DenialLabels, Counter>::default();
        registry.register(
            "denials",
            "Attempts denied (enforce) or that would have been denied (complain), per container and kind; exact kernel counts",
            denials.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Kernel events not sent to the daemon because of the per-container event rate limit (counts stay exact)",
            events_dropped.clone(),
        );
        let confined = Gauge::default();
        registry.register("confined_containers", "Containers this daemon confines now", confined.clone());
        let profile_errors = Family::<StageLabels, Counter>::default();
        registry.register(
            "profile_errors",
            "Profiles that failed to load or compile: at a container's start (refused) or at a reload (old version kept)",
            profile_errors.clone(),
        );
        // 100 us .. ~3.3 s: StartContainer handling is ~ms; containerd's NRI timeout is 2 s.
        let nri_latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "nri_request_duration_seconds",
            "Time warden took to answer an NRI request",
            nri_latency.clone(),
        );
        let layers = Family::<LayerLabels, Gauge>::default();
        registry.register(
            "kernel_layer_available",
            "Enforcement layers this kernel supports (1) or not (0)",
            layers.clone(),
        );
        let unmatched_keys = Counter::default();
        registry.register(
            "unmatched_container_keys",
            "Per-container annotation keys (warden.io/profile.NAME, mode.NAME) that named no container of their pod once its containers had started",
            unmatched_keys.clone(),
        );
        let deny_hits = Family::<ListLabels, Counter>::default();
        registry.register(
            "deny_list_hits",
            "Connects and sends refused because a node-wide deny list names the destination, per list (events name the entry)",
            deny_hits.clone(),
        );
        let deny_entries = Family::<ListLabels, Gauge>::default();
        registry.register("deny_list_entries", "Entries in force per node-wide deny list", deny_entries.clone());
        Metrics {
            registry,
            deny_hits,
            deny_entries,
            deny_seen: Mutex::new(HashMap::new()),
            denials,
            events_dropped,
            confined,
            profile_errors,
            nri_latency,
            layers,
            unmatched_keys,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// A deny list's kernel hit count now and its entries in force.
    pub fn deny_list(&self, list: &str, hits: u64, entries: usize) {
        let labels = ListLabels { list: list.into() };
        let mut seen = self.deny_seen.lock().unwrap();
        let last = seen.entry(list.to_string()).or_default();
        self.deny_hits.get_or_create(&labels).inc_by(hits.saturating_sub(*last));
        *last = hits.max(*last);
        self.deny_entries.get_or_create(&labels).set(entries as i64);
    }

    pub fn unmatched_container_key(&self) {
        self.unmatched_keys.inc();
    }

    pub fn profile_error(&self, stage: &str) {
        self.profile_errors.get_or_create(&StageLabels { stage: stage.into() }).inc();
    }

    pub fn nri_request(&self, request: &str, took: Duration) {
        self.nri_latency.get_or_create(&RequestLabels { request: request.into() }).observe(took.as_secs_f64());
    }

    /// How many containers the daemon confines now.
    pub fn set_confined(&self, n: usize) {
        self.confined.set(n as i64);
    }

    pub fn layer(&self, name: &str, available: bool) {
        self.layers.get_or_create(&LayerLabels { layer: name.into() }).set(available as i64);
    }

    /// Adds the growth of `rec`'s kernel counters since the last look.
    pub fn account(&self, maps: &Maps, rec: &Labels<'_>) {
        let c = maps.counters_of(rec.cgroup_id);
        let mut seen = self.seen.lock().unwrap();
        let s = seen.entry(rec.cgroup_id).or_default();
        for (k, now) in c.violations.iter().enumerate() {
            let delta = now.saturating_sub(s.violations[k]);
            s.violations[k] = *now;
            if delta == 0 {
                continue;
            }
            let labels = DenialLabels {
                namespace: rec.namespace.to_string(),
                pod: rec.pod.to_string(),
                container: rec.container.to_string(),
                profile: rec.profile.to_string(),
                mode: rec.mode.as_str().into(),
                kind: kind_name(k as u8).into(),
            };
            self.denials.get_or_create(&labels).inc_by(delta);
            s.series.insert(labels);
        }
        self.events_dropped.inc_by(c.events_dropped.saturating_sub(s.dropped));
        s.dropped = c.events_dropped;
    }

    /// A container is being released: count what happened since the last scrape, then drop
    /// its series (bounded memory under container churn; its counts are in the total of any
    /// scrape made while it ran).
    pub fn released(&self, maps: &Maps, rec: &Labels<'_>) {
        self.account(maps, rec);
        if let Some(s) = self.seen.lock().unwrap().remove(&rec.cgroup_id) {
            for l in &s.series {
                self.denials.remove(l);
            }
        }
    }

    /// The text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Binds the metrics address (before privileges are dropped: the port may be privileged).
pub fn bind(addr: &str) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr).with_context(|| format!("metrics_address {addr}: cannot listen"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Connections served at once (each lives at most 5 s waiting for its request).
const MAX_CONNECTIONS: usize = 8;

/// Makes the text exposition, up to date (it may block: it runs off the runtime thread).
pub type Render = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `GET /metrics` until the runtime stops. One request per connection.
pub async fn serve(listener: std::net::TcpListener, render: Render) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!("metrics listener: {e}");
            return;
        }
    };
    // A scraper needs one connection; a bound keeps a flood of idle ones from eating fds.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "metrics: too many connections, closing this one");
            continue;
        };
        let r = render.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(conn, r).await {
                debug!(%peer, "metrics request: {e:#}");
            }
            drop(permit);
        });
    }
}

/// Reads the request head (bounded in size and time) and answers.
async fn answer(mut conn: TcpStream, render: Render) -> Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() > 16 * 1024 {
                anyhow::bail!("request head too large");
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.context("request timed out")??;
    let text = String::from_utf8_lossy(&head);
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => {
            // Reading the maps takes the enforcer's lock: off the runtime thread.
            let body = tokio::task::spawn_blocking(move || render()).await?;
            ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", body)
        }
        ("GET", _) => ("404 Not Found", "text/plain", "only /metrics is served here\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".to_string()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await?;
    conn.shutdown().await.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family() {
        let m = Metrics::new();
        m.profile_error("reload");
        m.nri_request("start_container", Duration::from_millis(3));
        m.layer("network", true);
        m.denials
            .get_or_create(&DenialLabels {
                namespace: "shop".into(),
                pod: "web".into(),
                container: "app".into(),
                profile: "p".into(),
                mode: "enforce".into(),
                kind: "connect".into(),
            })
            .inc_by(2);
        let text = m.encode();
        for want in [
            "warden_denials_total{namespace=\"shop\",pod=\"web\",container=\"app\",profile=\"p\",mode=\"enforce\",kind=\"connect\"} 2",
            "warden_profile_errors_total{stage=\"reload\"} 1",
            "warden_nri_request_duration_seconds_count{request=\"start_container\"} 1",
            "warden_kernel_layer_available{layer=\"network\"} 1",
            "warden_events_dropped_total 0",
            "warden_confined_containers 0",
        ] {
            assert!(text.contains(want), "missing {want}:\n{text}");
        }
    }
}
