//! Denial logs: each denial, complain-mode hit or learned item from the kernel becomes one
//! structured tracing line (pod, namespace, container, profile, mode, kind, and the detail:
//! path, address and port, syscall name). Lines are rate limited per container, so one
//! misbehaving workload cannot flood the node's logs: at most `log_rate_limit` lines per
//! window, and when a window had suppressed lines one line says how many.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Labels;
use crate::events::EventView;

/// Who a window belongs to, for its summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub profile: String,
    /// The operator's rule that decided the container's policy.
    pub rule: String,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
    who: Who,
}

/// Fixed-window limiter keyed by the container's cgroup id. `max == 0`: unlimited.
#[derive(Debug)]
pub struct Limiter {
    max: u32,
    window: Duration,
    windows: HashMap<u64, Window>,
}

/// A window that ended with lines suppressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub key: u64,
    pub who: Who,
    pub count: u64,
}

impl Limiter {
    pub fn new(max: u32, window: Duration) -> Limiter {
        Limiter { max, window, windows: HashMap::new() }
    }

    /// Whether the line for `key` at `now` may be logged, and the summary of that key's
    /// previous window if it ended with lines suppressed (log it first).
    pub fn admit(&mut self, key: u64, who: &Who, now: Instant) -> (bool, Option<Suppressed>) {
        if self.max == 0 {
            return (true, None);
        }
        let mut ended = None;
        let w = self.windows.entry(key).or_insert_with(|| Window {
            start: now,
            logged: 0,
            suppressed: 0,
            who: who.clone(),
        });
        if now.saturating_duration_since(w.start) >= self.window {
            if w.suppressed > 0 {
                ended = Some(Suppressed { key, who: w.who.clone(), count: w.suppressed });
            }
            *w = Window { start: now, logged: 0, suppressed: 0, who: who.clone() };
        }
        if w.logged < self.max {
            w.logged += 1;
            (true, ended)
        } else {
            w.suppressed += 1;
            (false, ended)
        }
    }

    /// Ends every window older than the window length: returns those with suppressed lines
    /// and forgets them all, so the table only holds containers that logged recently.
    pub fn expire(&mut self, now: Instant) -> Vec<Suppressed> {
        let mut out = Vec::new();
        let window = self.window;
        self.windows.retain(|key, w| {
            if now.saturating_duration_since(w.start) < window {
                return true;
            }
            if w.suppressed > 0 {
                out.push(Suppressed { key: *key, who: w.who.clone(), count: w.suppressed });
            }
            false
        });
        out.sort_by_key(|s| s.key);
        out
    }

    pub fn tracked(&self) -> usize {
        self.windows.len()
    }
}

/// The limiter plus the log lines.
pub struct Reporter {
    limiter: Mutex<Limiter>,
}

impl Reporter {
    pub fn new(max_per_window: u32, window: Duration) -> Reporter {
        Reporter { limiter: Mutex::new(Limiter::new(max_per_window, window)) }
    }

    /// Logs one kernel event of the container `rec` (None: a cgroup this daemon does not
    /// know, e.g. confined with the CLI), unless its container is over the limit.
    pub fn event(&self, ev: &EventView, rec: Option<&Labels<'_>>) {
        let who = rec
            .map(|r| Who {
                namespace: r.namespace.to_string(),
                pod: r.pod.to_string(),
                container: r.container.to_string(),
                profile: ev.profile.clone(),
                rule: r.rule.to_string(),
            })
            .unwrap_or_else(|| Who { profile: ev.profile.clone(), ..Who::default() });
        let (log, ended) = self.limiter.lock().unwrap().admit(ev.root_cgroup, &who, Instant::now());
        if let Some(s) = ended {
            summary(&s);
        }
        if log {
            line(ev, &who);
        }
    }

    /// Summaries of windows that ended; called about once per window by the daemon.
    pub fn flush(&self) {
        let ended = self.limiter.lock().unwrap().expire(Instant::now());
        for s in &ended {
            summary(s);
        }
    }
}

fn summary(s: &Suppressed) {
    warn!(target: "warden::event", namespace = %s.who.namespace, pod = %s.who.pod, container = %s.who.container,
          profile = %s.who.profile, rule = %s.who.rule, cgroup_id = s.key, suppressed = s.count,
          "{} event line(s) of this container suppressed by log_rate_limit (the kernel's counters and /metrics still count them)", s.count);
}

/// One event as one line. Denials and complain hits are warnings; learned items are info.
fn line(ev: &EventView, who: &Who) {
    macro_rules! emit {
        ($lvl:ident) => {
            $lvl!(target: "warden::event", namespace = %who.namespace, pod = %who.pod, container = %who.container,
                  profile = %ev.profile, rule = %who.rule, mode = %ev.mode, kind = ev.kind, verdict = ev.verdict,
                  syscall = ev.syscall.as_deref(), path = ev.path.as_deref(), access = ev.access.as_deref(), op = ev.op,
                  address = ev.address.as_deref(), port = ev.port, protocol = ev.protocol.as_deref(), family = ev.family.as_deref(),
                  deny_list = ev.deny_list.as_deref(), deny_line = ev.deny_line,
                  // An unconfined container refused by a node-wide deny list has no root: its own cgroup.
                  pid = ev.pid, comm = %ev.comm, cgroup_id = if ev.root_cgroup == 0 { ev.cgroup_id } else { ev.root_cgroup }, "{}", ev.detail)
        };
    }
    if ev.verdict == "learned" {
        emit!(info);
    } else {
        emit!(warn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(c: &str) -> Who {
        Who { container: c.into(), ..Who::default() }
    }

    #[test]
    fn limits_per_key_and_reports_suppressed_lines() {
        let t0 = Instant::now();
        let mut l = Limiter::new(3, Duration::from_secs(1));
        let a = who("a");
        let b = who("b");
        let admitted: Vec<bool> = (0..10).map(|i| l.admit(1, &a, t0 + Duration::from_millis(i * 10)).0).collect();
        assert_eq!(admitted, [true, true, true, false, false, false, false, false, false, false]);
        // Another container has its own budget.
        assert!(l.admit(2, &b, t0 + Duration::from_millis(500)).0);
        // Next window: admitted again, and the previous window's count comes with it.
        let (ok, ended) = l.admit(1, &a, t0 + Duration::from_millis(1000));
        assert!(ok);
        assert_eq!(ended, Some(Suppressed { key: 1, who: a.clone(), count: 7 }));
        // That summary is given once.
        let (_, again) = l.admit(1, &a, t0 + Duration::from_millis(1001));
        assert_eq!(again, None);
    }

    #[test]
    fn expire_reports_quiet_containers_and_forgets_them() {
        let t0 = Instant::now();
        let mut l = Limiter::new(1, Duration::from_secs(1));
        let a = who("a");
        for i in 0..5 {
            l.admit(7, &a, t0 + Duration::from_millis(i));
        }
        l.admit(8, &who("b"), t0);
        assert!(l.expire(t0 + Duration::from_millis(999)).is_empty(), "window still open");
        assert_eq!(l.tracked(), 2);
        // Both windows end; only the one with suppressed lines is reported; both are dropped,
        // so released containers do not accumulate.
        assert_eq!(l.expire(t0 + Duration::from_secs(1)), vec![Suppressed { key: 7, who: a, count: 4 }]);
        assert_eq!(l.tracked(), 0);
        assert!(l.expire(t0 + Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn zero_means_unlimited() {
        let t0 = Instant::now();
        let mut l = Limiter::new(0, Duration::from_secs(1));
        assert!((0..10_000).all(|_| l.admit(1, &who("a"), t0).0));
        assert_eq!(l.tracked(), 0);
    }
}
