//! `warden-bench`: what warden costs, against no enforcement and against seccomp, measured side
//! by side in one run (configurations alternate within every repetition; medians reported).
//! Prints a markdown table. Needs root.
//!
//!   warden-bench [--reps 7] [--iters 300000]
//!
//! Each measurement runs in a child process (this binary with `--loop`) that is moved into the
//! right cgroup before it starts, so the parent's own setup never pollutes the figures.
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use warden::{
    cgroup,
    enforcer::{self, Enforcer, Mode},
    profile::{self, CompiledProfile, Profile},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Getppid,
    ReadZero,
    TcpConnect(u16),
    UdpSend(u16),
}

impl Op {
    fn arg(&self) -> String {
        match self {
            Op::Getppid => "getppid".into(),
            Op::ReadZero => "read".into(),
            Op::TcpConnect(p) => format!("connect:{p}"),
            Op::UdpSend(p) => format!("sendto:{p}"),
        }
    }
    fn parse(s: &str) -> Option<Op> {
        let (k, v) = s.split_once(':').unwrap_or((s, ""));
        match k {
            "getppid" => Some(Op::Getppid),
            "read" => Some(Op::ReadZero),
            "connect" => v.parse().ok().map(Op::TcpConnect),
            "sendto" => v.parse().ok().map(Op::UdpSend),
            _ => None,
        }
    }
    fn label(&self) -> &'static str {
        match self {
            Op::Getppid => "getppid",
            Op::ReadZero => "read /dev/zero, 1 byte",
            Op::TcpConnect(_) => "TCP connect+close, loopback",
            Op::UdpSend(_) => "UDP sendto, loopback",
        }
    }
}

// ---- the measured child ----------------------------------------------------------------------

/// Child side: wait for "go", optionally install seccomp, run the loop, print ns/op.
fn child(op: Op, iters: u64, seccomp: bool) -> Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if seccomp {
        install_seccomp_allow_all()?;
    }
    let zero = std::fs::File::open("/dev/zero")?;
    use std::os::fd::AsRawFd as _;
    let zfd = zero.as_raw_fd();
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    let mut buf = [0u8; 1];
    let start = Instant::now();
    for _ in 0..iters {
        match op {
            Op::Getppid => unsafe {
                libc::syscall(libc::SYS_getppid);
            },
            Op::ReadZero => unsafe {
                libc::read(zfd, buf.as_mut_ptr() as *mut _, 1);
            },
            Op::TcpConnect(p) => {
                let _ = std::net::TcpStream::connect(("127.0.0.1", p));
            }
            Op::UdpSend(p) => {
                let _ = udp.send_to(b"x", ("127.0.0.1", p));
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    println!("{ns:.1}");
    Ok(())
}

/// A seccomp filter allowing every syscall of the host table: the same allow-list warden's
/// "everything allowed" profile holds, checked by the kernel's own seccomp.
fn install_seccomp_allow_all() -> Result<()> {
    use seccompiler::{SeccompAction, SeccompFilter, TargetArch};
    let rules = syscalls::Sysno::iter().map(|s| (s.id() as i64, vec![])).collect();
    let arch: TargetArch = std::env::consts::ARCH.try_into().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let filter = SeccompFilter::new(rules, SeccompAction::KillProcess, SeccompAction::Allow, arch)
        .map_err(|e| anyhow::anyhow!("seccomp filter: {e}"))?;
    let prog: seccompiler::BpfProgram = filter.try_into().map_err(|e| anyhow::anyhow!("seccomp compile: {e:?}"))?;
    seccompiler::apply_filter(&prog).map_err(|e| anyhow::anyhow!("seccomp apply: {e}"))?;
    Ok(())
}

/// Parent side: spawn a child, move it into `cg` (if any), start it, read its figure.
fn measure(op: Op, iters: u64, cg: Option<&Path>, seccomp: bool) -> Result<f64> {
    let mut c = Command::new(std::env::current_exe()?);
    c.args(["--loop", &op.arg(), "--iters", &iters.to_string()]);
    if seccomp {
        c.arg("--seccomp");
    }
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    if let Some(cg) = cg {
        std::fs::write(cg.join("cgroup.procs"), child.id().to_string())?;
    }
    writeln!(child.stdin.as_mut().unwrap(), "go")?;
    let mut out = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut out)?;
    let st = child.wait()?;
    if !st.success() {
        bail!("measurement child failed: {st}");
    }
    out.trim().parse().with_context(|| format!("child said {out:?}"))
}

// ---- configurations --------------------------------------------------------------------------

fn compiled(json: &str) -> Result<CompiledProfile> {
    profile::compile(&Profile::from_json(json)?)
}

fn all_syscalls() -> Result<CompiledProfile> {
    let allow: Vec<&str> = syscalls::Sysno::iter().map(|s| s.name()).collect();
    compiled(&serde_json::json!({"name":"bench-all","syscalls":{"allow":allow}}).to_string())
}

/// 100 connect rules: 99 other /32s plus the loopback target.
fn net100(port: u16, udp_port: u16) -> Result<CompiledProfile> {
    let mut rules: Vec<serde_json::Value> = (0..98)
        .map(|i| serde_json::json!({"cidr": format!("10.{}.{}.0/24", i / 200, i % 200), "ports": [443, "8000-8100"], "protocol": "tcp"}))
        .collect();
    rules.push(serde_json::json!({"cidr":"127.0.0.1/32","ports":[port],"protocol":"tcp"}));
    rules.push(serde_json::json!({"cidr":"127.0.0.1/32","ports":[udp_port],"protocol":"udp"}));
    compiled(&serde_json::json!({"name":"bench-net100","network":{"connect":rules}}).to_string())
}

struct Cgroups {
    confined: PathBuf,
    other: PathBuf,
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.confined);
        let _ = std::fs::remove_dir(&self.other);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let iters: u64 = get("--iters").map(|v| v.parse()).transpose()?.unwrap_or(300_000);
    if let Some(op) = get("--loop") {
        return child(Op::parse(&op).context("bad --loop")?, iters, args.iter().any(|a| a == "--seccomp"));
    }
    let reps: usize = get("--reps").map(|v| v.parse()).transpose()?.unwrap_or(7);
    if unsafe { libc::geteuid() } != 0 {
        bail!("warden-bench needs root (it loads eBPF programs and makes cgroups)");
    }

    let pin = PathBuf::from(format!("/sys/fs/bpf/warden-bench-{}", std::process::id()));
    struct PinGuard(PathBuf);
    impl Drop for PinGuard {
        fn drop(&mut self) {
            let _ = enforcer::reset(&self.0);
        }
    }
    let _pin_guard = PinGuard(pin.clone());
    let root = cgroup::cgroup2_mount()?;
    let cgs = Cgroups {
        confined: root.join(format!("warden-bench-confined-{}", std::process::id())),
        other: root.join(format!("warden-bench-other-{}", std::process::id())),
    };
    std::fs::create_dir_all(&cgs.confined)?;
    std::fs::create_dir_all(&cgs.other)?;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let tport = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let sink = UdpSocket::bind("127.0.0.1:0")?;
    let uport = sink.local_addr()?.port();

    let mut enf = Enforcer::open(&pin)?;
    let all = all_syscalls()?;
    let empty = compiled(r#"{"name":"bench-empty"}"#)?;
    let net = net100(tport, uport)?;
    let confined_id = cgroup::cgroup_id(&cgs.confined)?;
    let other_id = cgroup::cgroup_id(&cgs.other)?;

    // (label, ops) for each configuration; setup/teardown around each measurement.
    let syscall_ops = [Op::Getppid, Op::ReadZero];
    let configs: &[&str] = &[
        "no warden hook attached",
        "warden loaded, no syscall policy anywhere",
        "no-op sys_enter program (calibration)",
        "unconfined, another cgroup has a syscall policy",
        "confined, every syscall allowed",
        "seccomp filter, same allow-list, no warden",
    ];
    let mut sys: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); syscall_ops.len()]; configs.len()];
    let net_ops = [Op::TcpConnect(tport), Op::UdpSend(uport)];
    let net_configs = ["unconfined", "confined, 100-rule network profile"];
    let mut netr: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); net_ops.len()]; net_configs.len()];
    let net_iters = (iters / 10).max(1000);

    for rep in 0..reps {
        eprintln!("repetition {}/{reps}", rep + 1);
        for (ci, _) in configs.iter().enumerate() {
            let mut noop = None;
            let (cg, seccomp): (Option<&Path>, bool) = match ci {
                0 => (None, false),
                1 => {
                    enf.apply(&cgs.other, &empty, Mode::Enforce)?;
                    (None, false)
                }
                2 => {
                    noop = Some(enf.attach_noop_sys_enter()?);
                    (None, false)
                }
                3 => {
                    enf.apply(&cgs.other, &all, Mode::Enforce)?;
                    (None, false)
                }
                4 => {
                    enf.apply(&cgs.confined, &all, Mode::Enforce)?;
                    (Some(cgs.confined.as_path()), false)
                }
                _ => (None, true),
            };
            for (oi, op) in syscall_ops.iter().enumerate() {
                sys[ci][oi].push(measure(*op, iters, cg, seccomp)?);
            }
            drop(noop);
            enf.release(other_id)?;
            enf.release(confined_id)?;
        }
        for (ci, _) in net_configs.iter().enumerate() {
            let cg = if ci == 1 {
                enf.apply(&cgs.confined, &net, Mode::Enforce)?;
                Some(cgs.confined.as_path())
            } else {
                None
            };
            for (oi, op) in net_ops.iter().enumerate() {
                netr[ci][oi].push(measure(*op, net_iters, cg, false)?);
            }
            enf.release(confined_id)?;
        }
    }

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    println!("machine: {} CPUs, {cpu}; kernel {}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), kernel.trim());
    println!("{reps} repetitions, configurations alternating within each; medians. Syscall loops: {iters} calls; network loops: {net_iters}.\n");
    println!("| operation | configuration | ns/op (median) | vs. no hook | vs. no-op hook |");
    println!("|---|---|---:|---:|---:|");
    for (oi, op) in syscall_ops.iter().enumerate() {
        let base = median(&mut sys[0][oi].clone());
        let noop = median(&mut sys[2][oi].clone());
        for (ci, label) in configs.iter().enumerate() {
            let m = median(&mut sys[ci][oi].clone());
            println!("| {} | {label} | {m:.0} | {:.2}x | {:.2}x |", op.label(), m / base, m / noop);
        }
    }
    println!("\n| operation | configuration | ns/op (median) | vs. unconfined |\n|---|---|---:|---:|");
    for (oi, op) in net_ops.iter().enumerate() {
        let base = median(&mut netr[0][oi].clone());
        for (ci, label) in net_configs.iter().enumerate() {
            let m = median(&mut netr[ci][oi].clone());
            println!("| {} | {label} | {m:.0} | {:.2}x |", op.label(), m / base);
        }
    }
    Ok(())
}
