//! File rules (BPF-LSM): open+close and stat loops, unconfined vs. confined with a 50-rule
//! file profile. Needs a kernel where BPF-LSM runs; scripts/bench.sh runs this part inside the
//! VM harness (tests/vm/run), where TCG emulation makes absolute figures slow: read ratios.
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use warden::enforcer::{Enforcer, Mode};

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
    // 50 rules: 48 directories elsewhere, one exact file, and the tree (read-only).
    let mut rules: Vec<serde_json::Value> =
        (0..48).map(|i| serde_json::json!({"path": format!("/opt/bench-{i}/"), "access": "r"})).collect();
    rules.push(serde_json::json!({"path": "/etc/hostname", "access": "r"}));
    rules.push(serde_json::json!({"path": format!("{}/", tree.0.display()), "access": "r"}));
    let profile = compiled(&serde_json::json!({"name": "bench-files50", "files": rules}).to_string())?;
    let confined_id = warden::cgroup::cgroup_id(&cgs.confined)?;
    let other_id = warden::cgroup::cgroup_id(&cgs.other)?;
    let f = file.display().to_string();
    let ops = [Op::OpenClose(f.clone()), Op::Stat(f)];
    let configs = [
        "no LSM program attached",
        "unconfined, LSM programs attached for another cgroup",
        "confined, 50-rule file profile",
    ];
    let mut r: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); ops.len()]; configs.len()];
    // "No LSM program" is measured in its own block first; then the LSM programs are attached
    // once (for the other cgroup) and the two attached configurations alternate. Re-attaching
    // right after a detach fails with EBUSY on Debian's 7.2 kernel (the old trampoline is
    // still being torn down), so the part does not cycle attach/detach.
    for rep in 0..reps {
        eprintln!("files: no LSM program, repetition {}/{reps}", rep + 1);
        for (oi, op) in ops.iter().enumerate() {
            r[0][oi].push(measure(op.clone(), iters, None, false)?);
        }
    }
    enf.apply(&cgs.other, &profile, Mode::Enforce)?;
    for rep in 0..reps {
        eprintln!("files: LSM attached, repetition {}/{reps}", rep + 1);
        let order: Vec<usize> = if rep % 2 == 0 { vec![1, 2] } else { vec![2, 1] };
        for ci in order {
            let cg = if ci == 2 {
                enf.apply(&cgs.confined, &profile, Mode::Enforce)?;
                Some(cgs.confined.as_path())
            } else {
                None
            };
            for (oi, op) in ops.iter().enumerate() {
                r[ci][oi].push(measure(op.clone(), iters, cg, false)?);
            }
            if ci == 2 {
                enf.release(confined_id)?;
            }
        }
    }
    enf.release(other_id)?;
    println!("### File rules (BPF-LSM)\n\n{reps} repetitions; \"no LSM program\" in a block of its own first, then the two attached configurations alternating (see the source for why); each run times {iters} operations one by one and gives its median; medians over repetitions. The file is 6 directories below its rule; `stat` is not judged by any warden hook (shown to prove it pays nothing).\n");
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
