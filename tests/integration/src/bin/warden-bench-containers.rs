//! `warden-bench-containers`: what warden costs a container start, and an event flood from a
//! real container, with the private containerd harness (src/containerd.rs) and the real
//! `warden run` daemon (the `warden` binary next to this one). Prints markdown. Needs root and
//! the containerd install of scripts/containerd.sh (run idempotently).
//!
//!   warden-bench-containers [--pods 50] [--flood 1000000]
//!
//! Start latency: two private containerd instances, one with warden registered over NRI and
//! one without; pods alternate between them (A, B, B, A, ...), so both see the same machine
//! state. Each sample is the CRI StartContainer call of a busybox container, measured by the
//! client. warden's own handling time is what the daemon logs for each StartContainer
//! (`micros=` of its "confined" line).
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use warden_integration_tests::containerd::{Containerd, PodHandle};
use warden_integration_tests::{static_attempt, WardenDaemon};

const PROFILE: &str = "bench-start";
const ATTEMPT: &str = "/warden-attempt";

fn profile() -> String {
    let allow: Vec<&str> = syscalls::Sysno::iter().map(|s| s.name()).collect();
    serde_json::json!({ "name": PROFILE, "syscalls": { "default": "kill", "allow": allow }, "network": { "connect": [] } }).to_string()
}

fn pct(v: &[f64], p: usize) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[(s.len() * p / 100).min(s.len() - 1)]
}

fn proc_status_kb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0.0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised comm: state is field 3; utime 14, stime 15.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (n(11) + n(12)) / tick
}

/// One pod with one busybox container; returns the StartContainer latency in ms.
async fn one_start(c: &Containerd, name: &str) -> Result<f64> {
    let pod = c.run_pod(name, "bench", &[("warden.io/profile", PROFILE)]).await?;
    let id = c.create_container(&pod, "app", &["sleep", "3600"], &[]).await?;
    let t = Instant::now();
    c.start_container(&id).await.map_err(|s| anyhow::anyhow!("StartContainer {name}: {}", s.message()))?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    c.remove_pod(&pod.id).await?;
    Ok(ms)
}

async fn flood(c: &Containerd, w: &WardenDaemon, n: u64) -> Result<()> {
    let daemon = w.pid().context("daemon pid")?;
    let helper = static_attempt();
    if !helper.exists() {
        bail!("{} missing (scripts/bench.sh builds it)", helper.display());
    }
    let pod: PodHandle = c.run_pod("flood", "bench", &[("warden.io/profile", PROFILE)]).await?;
    // connect() to a denied address: EPERM from the cgroup connect4 program, one event each;
    // then stay alive (and confined) so the counters can be read.
    let script = format!("{ATTEMPT} connect-loop 127.0.0.1 9 {n}; echo FLOOD-DONE; sleep 3600");
    let id =
        c.create_container_with(&pod, "flood", &["sh", "-c", &script], &[], &[(helper.as_path(), ATTEMPT)]).await?;
    let log_before = w.log_text().matches("warden::event").count();
    let cpu0 = cpu_seconds(daemon);
    let t = Instant::now();
    c.start_container(&id).await.map_err(|s| anyhow::anyhow!("StartContainer flood: {}", s.message()))?;
    loop {
        if c.container_log("flood", "flood").contains("FLOOD-DONE") {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("the flood did not finish in 600 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    // Let the daemon drain the ring buffer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_seconds(daemon) - cpu0;
    let delivered = w.log_text().matches("warden::event").count() - log_before;
    let st = w.warden.status();
    let entry =
        st["confined"].as_array().and_then(|a| a.iter().find(|e| e["profile"] == PROFILE).cloned()).unwrap_or_default();
    let outcome = c.container_log("flood", "flood").lines().next().unwrap_or("").to_string();
    c.remove_pod(&pod.id).await?;
    println!("### Event flood\n");
    println!("One container (busybox + static warden-attempt) makes {n} denied TCP connects (EPERM each) as fast as it can; the daemon (`warden run`) reads the ring buffer and logs each event. Default rate limit: 1000 events/s per confined cgroup; the rest are counted as dropped.\n");
    println!("| figure | value |\n|---|---:|");
    println!("| attempts (container's own count) | `{outcome}` |");
    println!("| flood duration | {secs:.1} s |");
    println!("| events delivered (logged by the daemon) | {delivered} |");
    println!(
        "| events sent / dropped (kernel counters, `warden status`) | {} / {} |",
        entry["events_sent"], entry["events_dropped"]
    );
    println!("| daemon CPU time during the flood (utime+stime) | {cpu:.2} s ({:.1}% of one CPU) |", 100.0 * cpu / secs);
    println!();
    Ok(())
}

async fn run(pods: usize, flood_n: u64) -> Result<()> {
    let plain = Containerd::start().await.context("containerd without warden")?;
    let with = Containerd::start().await.context("containerd with warden")?;
    let mut w = WardenDaemon::configure(&with.nri_socket, &[(PROFILE, profile())], "");
    w.start();
    let daemon = w.pid().context("daemon pid")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = proc_status_kb(daemon, "VmRSS:");
    // Warm both (image unpack, first shim) outside the samples.
    one_start(&plain, "warm-a").await?;
    one_start(&with, "warm-b").await?;
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..pods {
        eprintln!("start latency: pair {}/{pods}", i + 1);
        // Alternate which instance goes first.
        if i % 2 == 0 {
            a.push(one_start(&plain, &format!("a{i}")).await?);
            b.push(one_start(&with, &format!("b{i}")).await?);
        } else {
            b.push(one_start(&with, &format!("b{i}")).await?);
            a.push(one_start(&plain, &format!("a{i}")).await?);
        }
    }
    let rss_after = proc_status_kb(daemon, "VmRSS:");
    let rss_peak = proc_status_kb(daemon, "VmHWM:");
    // The daemon's own handling time of each StartContainer it confined (warm-up excluded).
    let micros: Vec<f64> = w
        .log_text()
        .lines()
        .filter(|l| l.contains("confined") && l.contains("micros="))
        .filter_map(|l| l.split("micros=").nth(1)?.split_whitespace().next()?.parse().ok())
        .skip(1)
        .collect();
    if micros.len() < pods {
        bail!("the daemon logged {} StartContainer handling times for {pods} pods", micros.len());
    }
    let (a50, a99, b50, b99) = (pct(&a, 50), pct(&a, 99), pct(&b, 50), pct(&b, 99));
    println!("### Container start (CRI StartContainer)\n");
    println!("{pods} pods on each of two private containerd 1.7 instances (runc, busybox `sleep`), one with `warden run` registered over NRI (profile: every syscall allowed, no connect), alternating pod by pod. Latency = the CRI StartContainer call as the client sees it.\n");
    println!("| figure | p50 | p99 | target |\n|---|---:|---:|---:|");
    println!("| StartContainer without warden | {a50:.1} ms | {a99:.1} ms | |");
    println!("| StartContainer with warden | {b50:.1} ms | {b99:.1} ms | |");
    println!(
        "| added by warden (difference of the percentiles) | {:.1} ms | {:.1} ms | p50 <= 5 ms, p99 <= 10 ms |",
        b50 - a50,
        b99 - a99
    );
    println!(
        "| warden's own StartContainer handling (daemon log, {} samples) | {:.2} ms | {:.2} ms | |",
        micros.len(),
        pct(&micros, 50) / 1000.0,
        pct(&micros, 99) / 1000.0
    );
    println!();
    println!("Daemon (`warden run`) RSS: {:.1} MB idle after registering, {:.1} MB after {pods} confined starts (peak {:.1} MB).\n", rss_idle / 1024.0, rss_after / 1024.0, rss_peak / 1024.0);
    if flood_n > 0 {
        flood(&with, &w, flood_n).await?;
    }
    drop(w);
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let pods: usize = get("--pods").map(|v| v.parse()).transpose()?.unwrap_or(50);
    let flood_n: u64 = get("--flood").map(|v| v.parse()).transpose()?.unwrap_or(1_000_000);
    if pods == 0 {
        bail!("--pods must be at least 1");
    }
    if let Some(why) = warden_integration_tests::containerd::missing_prerequisite() {
        bail!("cannot run the container benchmark: {why}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run(pods, flood_n))
}
