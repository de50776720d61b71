//! Scale: N real cgroups confined through the daemon's own code path (`Daemon::confine`, the
//! function `warden run` calls at NRI StartContainer, with synthetic pod and container records
//! whose `linux.cgroupsPath` names each cgroup), in a child process whose RSS is the daemon's;
//! then a hot profile update (the engine's atomic per-profile replace) timed over all of them,
//! and the kernel map memory (memlock of every pinned map, as bpftool reports it).
use std::io::{BufRead as _, BufReader};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use warden::{
    config::Config,
    daemon::{Daemon, Target, Via},
    enforcer::Enforcer,
    nri::{api::LinuxContainer, Container, PodSandbox},
};

use crate::median;

const PROFILE: &str = "bench-scale";

/// The scale profile: every syscall allowed plus 100 connect rules (`extra` adds one rule, so
/// a second version differs).
fn profile_json(extra: bool) -> String {
    let allow: Vec<&str> = syscalls::Sysno::iter().map(|s| s.name()).collect();
    let mut rules: Vec<serde_json::Value> = (0..100)
        .map(|i| serde_json::json!({"cidr": format!("10.{}.{}.0/24", i / 200, i % 200), "ports": [443, "8000-8100"], "protocol": "tcp"}))
        .collect();
    if extra {
        rules.push(serde_json::json!({"cidr": "192.168.77.0/24", "ports": [53], "protocol": "udp"}));
    }
    serde_json::json!({"name": PROFILE, "syscalls": {"allow": allow}, "network": {"connect": rules}}).to_string()
}

fn status_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// `--scale-child PIN PROFILE_DIR N CGROUP_PREFIX`: the daemon side. Prints one JSON line.
pub fn child(args: &[String]) -> Result<()> {
    let [pin, pdir, n, prefix] = args else { bail!("--scale-child PIN PROFILE_DIR N CGROUP_PREFIX") };
    let n: usize = n.parse()?;
    let cfg = Config { pin_dir: pin.into(), profile_dirs: vec![pdir.into()], ..Config::default() };
    let daemon = Daemon::new(cfg).context("starting the daemon core")?;
    let idle_kb = status_kb("self", "VmRSS:");
    let pod = PodSandbox {
        id: "bench-pod".into(),
        name: "bench".into(),
        uid: "bench-uid".into(),
        namespace: "bench".into(),
        annotations: [("warden.io/profile".to_string(), PROFILE.to_string())].into(),
        ..Default::default()
    };
    let mut us = Vec::with_capacity(n);
    let t_all = Instant::now();
    for i in 0..n {
        let c = Container {
            id: format!("bench-c{i}"),
            pod_sandbox_id: pod.id.clone(),
            name: "app".into(),
            linux: Some(LinuxContainer { cgroups_path: format!("{prefix}/cg-{i}"), ..Default::default() }),
            ..Default::default()
        };
        let t = Instant::now();
        let r = daemon.confine(&Target::nri(&pod, &c), Via::Nri).with_context(|| format!("confining cgroup {i}"))?;
        us.push(t.elapsed().as_micros() as f64);
        if r.is_none() {
            bail!("container {i} was not confined");
        }
    }
    let total_ms = t_all.elapsed().as_secs_f64() * 1000.0;
    // StartContainer's confine with about 0, n/2 and n containers confined already: p50 and
    // p99 of the 100 confines after each mark (issue 17: O(1) per container).
    let window = |from: usize| {
        let mut w: Vec<f64> = us[from.min(n.saturating_sub(1))..(from + 100).min(n)].to_vec();
        w.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p99 = w[(w.len() * 99 / 100).min(w.len() - 1)];
        (median(&mut w.clone()), p99)
    };
    let windows: Vec<(usize, f64, f64)> = [0, n / 2, n.saturating_sub(100)]
        .into_iter()
        .map(|from| {
            let (p50, p99) = window(from);
            (from, p50, p99)
        })
        .collect();
    // Synchronize with every container running (a reconnect): each is checked and re-applied.
    let containers: Vec<Container> = (0..n)
        .map(|i| Container {
            id: format!("bench-c{i}"),
            pod_sandbox_id: pod.id.clone(),
            name: "app".into(),
            linux: Some(LinuxContainer { cgroups_path: format!("{prefix}/cg-{i}"), ..Default::default() }),
            ..Default::default()
        })
        .collect();
    let t = Instant::now();
    warden::nri::Handler::on_synchronize(&daemon, std::slice::from_ref(&pod), &containers)
        .map_err(|e| anyhow::anyhow!("synchronize: {e}"))?;
    let sync_ms = t.elapsed().as_secs_f64() * 1000.0;
    if daemon.confined().len() != n {
        bail!("synchronize left {} of {n} containers confined", daemon.confined().len());
    }
    let rss_kb = status_kb("self", "VmRSS:");
    let hwm_kb = status_kb("self", "VmHWM:");
    // How much of that is heap freed but kept by malloc (e.g. the kernel BTF parsed at load
    // time): what an explicit trim after loading would give back.
    unsafe { libc::malloc_trim(0) };
    let trimmed_kb = status_kb("self", "VmRSS:");
    let p50 = median(&mut us.clone());
    us.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p99 = us[(us.len() * 99 / 100).min(us.len() - 1)];
    println!(
        "{}",
        serde_json::json!({"idle_kb": idle_kb, "rss_kb": rss_kb, "hwm_kb": hwm_kb, "trimmed_kb": trimmed_kb, "total_ms": total_ms,
                           "p50_us": p50, "p99_us": p99, "first_us": us.first(), "confined": daemon.confined().len(),
                           "windows": windows, "sync_ms": sync_ms})
    );
    Ok(())
}

/// One pinned map: name, memlock bytes, key size, value size, max entries.
type MapMemory = (String, u64, u32, u32, u32);

/// memlock (bytes) of every map pinned under `pin/maps`, by name.
fn memlock(pin: &Path) -> Result<Vec<MapMemory>> {
    let mut out = Vec::new();
    let dir = pin.join("maps");
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let info = aya::maps::MapInfo::from_pin(e.path()).with_context(|| format!("opening {}", e.path().display()))?;
        let fd = info.fd()?;
        let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd()))?;
        let m = text
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no memlock in fdinfo")?;
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            m,
            info.key_size(),
            info.value_size(),
            info.max_entries(),
        ));
    }
    out.sort();
    Ok(out)
}

/// memlock (bytes) of one pinned map.
pub(crate) fn map_memlock(pin: &Path, name: &str) -> Result<u64> {
    memlock(pin)?.into_iter().find(|m| m.0 == name).map(|m| m.1).with_context(|| format!("map {name} not pinned"))
}

struct Cleanup {
    pin: PathBuf,
    dir: PathBuf,
    cgroups: Vec<PathBuf>,
    parent: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Release everything (links detach) before the cgroups go.
        let _ = warden::enforcer::reset(&self.pin);
        for c in &self.cgroups {
            let _ = std::fs::remove_dir(c);
        }
        let _ = std::fs::remove_dir(&self.parent);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn part(pin: &Path, cgroup2: &Path, n: usize) -> Result<()> {
    let tag = format!("warden-bench-scale-{}", std::process::id());
    let parent = cgroup2.join(&tag);
    let mut clean = Cleanup {
        pin: pin.to_path_buf(),
        dir: std::env::temp_dir().join(&tag),
        cgroups: Vec::new(),
        parent: parent.clone(),
    };
    std::fs::create_dir_all(clean.dir.join("profiles"))?;
    std::fs::write(clean.dir.join("profiles").join(format!("{PROFILE}.json")), profile_json(false))?;
    std::fs::create_dir_all(&parent)?;
    for i in 0..n {
        let c = parent.join(format!("cg-{i}"));
        std::fs::create_dir_all(&c)?;
        clean.cgroups.push(c);
    }
    // The maps exist (empty) once an enforcer opened the pin folder. An enforcer holds the
    // pin folder's lock, so this one is closed before the daemon side opens its own.
    drop(Enforcer::open(pin)?);
    let before = memlock(pin)?;

    eprintln!("scale: confining {n} cgroups through Daemon::confine");
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--scale-child",
            &pin.display().to_string(),
            &clean.dir.join("profiles").display().to_string(),
            &n.to_string(),
            &format!("/{tag}"),
        ])
        .env("WARDEN_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    let st = child.wait()?;
    if !st.success() {
        bail!("scale child failed: {st}");
    }
    let c: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("scale child said {line:?}"))?;
    let after = memlock(pin)?;
    let mut enf = Enforcer::open(pin)?;

    // Hot update: alternate two versions of the profile, each replace switches all n cgroups.
    let v = [
        warden::profile::compile(&warden::profile::Profile::from_json(&profile_json(true))?)?,
        warden::profile::compile(&warden::profile::Profile::from_json(&profile_json(false))?)?,
    ];
    let mut ms = Vec::new();
    for i in 0..6 {
        let t = Instant::now();
        let switched = enf.replace_profile(&v[i % 2])?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if switched != n {
            bail!("replace switched {switched} cgroups, expected {n}");
        }
    }
    let replace_ms = median(&mut ms.clone());

    let total = |v: &[(String, u64, u32, u32, u32)]| v.iter().map(|m| m.1).sum::<u64>();
    let (t0, t1) = (total(&before), total(&after));
    println!("### Scale: {n} confined cgroups\n");
    println!("{n} real cgroups confined through the daemon's StartContainer code path (`Daemon::confine`, in-process in a child: synthetic NRI pod and container records naming each cgroup; no containerd), profile = every syscall + 100 connect rules.\n");
    println!("| figure | measured | target |\n|---|---:|---:|");
    println!(
        "| daemon RSS, idle (after loading and verifying the programs) | {:.1} MB | |",
        c["idle_kb"].as_f64().unwrap_or(0.0) / 1024.0
    );
    println!(
        "| daemon RSS with {n} confined cgroups | {:.1} MB (peak {:.1} MB) | <= 40 MB |",
        c["rss_kb"].as_f64().unwrap_or(0.0) / 1024.0,
        c["hwm_kb"].as_f64().unwrap_or(0.0) / 1024.0
    );
    println!(
        "| the same after `malloc_trim(0)` (heap freed but kept by malloc) | {:.1} MB | |",
        c["trimmed_kb"].as_f64().unwrap_or(0.0) / 1024.0
    );
    println!(
        "| confine one cgroup (daemon path), p50 / p99 over {n} | {:.2} / {:.2} ms | |",
        c["p50_us"].as_f64().unwrap_or(0.0) / 1000.0,
        c["p99_us"].as_f64().unwrap_or(0.0) / 1000.0
    );
    for w in c["windows"].as_array().into_iter().flatten() {
        println!(
            "| confine one cgroup with {} confined already, p50 / p99 of the next 100 | {:.2} / {:.2} ms | |",
            w[0].as_u64().unwrap_or(0),
            w[1].as_f64().unwrap_or(0.0) / 1000.0,
            w[2].as_f64().unwrap_or(0.0) / 1000.0
        );
    }
    println!(
        "| NRI Synchronize with {n} containers running (each checked and re-applied) | {:.0} ms | < 1,000 ms |",
        c["sync_ms"].as_f64().unwrap_or(0.0)
    );
    println!(
        "| hot update: replace the profile of {n} cgroups (median of 6) | {replace_ms:.1} ms (runs: {}) | <= 100 ms |",
        ms.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "| kernel map memory of an idle node (all pinned maps: WARDEN_CGROUPS preallocated, the bucket arrays of the rest) | {:.1} MB | <= 16 MB (issue 19): {} |",
        t0 as f64 / 1048576.0,
        if t0 <= 16 << 20 { "met" } else { "MISSED" }
    );
    println!("| kernel map memory added by {n} cgroups + 1 profile | {:.1} KB | |", (t1 as f64 - t0 as f64) / 1024.0);
    println!();
    println!("Per map (memlock, bytes; key/value sizes):\n");
    println!("| map | key | value | max entries | memlock empty | memlock with {n} cgroups |\n|---|---:|---:|---:|---:|---:|");
    for (b, a) in before.iter().zip(&after) {
        println!("| {} | {} | {} | {} | {} | {} |", b.0, b.2, b.3, b.4, b.1, a.1);
    }
    println!();
    drop(enf);
    Ok(())
}
