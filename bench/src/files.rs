//! File rules (BPF-LSM): open+close and stat loops, unconfined vs. confined with a 50-rule
//! file profile. Needs a kernel where BPF-LSM runs; scripts/bench.sh runs this part inside the
//! VM harness (tests/vm/run), where TCG emulation makes absolute figures slow: read ratios.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use warden::enforcer::{Enforcer, Mode};
use warden::profile::CompiledProfile;

use crate::{compiled, measure, median, Cgroups, Op};

struct Tree(PathBuf);
impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn part(enf: &mut Enforcer, cgs: &Cgroups, reps: usize, iters: u64) -> Result<()> {
    enf.lsm_status().map_err(|why| {
        anyhow!("the files part needs BPF-LSM, which this kernel lacks: {why} (scripts/bench.sh runs it in a VM)")
    })?;
    let tree = Tree(std::env::temp_dir().join(format!("warden-bench-files-{}", std::process::id())));
    // The file sits 6 levels below its directory rule: the path the kernel resolves is long.
    let deep = tree.0.join("a/b/c/d/e/f");
    std::fs::create_dir_all(&deep)?;
    let file = deep.join("data");
    std::fs::write(&file, "x")?;
    // n rules: n-2 directories elsewhere, one exact file, and the tree (read-only).
    let files_profile = |n: usize| {
        let mut rules: Vec<serde_json::Value> =
            (0..n - 2).map(|i| serde_json::json!({"path": format!("/opt/bench-{i}/"), "access": "r"})).collect();
        rules.push(serde_json::json!({"path": "/etc/hostname", "access": "r"}));
        rules.push(serde_json::json!({"path": format!("{}/", tree.0.display()), "access": "r"}));
        compiled(&serde_json::json!({"name": format!("bench-files{n}"), "files": rules}).to_string())
    };
    let profile = files_profile(50)?;
    // The per-profile limit (docs/profiles.md): a path is one trie lookup whatever the count.
    let large = files_profile(warden::profile::files::MAX_FILE_RULES)?;
    let confined_id = warden::cgroup::cgroup_id(&cgs.confined)?;
    let other_id = warden::cgroup::cgroup_id(&cgs.other)?;
    let f = file.display().to_string();
    let ops = [Op::OpenClose(f.clone()), Op::Stat(f)];
    let configs = [
        "no LSM program attached",
        "unconfined, LSM programs attached for another cgroup",
        "confined, 50-rule file profile",
        "confined, file profile at the rule limit",
    ];
    let mut r: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); ops.len()]; configs.len()];
    // The configurations alternate within every repetition, so slow drift of the VM
    // (TCG, a shared host) spreads over all of them instead of landing on one block. Between
    // repetitions the LSM programs are detached (the last user released) and attached again;
    // on Debian's 7.2 kernel a re-attach right after a detach can fail with EBUSY while the old
    // trampoline is torn down, so the benchmark retries until it attaches and reports the wait.
    // The product never cycles like this: it keeps hooks attached for a grace period.
    let mut retries: Vec<(u32, Duration)> = Vec::new();
    for rep in 0..reps {
        eprintln!("files: repetition {}/{reps}", rep + 1);
        for (oi, op) in ops.iter().enumerate() {
            r[0][oi].push(measure(op.clone(), iters, None, false)?);
        }
        retries.push(apply_retrying(enf, &cgs.other, &profile)?);
        // The attached configurations in a rotating order.
        let mut order = vec![1, 2, 3];
        order.rotate_left(rep % 3);
        for ci in order {
            let cg = match ci {
                2 | 3 => {
                    enf.apply(&cgs.confined, if ci == 2 { &profile } else { &large }, Mode::Enforce)?;
                    Some(cgs.confined.as_path())
                }
                _ => None,
            };
            for (oi, op) in ops.iter().enumerate() {
                r[ci][oi].push(measure(op.clone(), iters, cg, false)?);
            }
            if cg.is_some() {
                enf.release(confined_id)?;
            }
        }
        // The last user: the LSM programs detach.
        enf.release(other_id)?;
    }
    let waited = retries.iter().filter(|(n, _)| *n > 0).count();
    let longest = retries.iter().filter(|(n, _)| *n > 0).map(|(_, d)| *d).max().unwrap_or_default();
    println!("### File rules (BPF-LSM)\n\n{reps} repetitions, the configurations alternating within each (the attached ones in a rotating order; the LSM programs detached and attached again between repetitions; a re-attach was refused at first and retried in {waited} of them, at most {} ms in all); each run times {iters} operations one by one and gives its median; medians over repetitions. The file is 6 directories below its rule; `stat` is not judged by any warden hook (shown to prove it pays nothing).\n", longest.as_millis());
    println!("| operation | configuration | ns/op (median) | vs. no LSM program |\n|---|---|---:|---:|");
    for (oi, op) in ops.iter().enumerate() {
        let base = median(&mut r[0][oi].clone());
        for (ci, label) in configs.iter().enumerate() {
            let m = median(&mut r[ci][oi].clone());
            println!("| {} | {label} | {m:.0} | {:.2}x |", op.label(), m / base);
        }
    }
    println!();
    Ok(())
}

/// `enf.apply` for the cgroup that brings the LSM programs back, retried while the kernel
/// refuses the re-attach (EBUSY while a just-detached trampoline is torn down, seen on 7.2).
/// Returns how many attempts were refused and how long it took; gives up after 60 s.
fn apply_retrying(enf: &mut Enforcer, cg: &std::path::Path, profile: &CompiledProfile) -> Result<(u32, Duration)> {
    let t0 = Instant::now();
    let mut refused = 0;
    loop {
        match enf.apply(cg, profile, Mode::Enforce) {
            Ok(_) => return Ok((refused, t0.elapsed())),
            Err(e) if t0.elapsed() < Duration::from_secs(60) => {
                refused += 1;
                eprintln!("files: re-attach refused ({e:#}); retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e.context("re-attaching the LSM programs for 60 s")),
        }
    }
}
