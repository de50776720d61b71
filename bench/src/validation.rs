//! Profile validation at the size limits: what `warden profile validate` costs on a profile at
//! every per-profile limit at once (it must stay well under a second), and how fast an oversize
//! profile is refused (the limits are checked on the counts before any per-rule work). Each
//! figure times the validate path: read and parse the file, resolve `extends`, check, compile.
//! Needs no root and no kernel support.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use warden::profile::{
    self,
    compile::{MAX_CONNECT_RULES, MAX_PORT_ENTRIES, MAX_PORT_RULES},
    files::MAX_FILE_RULES,
    resolve::{self, SearchPath},
};

use crate::median;

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 32 disjoint, non-adjacent port ranges (`MAX_PORT_RULES`): singles and pairs.
fn full_port_table() -> Vec<serde_json::Value> {
    (0..MAX_PORT_RULES as u32)
        .map(|k| {
            let lo = 1000 + 3 * k;
            if k % 2 == 0 {
                serde_json::json!(format!("{lo}-{}", lo + 1))
            } else {
                serde_json::json!(lo)
            }
        })
        .collect()
}

/// Every per-profile limit at once: `MAX_FILE_RULES` file rules (directories with exact files
/// below them), `MAX_CONNECT_RULES` connect rules with distinct CIDRs (IPv4 /24s and IPv6
/// /64s) each with a full port table, a full bind table, every host syscall.
fn at_limits() -> serde_json::Value {
    let files: Vec<serde_json::Value> = (0..MAX_FILE_RULES)
        .map(|i| {
            if i % 4 == 0 {
                serde_json::json!({"path": format!("/srv/d{}/", i / 4), "access": "r"})
            } else {
                serde_json::json!({"path": format!("/srv/d{}/f{i}", i / 4), "access": "rw"})
            }
        })
        .collect();
    let connect: Vec<serde_json::Value> = (0..MAX_CONNECT_RULES)
        .map(|i| {
            let cidr = if i % 2 == 0 { format!("10.{}.{}.0/24", i >> 8, i & 255) } else { format!("fd00:{i:x}::/64") };
            serde_json::json!({"cidr": cidr, "ports": full_port_table(), "protocol": "tcp"})
        })
        .collect();
    let allow: Vec<&str> = syscalls::Sysno::iter().map(|s| s.name()).collect();
    serde_json::json!({
        "name": "limits",
        "syscalls": {"allow": allow},
        "files": files,
        "network": {"connect": connect, "bind": [{"ports": full_port_table(), "protocol": "tcp"}]},
    })
}

/// `n` rules of the kind `section` names (`files` or `connect`).
fn oversize(section: &str, n: usize) -> serde_json::Value {
    match section {
        "files" => serde_json::json!({
            "name": "files-oversize",
            "files": (0..n).map(|i| serde_json::json!({"path": format!("/data/f{i}"), "access": "r"})).collect::<Vec<_>>(),
        }),
        _ => serde_json::json!({
            "name": "connect-oversize",
            "network": {"connect": (0..n).map(|i| serde_json::json!({
                "cidr": format!("10.{}.{}.{}/32", i >> 16, (i >> 8) & 255, i & 255), "ports": [443], "protocol": "tcp"
            })).collect::<Vec<_>>()},
        }),
    }
}

/// The validate path on one file: Ok(ms, error count).
fn validate(file: &Path, search: &SearchPath) -> Result<(f64, usize)> {
    let t = Instant::now();
    let loaded = resolve::load_file(file, search)?;
    let mut errors = loaded.errors().count();
    if errors == 0 {
        errors += profile::compile(&loaded.profile).is_err() as usize;
    }
    Ok((t.elapsed().as_secs_f64() * 1e3, errors))
}

pub fn part(reps: usize) -> Result<()> {
    let dir = Dir(std::env::temp_dir().join(format!("warden-bench-profile-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let search = SearchPath::new(vec![dir.0.clone()]);
    let cases: Vec<(String, serde_json::Value, bool)> = vec![
        (
            format!(
                "at every limit: {MAX_FILE_RULES} files rules, {MAX_CONNECT_RULES} connect rules (distinct CIDRs, {MAX_PORT_RULES} port ranges each), {MAX_PORT_RULES} bind ranges, every syscall"
            ),
            at_limits(),
            true,
        ),
        ("200,000 files rules (oversize)".into(), oversize("files", 200_000), false),
        ("200,000 connect rules (oversize)".into(), oversize("connect", 200_000), false),
        (format!("20,000 connect rules (oversize, limit {MAX_CONNECT_RULES})"), oversize("connect", 20_000), false),
    ];
    let mut rows = Vec::new();
    for (i, (label, json, valid)) in cases.iter().enumerate() {
        let file = dir.0.join(format!("case{i}.json"));
        let text = json.to_string();
        std::fs::write(&file, &text)?;
        let mut ms = Vec::with_capacity(reps);
        for _ in 0..reps {
            let (t, errors) = validate(&file, &search)?;
            if (errors == 0) != *valid {
                bail!("{label}: {errors} error(s), expected it {}", if *valid { "valid" } else { "refused" });
            }
            ms.push(t);
        }
        rows.push((label.clone(), text.len(), *valid, median(&mut ms)));
    }
    println!("### Profile validation\n\n`warden profile validate`'s path (read, parse, resolve, check, compile) per profile file; median of {reps} runs. Size limits are checked on the counts before any rule is looked at (port entries: at most {MAX_PORT_ENTRIES} per list).\n");
    println!("| profile | file size | result | ms (median) |\n|---|---:|---|---:|");
    for (label, size, valid, ms) in &rows {
        let result = if *valid { "valid" } else { "refused (limit)" };
        println!("| {label} | {:.1} MB | {result} | {ms:.1} |", *size as f64 / 1e6);
    }
    println!(
        "\nprofile compile at limits: {:.1} ms; 200,000-rule oversize refused in {:.1} ms\n",
        rows[0].3, rows[1].3
    );
    Ok(())
}
