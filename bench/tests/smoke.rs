//! Quick run of warden-bench (few iterations, < 1 minute): every native part must produce its
//! figures. Not a timed test: nothing is compared against a target here. Needs root (eBPF,
//! cgroups); with CI=true a missing prerequisite fails instead of skipping.
use std::process::Command;

fn can_run() -> bool {
    let why = if unsafe { libc::geteuid() } != 0 {
        Some("needs root")
    } else if !std::path::Path::new("/sys/fs/bpf").exists() {
        Some("no bpffs at /sys/fs/bpf")
    } else {
        None
    };
    match why {
        None => true,
        Some(w) if std::env::var("CI").as_deref() == Ok("true") => panic!("CI=true and warden-bench cannot run: {w}"),
        Some(w) => {
            eprintln!("SKIPPED: {w}");
            false
        }
    }
}

/// The numeric cells of the table rows under `### title` (up to the next section).
fn figures(out: &str, title: &str) -> Vec<f64> {
    let Some(start) = out.find(&format!("### {title}")) else { return Vec::new() };
    let body = &out[start + 4..];
    let body = &body[..body.find("### ").unwrap_or(body.len())];
    body.lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .flat_map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter_map(|c| c.split_whitespace().next()?.trim_end_matches('x').parse::<f64>().ok())
        .collect()
}

#[test]
fn every_native_part_produces_figures() {
    if !can_run() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_warden-bench"))
        .args([
            "--part",
            "syscalls,net,deny,scale",
            "--reps",
            "1",
            "--iters",
            "20000",
            "--net-iters",
            "300",
            "--cgroups",
            "10",
        ])
        .output()
        .expect("running warden-bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "warden-bench failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("machine: "), "no machine line:\n{text}");
    // 2 syscall ops x 6 configurations, each row: ns, two ratios. Then the added cost per call
    // over no hook, seccomp's and warden's: differences, which a noisy run may make zero or
    // negative (seen in CI: seccomp's -0 ns): present, not positive.
    let all_sys = figures(&text, "Syscalls");
    let added_at = text.find("Added per call over no hook").expect("the added-cost table");
    let sys = figures(&text[..added_at], "Syscalls");
    assert!(sys.len() >= 36 && sys.iter().all(|v| *v > 0.0), "syscall figures: {sys:?}\n{text}");
    assert!(all_sys.len() >= sys.len() + 2 * 2, "the added-cost table's figures: {all_sys:?}\n{text}");
    let net = figures(&text, "Network");
    assert!(net.len() >= 8 && net.iter().all(|v| *v > 0.0), "network figures: {net:?}\n{text}");
    // 2 operations x 4 configurations (unconfined, no list, 10 and 100,000 entries).
    let deny = figures(&text, "Deny lists");
    assert!(deny.len() >= 16 && deny.iter().all(|v| *v > 0.0), "deny-list figures: {deny:?}\n{text}");
    assert!(text.contains("100,000 CIDRs (random /16 to /32): parse "), "{text}");
    let scale = figures(&text, "Scale");
    assert!(scale.len() >= 8, "scale figures: {scale:?}\n{text}");
    assert!(text.contains("hot update: replace the profile of 10 cgroups"), "{text}");
}
