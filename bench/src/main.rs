//! `warden-bench`: what warden costs, against no enforcement and against seccomp, measured side
//! by side in one run (configurations alternate within every repetition; medians reported).
//! Prints a markdown table. Needs root, except `--part profile` (profile validation at the limits).
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

mod deny;
mod files;
mod scale;
mod trampoline;
mod validation;
use warden::{
    cgroup,
    enforcer::{self, Enforcer, Mode},
    profile::{self, CompiledProfile, Profile},
};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Getppid,
    ReadZero,
    TcpConnect(u16),
    UdpSend(u16),
    OpenClose(String),
    Stat(String),
}

impl Op {
    fn arg(&self) -> String {
        match self {
            Op::Getppid => "getppid".into(),
            Op::ReadZero => "read".into(),
            Op::TcpConnect(p) => format!("connect:{p}"),
            Op::UdpSend(p) => format!("sendto:{p}"),
            Op::OpenClose(f) => format!("open:{f}"),
            Op::Stat(f) => format!("stat:{f}"),
        }
    }
    fn parse(s: &str) -> Option<Op> {
        let (k, v) = s.split_once(':').unwrap_or((s, ""));
        match k {
            "getppid" => Some(Op::Getppid),
            "read" => Some(Op::ReadZero),
            "connect" => v.parse().ok().map(Op::TcpConnect),
            "sendto" => v.parse().ok().map(Op::UdpSend),
            "open" => Some(Op::OpenClose(v.into())),
            "stat" => Some(Op::Stat(v.into())),
            _ => None,
        }
    }
    fn label(&self) -> &'static str {
        match self {
            Op::Getppid => "getppid",
            Op::ReadZero => "read /dev/zero, 1 byte",
            Op::TcpConnect(_) => "TCP connect+close, loopback",
            Op::UdpSend(_) => "UDP sendto, loopback",
            Op::OpenClose(_) => "open+close (O_RDONLY)",
            Op::Stat(_) => "stat",
        }
    }
}

// ---- the measured child ----------------------------------------------------------------------

/// Child side: wait for "go", optionally install seccomp, run the loop, print ns/op.
/// Syscall loops print the mean (one clock read around the whole loop: the calls are ~200 ns).
/// Network and file loops time every operation and print the median: a ~5-100 us operation
/// dwarfs the clock read, and the median ignores the rare outlier (a SYN retransmit, a
/// reschedule) that made the old mean of TCP connect untrustworthy.
fn child(op: Op, iters: u64, seccomp: bool) -> Result<()> {
    // Started (the loader has mapped every library): the parent may move this process into
    // the confined cgroup now. Before this line, a file-rule profile would judge ld.so's opens.
    println!("ready");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if seccomp {
        install_seccomp_allow_all()?;
    }
    use std::os::fd::AsRawFd as _;
    // Only what this op needs: a confined file-rule child may not open anything else.
    let zero = if op == Op::ReadZero { Some(std::fs::File::open("/dev/zero")?) } else { None };
    let zfd = zero.as_ref().map(|z| z.as_raw_fd()).unwrap_or(-1);
    let udp = if matches!(op, Op::UdpSend(_)) { Some(UdpSocket::bind("127.0.0.1:0")?) } else { None };
    let mut buf = [0u8; 1];
    if matches!(op, Op::Getppid | Op::ReadZero) {
        let start = Instant::now();
        for _ in 0..iters {
            match op {
                Op::Getppid => unsafe {
                    libc::syscall(libc::SYS_getppid);
                },
                _ => unsafe {
                    libc::read(zfd, buf.as_mut_ptr() as *mut _, 1);
                },
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / iters as f64;
        println!("{ns:.1}");
        return Ok(());
    }
    let path = match &op {
        Op::OpenClose(p) | Op::Stat(p) => Some(std::ffi::CString::new(p.as_str())?),
        _ => None,
    };
    let mut times = Vec::with_capacity(iters as usize);
    let mut failures = 0u64;
    for _ in 0..iters {
        let t = Instant::now();
        let ok = match &op {
            Op::TcpConnect(p) => tcp_connect_close(*p),
            Op::UdpSend(p) => udp.as_ref().unwrap().send_to(b"x", ("127.0.0.1", *p)).is_ok(),
            Op::OpenClose(_) => unsafe {
                let fd = libc::open(path.as_ref().unwrap().as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                fd >= 0 && libc::close(fd) == 0
            },
            Op::Stat(_) => unsafe {
                let mut st: libc::stat = std::mem::zeroed();
                libc::stat(path.as_ref().unwrap().as_ptr(), &mut st) == 0
            },
            _ => unreachable!(),
        };
        times.push(t.elapsed().as_nanos() as f64);
        failures += !ok as u64;
    }
    // A failing operation measures an error path, not the allowed one: refuse the figure.
    if failures > 0 {
        bail!("{failures} of {iters} {} operations failed", op.label());
    }
    println!("{:.1}", median(&mut times));
    Ok(())
}

/// Loopback TCP connect, then close with RST (SO_LINGER 0): thousands of connect+close in
/// TIME_WAIT would exhaust the ephemeral ports and measure the port search, not warden.
fn tcp_connect_close(port: u16) -> bool {
    match std::net::TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => {
            use std::os::fd::AsRawFd as _;
            let l = libc::linger { l_onoff: 1, l_linger: 0 };
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &l as *const _ as *const _,
                    std::mem::size_of::<libc::linger>() as u32,
                )
            };
            true
        }
        Err(_) => false,
    }
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
pub(crate) fn measure(op: Op, iters: u64, cg: Option<&Path>, seccomp: bool) -> Result<f64> {
    let mut c = Command::new(std::env::current_exe()?);
    c.args(["--loop", &op.arg(), "--iters", &iters.to_string()]);
    if seccomp {
        c.arg("--seccomp");
    }
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    stdout.read_line(&mut out)?;
    if out.trim() != "ready" {
        bail!("measurement child said {out:?} instead of ready");
    }
    if let Some(cg) = cg {
        std::fs::write(cg.join("cgroup.procs"), child.id().to_string())?;
    }
    writeln!(child.stdin.as_mut().unwrap(), "go")?;
    out.clear();
    stdout.read_line(&mut out)?;
    let st = child.wait()?;
    if !st.success() {
        bail!("measurement child failed: {st}");
    }
    out.trim().parse().with_context(|| format!("child said {out:?}"))
}

// ---- configurations --------------------------------------------------------------------------

pub(crate) fn compiled(json: &str) -> Result<CompiledProfile> {
    profile::compile(&Profile::from_json(json)?)
}

pub(crate) fn all_syscalls() -> Result<CompiledProfile> {
    let allow: Vec<&str> = syscalls::Sysno::iter().map(|s| s.name()).collect();
    compiled(&serde_json::json!({"name":"bench-all","syscalls":{"allow":allow}}).to_string())
}

/// 100 connect rules: 99 other /32s plus the loopback target.
pub(crate) fn net100(port: u16, udp_port: u16) -> Result<CompiledProfile> {
    let mut rules: Vec<serde_json::Value> = (0..98)
        .map(|i| serde_json::json!({"cidr": format!("10.{}.{}.0/24", i / 200, i % 200), "ports": [443, "8000-8100"], "protocol": "tcp"}))
        .collect();
    rules.push(serde_json::json!({"cidr":"127.0.0.1/32","ports":[port],"protocol":"tcp"}));
    rules.push(serde_json::json!({"cidr":"127.0.0.1/32","ports":[udp_port],"protocol":"udp"}));
    compiled(&serde_json::json!({"name":"bench-net100","network":{"connect":rules}}).to_string())
}

pub(crate) struct Cgroups {
    pub(crate) confined: PathBuf,
    pub(crate) other: PathBuf,
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.confined);
        let _ = std::fs::remove_dir(&self.other);
    }
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct PinGuard(PathBuf);
impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = enforcer::reset(&self.0);
    }
}

/// Which parts run (`--part a,b`): everything native by default; `files` needs BPF-LSM
/// (scripts/bench.sh runs it inside the VM harness); `profile` alone needs no root.
const ALL_PARTS: &[&str] = &["syscalls", "net", "deny", "scale", "profile"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let iters: u64 = get("--iters").map(|v| v.parse()).transpose()?.unwrap_or(300_000);
    if let Some(op) = get("--loop") {
        return child(Op::parse(&op).context("bad --loop")?, iters, args.iter().any(|a| a == "--seccomp"));
    }
    if args.get(1).map(String::as_str) == Some("--scale-child") {
        return scale::child(&args[2..]);
    }
    let reps: usize = get("--reps").map(|v| v.parse()).transpose()?.unwrap_or(7);
    let net_iters: u64 = get("--net-iters").map(|v| v.parse()).transpose()?.unwrap_or(20_000);
    let file_iters: u64 = get("--file-iters").map(|v| v.parse()).transpose()?.unwrap_or(20_000);
    let cgroups: usize = get("--cgroups").map(|v| v.parse()).transpose()?.unwrap_or(1000);
    let parts: Vec<String> = match get("--part") {
        Some(p) => p.split(',').map(str::to_string).collect(),
        None => ALL_PARTS.iter().map(|s| s.to_string()).collect(),
    };
    for p in &parts {
        if !["syscalls", "net", "deny", "scale", "files", "profile"].contains(&p.as_str()) {
            bail!("unknown part {p:?} (syscalls, net, deny, scale, files, profile)");
        }
    }
    if parts.iter().any(|p| p != "profile") && unsafe { libc::geteuid() } != 0 {
        bail!("warden-bench needs root (it loads eBPF programs and makes cgroups; only --part profile runs without)");
    }
    println!("{}\n", machine());
    for part in &parts {
        if part == "profile" {
            validation::part(reps)?;
            continue;
        }
        let root = cgroup::cgroup2_mount()?;
        // A fresh pin folder per part: no state of one part skews the next.
        let pin = PathBuf::from(format!("/sys/fs/bpf/warden-bench-{}-{part}", std::process::id()));
        let _pin_guard = PinGuard(pin.clone());
        match part.as_str() {
            "syscalls" | "net" | "deny" | "files" => {
                let cgs = Cgroups {
                    confined: root.join(format!("warden-bench-confined-{}", std::process::id())),
                    other: root.join(format!("warden-bench-other-{}", std::process::id())),
                };
                std::fs::create_dir_all(&cgs.confined)?;
                std::fs::create_dir_all(&cgs.other)?;
                let mut enf = Enforcer::open(&pin)?;
                match part.as_str() {
                    "syscalls" => syscalls_part(&mut enf, &cgs, reps, iters)?,
                    "net" => net_part(&mut enf, &cgs, reps, net_iters)?,
                    "deny" => deny::part(&mut enf, &cgs, reps, net_iters)?,
                    _ => files::part(&mut enf, &cgs, reps, file_iters)?,
                }
            }
            _ => scale::part(&pin, &root, cgroups)?,
        }
    }
    Ok(())
}

fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let vm =
        std::env::var("WARDEN_VM_KERNEL").map(|k| format!(" (qemu TCG VM, Debian {k} kernel)")).unwrap_or_default();
    format!(
        "machine: {} CPUs, {cpu}; kernel {}{vm}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        kernel.trim()
    )
}

/// The per-function configurations of the syscall part (issue 19, item 3), measured where the
/// kernel runs BPF trampolines (the Debian VM kernels; this project's CI host refuses them).
struct FentrySetup {
    btf: aya_obj::btf::Btf,
    /// Entry functions of the measured syscalls, in `syscall_ops` order.
    measured: Vec<String>,
    /// Entry functions of the syscalls runtime-default forbids.
    forbidden_by_default: Vec<String>,
    /// Entry functions of every other native syscall.
    every_other: Vec<String>,
    /// Whether the verifier takes fmod_ret on each measured syscall's entry (7.x accepts
    /// `__x64_sys_*` names, not the `__do_sys_*` of SYSCALL_DEFINE0 syscalls; 6.1 neither).
    modify_return: Vec<bool>,
}

const FENTRY_CONFIGS: [&str; 7] = [
    "no-op fentry on the measured syscall's entry function",
    "no-op fentry on runtime-default's forbidden syscalls",
    "no-op fentry on every other syscall",
    "warden fentry judge on the measured syscall, caller unconfined",
    "warden fentry judge on the measured syscall, caller confined, allowed",
    "confined, per-function layer, measured syscall not hooked",
    "no-op fmod_ret on the measured syscall's entry function",
];

/// Probes BPF trampolines and the fmod_ret rules, prints what the kernel said, and resolves the
/// entry functions. None where a no-op fentry cannot be loaded.
fn fentry_setup() -> Result<Option<FentrySetup>> {
    use trampoline::{attach_noop, entry_point, Kind};
    let btf = match aya_obj::btf::Btf::from_sys_fs() {
        Ok(b) => b,
        Err(e) => {
            println!("Per-function syscall hooks: not measured (no kernel BTF: {e}).\n");
            return Ok(None);
        }
    };
    let measured: Vec<String> = ["getppid", "read"]
        .iter()
        .map(|n| entry_point(&btf, n).with_context(|| format!("no entry function for {n} in the kernel's BTF")))
        .collect::<Result<_>>()?;
    println!("Per-function syscall hooks (issue 19, item 3): what this kernel accepts (no-op programs, loaded and attached, then detached):\n");
    let probe = |target: &str, kind: Kind| -> bool {
        let r = attach_noop(&btf, target, kind);
        println!(
            "- {} on `{target}`: {}",
            if kind == Kind::Fentry { "fentry" } else { "fmod_ret" },
            match &r {
                Ok(_) => "accepted".to_string(),
                Err(e) => format!("refused ({e})"),
            }
        );
        r.is_ok()
    };
    let fentry = probe(&measured[0], Kind::Fentry);
    let modify_return: Vec<bool> = measured.iter().map(|t| probe(t, Kind::ModifyReturn)).collect();
    probe("__x64_sys_getcpu", Kind::ModifyReturn);
    // Issue 18's route for the file layer where `bpf` is not an active LSM.
    probe("security_file_open", Kind::ModifyReturn);
    println!();
    if !fentry {
        return Ok(None);
    }
    let default: serde_json::Value = serde_json::from_str(include_str!("../../profiles/runtime-default.json"))?;
    let allowed: std::collections::BTreeSet<&str> = default["syscalls"]["allow"]
        .as_array()
        .context("runtime-default has no syscalls.allow")?
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let mut forbidden_by_default = Vec::new();
    let mut every_other = Vec::new();
    for s in syscalls::Sysno::iter() {
        let Some(f) = entry_point(&btf, s.name()) else { continue };
        if measured.contains(&f) || every_other.contains(&f) {
            continue;
        }
        if !allowed.contains(s.name()) {
            forbidden_by_default.push(f.clone());
        }
        every_other.push(f);
    }
    Ok(Some(FentrySetup { btf, measured, forbidden_by_default, every_other, modify_return }))
}

/// Runs getppid in the confined cgroup under a profile without it, with the fentry judge on
/// `target` and sys_enter detached; says how the child ended.
fn fentry_judge_kills(enf: &mut Enforcer, cgs: &Cgroups, target: &str) -> Result<String> {
    let allow: Vec<&str> = syscalls::Sysno::iter().map(|s| s.name()).filter(|n| *n != "getppid").collect();
    let p = compiled(&serde_json::json!({"name":"bench-no-getppid","syscalls":{"allow":allow}}).to_string())?;
    enf.apply(&cgs.confined, &p, Mode::Enforce)?;
    enf.detach_sys_enter_for_measurement()?;
    let judge = enf.attach_syscall_fentry("warden_sc_fentry_getppid", target)?;
    let r = measure(Op::Getppid, 1000, Some(cgs.confined.as_path()), false);
    drop(judge);
    enf.release(cgroup::cgroup_id(&cgs.confined)?)?;
    Ok(match r {
        Err(e) if format!("{e:#}").contains("SIGKILL") => "killed (SIGKILL), as sys_enter would".into(),
        Err(e) => bail!("the fentry judge check failed: {e:#}"),
        Ok(ns) => {
            bail!("the fentry judge let a forbidden getppid run ({ns:.0} ns/op): the measured program does not judge")
        }
    })
}

fn syscalls_part(enf: &mut Enforcer, cgs: &Cgroups, reps: usize, iters: u64) -> Result<()> {
    let all = all_syscalls()?;
    let empty = compiled(r#"{"name":"bench-empty"}"#)?;
    let confined_id = cgroup::cgroup_id(&cgs.confined)?;
    let other_id = cgroup::cgroup_id(&cgs.other)?;
    let syscall_ops = [Op::Getppid, Op::ReadZero];
    let fentry = fentry_setup()?;
    let mut configs: Vec<String> = [
        "no warden hook attached",
        "warden loaded, no syscall policy anywhere",
        "no-op sys_enter program (calibration)",
        "unconfined, another cgroup has a syscall policy",
        "confined, every syscall allowed",
        "seccomp filter, same allow-list, no warden",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(f) = &fentry {
        let n = FENTRY_CONFIGS.len() - usize::from(!f.modify_return.contains(&true));
        for (i, c) in FENTRY_CONFIGS[..n].iter().enumerate() {
            configs.push(match i {
                1 => format!("{c} ({} functions)", f.forbidden_by_default.len()),
                2 => format!("{c} ({} functions)", f.every_other.len()),
                _ => c.to_string(),
            });
        }
    }
    let mut sys: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); syscall_ops.len()]; configs.len()];
    // Wall time to attach and to detach (close) each no-op set, per repetition.
    let mut attach_ms: Vec<Vec<f64>> = vec![Vec::new(); 2];
    let mut detach_ms: Vec<Vec<f64>> = vec![Vec::new(); 2];
    for rep in 0..reps {
        eprintln!("syscalls: repetition {}/{reps}", rep + 1);
        // Alternate the order every repetition: no configuration always runs first.
        let order: Vec<usize> =
            if rep % 2 == 0 { (0..configs.len()).collect() } else { (0..configs.len()).rev().collect() };
        for ci in order {
            let mut noop = None;
            let mut trampolines = Vec::new();
            let mut judges = Vec::new();
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
                5 => (None, true),
                _ => {
                    let f = fentry.as_ref().expect("fentry configurations only with a setup");
                    use trampoline::{attach_noop, Kind};
                    let noop_set = |targets: &[String], kind: Kind| -> Result<Vec<trampoline::Attached>> {
                        targets.iter().map(|t| attach_noop(&f.btf, t, kind).map_err(anyhow::Error::msg)).collect()
                    };
                    match ci - 6 {
                        0 => trampolines = noop_set(&f.measured, Kind::Fentry)?,
                        k @ (1 | 2) => {
                            let set = if k == 1 { &f.forbidden_by_default } else { &f.every_other };
                            let t = Instant::now();
                            trampolines = noop_set(set, Kind::Fentry)?;
                            attach_ms[k - 1].push(t.elapsed().as_secs_f64() * 1e3);
                        }
                        k @ 3..=5 => {
                            let (cg, path) =
                                if k == 3 { (None, &cgs.other) } else { (Some(cgs.confined.as_path()), &cgs.confined) };
                            enf.apply(path, &all, Mode::Enforce)?;
                            enf.detach_sys_enter_for_measurement()?;
                            if k != 5 {
                                judges.push(enf.attach_syscall_fentry("warden_sc_fentry_getppid", &f.measured[0])?);
                                judges.push(enf.attach_syscall_fentry("warden_sc_fentry_read", &f.measured[1])?);
                            }
                            for (oi, op) in syscall_ops.iter().enumerate() {
                                sys[ci][oi].push(measure(op.clone(), iters, cg, false)?);
                            }
                            drop(judges);
                            enf.release(other_id)?;
                            enf.release(confined_id)?;
                            continue;
                        }
                        _ => {
                            // Only where the verifier took it; the other operation stays unmeasured.
                            let accepted: Vec<String> = f
                                .measured
                                .iter()
                                .zip(&f.modify_return)
                                .filter(|(_, ok)| **ok)
                                .map(|(t, _)| t.clone())
                                .collect();
                            trampolines = noop_set(&accepted, Kind::ModifyReturn)?;
                            for (oi, op) in syscall_ops.iter().enumerate() {
                                if f.modify_return[oi] {
                                    sys[ci][oi].push(measure(op.clone(), iters, None, false)?);
                                }
                            }
                            drop(trampolines);
                            continue;
                        }
                    }
                    (None, false)
                }
            };
            for (oi, op) in syscall_ops.iter().enumerate() {
                sys[ci][oi].push(measure(op.clone(), iters, cg, seccomp)?);
            }
            drop(noop);
            let t = Instant::now();
            drop(trampolines);
            if ci == 7 || ci == 8 {
                detach_ms[ci - 7].push(t.elapsed().as_secs_f64() * 1e3);
            }
            drop(judges);
            enf.release(other_id)?;
            enf.release(confined_id)?;
        }
    }
    // The measured judge must be one that judges: a confined getppid outside the profile, with
    // only the fentry judge attached (no sys_enter), is killed.
    let judge_check = match &fentry {
        Some(f) => Some(fentry_judge_kills(enf, cgs, &f.measured[0])?),
        None => None,
    };
    println!("### Syscalls\n\n{reps} repetitions, configurations alternating within each (order reversed every other repetition); medians of per-run means over {iters} calls.\n");
    // Medians, and the best run of each configuration: on a shared machine the least
    // disturbed run is the closest to the cost itself.
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    println!("| operation | configuration | ns/op (median) | vs. no hook | vs. no-op hook | ns/op (best run) | best vs. best no-op hook |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (oi, op) in syscall_ops.iter().enumerate() {
        let base = median(&mut sys[0][oi].clone());
        let noop = median(&mut sys[2][oi].clone());
        let noop_best = best(&sys[2][oi]);
        for (ci, label) in configs.iter().enumerate() {
            if sys[ci][oi].is_empty() {
                println!("| {} | {label} | refused by the verifier | | | | |", op.label());
                continue;
            }
            let m = median(&mut sys[ci][oi].clone());
            let b = best(&sys[ci][oi]);
            println!(
                "| {} | {label} | {m:.0} | {:.2}x | {:.2}x | {b:.0} | {:.2}x |",
                op.label(),
                m / base,
                m / noop,
                b / noop_best
            );
        }
    }
    // The target is stated against the no-op hook: also give the per-repetition ratios, so
    // the spread is visible (one run of this VM can be off by 10%).
    for (oi, op) in syscall_ops.iter().enumerate() {
        let r: Vec<String> = sys[4][oi].iter().zip(&sys[2][oi]).map(|(c, n)| format!("{:.2}", c / n)).collect();
        println!("\n{}: confined / no-op hook per repetition: {}", op.label(), r.join(", "));
    }
    // Issue 19's syscall target: what an allowed call of a confined process adds, against what
    // seccomp adds for the same allow-list (<= 2x), for each layer.
    println!("\nAdded per call over no hook (median ns), against seccomp's:\n");
    println!(
        "| operation | seccomp adds | sys_enter, confined, allowed | x seccomp |{}",
        if fentry.is_some() {
            " fentry judge, confined, allowed | x seccomp | fentry judge, unconfined caller | not hooked, confined |"
        } else {
            ""
        }
    );
    println!("|---|---:|---:|---:|{}", if fentry.is_some() { "---:|---:|---:|---:|" } else { "" });
    let mut noise = false;
    for (oi, op) in syscall_ops.iter().enumerate() {
        let m = |ci: usize| median(&mut sys[ci][oi].clone());
        let base = m(0);
        let sec = m(5) - base;
        let se = m(4) - base;
        // Under 1 ns seccomp's cost is within the noise of a short or busy run (CI's smoke run
        // saw -0): a ratio over it would be meaningless, or negative.
        let measurable = sec >= 1.0;
        noise |= !measurable;
        let ratio = |x: f64| if measurable { format!("{:.1}", x / sec) } else { "n/a".to_string() };
        let mut row = format!("| {} | {sec:+.0} | {se:+.0} | {} |", op.label(), ratio(se));
        if fentry.is_some() {
            let fj = m(10) - base;
            row += &format!(" {fj:+.0} | {} | {:+.0} | {:+.0} |", ratio(fj), m(9) - base, m(11) - base);
        }
        println!("{row}");
    }
    if noise {
        println!("\nn/a: seccomp's added cost was under 1 ns in this run (within its noise): no ratio.");
    }
    if let Some(c) = judge_check {
        println!("\nCheck: a confined getppid outside its profile, with only the fentry judge attached: {c}.");
    }
    if let Some(f) = &fentry {
        for (k, (set, label)) in
            [(&f.forbidden_by_default, "runtime-default's forbidden set"), (&f.every_other, "every other syscall")]
                .iter()
                .enumerate()
        {
            println!(
                "\nAttaching no-op fentry programs to {label} ({} functions): {:.0} ms (median; {:.1} ms each), detaching (closing the links): {:.0} ms.",
                set.len(),
                median(&mut attach_ms[k].clone()),
                median(&mut attach_ms[k].clone()) / set.len().max(1) as f64,
                median(&mut detach_ms[k].clone()),
            );
        }
    }
    println!();
    Ok(())
}

/// The loopback targets of the network parts: a TCP listener that accepts and drops on its
/// own thread, and a UDP sink (kept open by the caller). Returns (tcp port, udp sink).
pub(crate) fn loopback_targets() -> Result<(u16, UdpSocket)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    // A deep accept queue: with std's default backlog (128) a burst of connects can overflow
    // it and a dropped SYN costs a 1 s retransmit, which is what the connect figure measured.
    unsafe {
        use std::os::fd::AsRawFd as _;
        libc::listen(listener.as_raw_fd(), 4096);
    }
    let tport = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    Ok((tport, UdpSocket::bind("127.0.0.1:0")?))
}

fn net_part(enf: &mut Enforcer, cgs: &Cgroups, reps: usize, net_iters: u64) -> Result<()> {
    let (tport, sink) = loopback_targets()?;
    let uport = sink.local_addr()?.port();
    let net = net100(tport, uport)?;
    let confined_id = cgroup::cgroup_id(&cgs.confined)?;
    let net_ops = [Op::TcpConnect(tport), Op::UdpSend(uport)];
    let net_configs = ["unconfined", "confined, 100-rule network profile"];
    let mut netr: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); net_ops.len()]; net_configs.len()];
    // The confined cgroup keeps its policy for the whole part: the programs are attached to
    // that cgroup only, so the unconfined child (in this process's cgroup) never runs them.
    enf.apply(&cgs.confined, &net, Mode::Enforce)?;
    for rep in 0..reps {
        eprintln!("net: repetition {}/{reps}", rep + 1);
        for (oi, op) in net_ops.iter().enumerate() {
            let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
            for ci in order {
                let cg = (ci == 1).then_some(cgs.confined.as_path());
                netr[ci][oi].push(measure(op.clone(), net_iters, cg, false)?);
            }
        }
    }
    enf.release(confined_id)?;
    println!("### Network\n\n{reps} repetitions, unconfined and confined alternating (order swapped every other repetition); each run times {net_iters} operations one by one and gives its median; the table has the median over repetitions. The 100-rule profile: 98 CIDR rules with a port and a port range, plus the loopback targets.\n");
    println!("| operation | configuration | ns/op (median) | vs. unconfined |\n|---|---|---:|---:|");
    for (oi, op) in net_ops.iter().enumerate() {
        let base = median(&mut netr[0][oi].clone());
        for (ci, label) in net_configs.iter().enumerate() {
            let m = median(&mut netr[ci][oi].clone());
            println!("| {} | {label} | {m:.0} | {:.2}x |", op.label(), m / base);
        }
    }
    for (oi, op) in net_ops.iter().enumerate() {
        let r: Vec<String> = netr[1][oi].iter().zip(&netr[0][oi]).map(|(c, n)| format!("{:.2}", c / n)).collect();
        println!("\n{}: confined / unconfined per repetition: {}", op.label(), r.join(", "));
    }
    println!();
    Ok(())
}
