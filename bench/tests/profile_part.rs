//! `warden-bench --part profile` (no root needed): it runs and prints its summary line. Not a
//! timed test: the figures are for the report, nothing is compared against a target here.
use std::process::Command;

#[test]
fn profile_part_prints_its_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_warden-bench"))
        .args(["--part", "profile", "--reps", "1"])
        .output()
        .expect("running warden-bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "warden-bench failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("### Profile validation"), "{text}");
    let line = text.lines().find(|l| l.starts_with("profile compile at limits: ")).expect("summary line");
    assert!(line.contains(" ms; 200,000-rule oversize refused in "), "{line}");
}
