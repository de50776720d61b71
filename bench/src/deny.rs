//! Node-wide deny lists (issue 22): how long 100,000 CIDRs take to parse and to be in force,
//! the kernel memory they take, and what they add to a confined connect and UDP send, against
//! the same 100-rule profile without lists and with 10 entries (one LPM lookup either way).
use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use warden::{
    cgroup,
    denylist::{compile, parse, List},
    enforcer::{deny::DenyItem, Enforcer, Mode},
};

use crate::{loopback_targets, measure, median, net100, scale, Cgroups, Op};

/// `n` distinct CIDRs, /16 to /32, spread over the IPv4 space by a fixed LCG (none covering
/// loopback or 0/8), as list text.
fn feed(n: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut seen = std::collections::HashSet::new();
    let mut out = String::new();
    while seen.len() < n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let a = (x >> 32) as u32;
        let len = 16 + ((x >> 8) % 17) as u32;
        let first = a >> 24;
        if first == 127 || first == 0 || first >= 224 {
            continue;
        }
        let net = a & (u32::MAX << (32 - len));
        if seen.insert((net, len)) {
            let b = net.to_be_bytes();
            out.push_str(&format!("{}.{}.{}.{}/{len}\n", b[0], b[1], b[2], b[3]));
        }
    }
    out
}

fn items(text: &str) -> Result<Vec<DenyItem>> {
    let lists = BTreeMap::from([("feed".to_string(), List { entries: parse(text)?, version: String::new() })]);
    Ok(compile(&lists, &BTreeMap::from([("feed".to_string(), 0)])))
}

pub(crate) fn part(enf: &mut Enforcer, cgs: &Cgroups, reps: usize, net_iters: u64) -> Result<()> {
    let (tport, sink) = loopback_targets()?;
    let uport = sink.local_addr()?.port();
    let net = net100(tport, uport)?;
    let confined_id = cgroup::cgroup_id(&cgs.confined)?;

    // Load: parse and install 100,000 CIDRs (from nothing in force), each repetition.
    let big_text = feed(100_000);
    let small = items(&feed(10))?;
    let mut parse_ms = Vec::new();
    let mut load_ms = Vec::new();
    let mut big = Vec::new();
    for _ in 0..reps.max(3) {
        enf.install_deny_lists(&[], &[])?;
        let t = Instant::now();
        big = items(&big_text)?;
        parse_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        load_ms.push(enf.install_deny_lists(&big, &[(0, "feed".into())])?.load.as_secs_f64() * 1000.0);
    }
    let mem_big = scale::map_memlock(enf.pin_dir(), "WARDEN_DENY")?;
    enf.install_deny_lists(&small, &[(0, "feed".into())])?;
    let mem_small = scale::map_memlock(enf.pin_dir(), "WARDEN_DENY")?;
    enf.install_deny_lists(&[], &[])?;
    let mem_empty = scale::map_memlock(enf.pin_dir(), "WARDEN_DENY")?;

    // Per operation: the same confined cgroup and profile, lists switched between measurements
    // (configuration order rotated every repetition).
    let ops = [Op::TcpConnect(tport), Op::UdpSend(uport)];
    let configs = [
        "unconfined",
        "confined, 100-rule profile, no deny list",
        "confined, + 10 deny entries",
        "confined, + 100,000 deny entries",
    ];
    let mut r: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); ops.len()]; configs.len()];
    enf.apply(&cgs.confined, &net, Mode::Enforce)?;
    for rep in 0..reps {
        eprintln!("deny: repetition {}/{reps}", rep + 1);
        for k in 0..configs.len() {
            let ci = (k + rep) % configs.len();
            match ci {
                2 => enf.install_deny_lists(&small, &[(0, "feed".into())])?,
                3 => enf.install_deny_lists(&big, &[(0, "feed".into())])?,
                _ => enf.install_deny_lists(&[], &[])?,
            };
            for (oi, op) in ops.iter().enumerate() {
                let cg = (ci != 0).then_some(cgs.confined.as_path());
                r[ci][oi].push(measure(op.clone(), net_iters, cg, false)?);
            }
        }
    }
    enf.install_deny_lists(&[], &[])?;
    enf.release(confined_id)?;

    println!("### Deny lists\n\n100,000 CIDRs (random /16 to /32): parse {:.0} ms, written and switched in force {:.0} ms (medians of {} loads from an empty trie; target: under 1 s together). Kernel memory of `WARDEN_DENY` (memlock): empty {} KiB, 10 entries {} KiB, 100,000 entries {:.1} MiB ({} trie entries).\n",
        median(&mut parse_ms), median(&mut load_ms), load_ms.len(), mem_empty / 1024, mem_small / 1024, mem_big as f64 / 1048576.0, big.len());
    println!("{reps} repetitions, configurations rotated; each run times {net_iters} operations one by one and gives its median; the table has the median over repetitions. Target: the lists add at most 2% to a confined connect, and 100,000 entries cost what 10 do.\n");
    println!("| operation | configuration | ns/op (median) | vs. no deny list |\n|---|---|---:|---:|");
    for (oi, op) in ops.iter().enumerate() {
        let base = median(&mut r[1][oi].clone());
        for (ci, label) in configs.iter().enumerate() {
            let m = median(&mut r[ci][oi].clone());
            println!("| {} | {label} | {m:.0} | {:.3}x |", op.label(), m / base);
        }
    }
    for (oi, op) in ops.iter().enumerate() {
        for ci in [2, 3] {
            let v: Vec<String> = r[ci][oi].iter().zip(&r[1][oi]).map(|(c, n)| format!("{:.3}", c / n)).collect();
            println!("\n{}, {} / no deny list per repetition: {}", op.label(), configs[ci], v.join(", "));
        }
    }
    println!();
    Ok(())
}
