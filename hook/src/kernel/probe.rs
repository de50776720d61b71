//! Kernel feature probe: which enforcement layers this kernel supports, and for each missing
//! one why and what would enable it. Probes load tiny programs; nothing is attached or pinned.
use std::path::Path;

use aya::programs::{LsmAttachType, ProgramType};
use serde::Serialize;

use crate::cgroup;

#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    /// Stable identifier: `syscalls`, `network`, `bpf-lsm`.
    pub name: &'static str,
    /// What the layer enforces.
    pub covers: &'static str,
    pub available: bool,
    /// Why not, and what would enable it (empty when available).
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub kernel: String,
    pub btf: bool,
    pub cgroup2_mount: Option<String>,
    pub bpffs: bool,
    pub active_lsms: Option<Vec<String>>,
    pub layers: Vec<Layer>,
}

impl Probe {
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name == name)
    }

    pub fn run() -> Probe {
        let kernel =
            std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
        let btf = Path::new(super::btf::VMLINUX_BTF).exists();
        let cgroup2_mount = cgroup::cgroup2_mount().ok().map(|p| p.display().to_string());
        let bpffs = is_bpffs(Path::new("/sys/fs/bpf"));
        let active_lsms = read_lsms();

        let mut common = Vec::new();
        if !btf {
            common.push("no /sys/kernel/btf/vmlinux: build the kernel with CONFIG_DEBUG_INFO_BTF=y".to_string());
        }
        if cgroup2_mount.is_none() {
            common.push(
                "no cgroup2 mount: mount -t cgroup2 none /sys/fs/cgroup (or /sys/fs/cgroup/unified on hybrid hosts)"
                    .to_string(),
            );
        }

        let mut layers = Vec::new();

        let mut m = common.clone();
        check(&mut m, ProgramType::RawTracePoint, "raw tracepoint programs (CONFIG_BPF_EVENTS=y)");
        layers.push(Layer {
            name: "syscalls",
            covers: "syscall allow-list (raw_tp sys_enter, SIGKILL); non-inet socket families",
            available: m.is_empty(),
            missing: m,
        });

        let mut m = common.clone();
        check(&mut m, ProgramType::CgroupSockAddr, "cgroup sock_addr programs (CONFIG_CGROUP_BPF=y)");
        check(&mut m, ProgramType::CgroupSock, "cgroup sock programs (CONFIG_CGROUP_BPF=y)");
        // The listener check (listen() without bind() runs no bind hook): cgroup_skb ingress.
        check(&mut m, ProgramType::CgroupSkb, "cgroup skb programs (CONFIG_CGROUP_BPF=y)");
        layers.push(Layer {
            name: "network",
            covers: "connect/sendmsg/bind allow-lists, inet socket families, raw sockets and other protocols (EPERM); connections to listeners on ports the profile may not bind (dropped)",
            available: m.is_empty(),
            missing: m,
        });

        let mut m = common;
        m.extend(bpf_lsm_missing(active_lsms.as_deref()));
        layers.push(Layer {
            name: "bpf-lsm",
            covers: "file and exec allow-lists, dangerous syscalls denied before they run (EPERM)",
            available: m.is_empty(),
            missing: m,
        });

        Probe { kernel, btf, cgroup2_mount, bpffs, active_lsms, layers }
    }

    /// Refuses a profile that needs a layer this kernel lacks, saying what is missing: a
    /// restriction is never silently ignored.
    pub fn check_profile(&self, c: &crate::profile::CompiledProfile) -> anyhow::Result<()> {
        use warden_common::profile_flags as f;
        let mut need = Vec::new();
        if c.header.flags & (f::SYSCALLS | f::FAMILIES) != 0 {
            need.push("syscalls");
        }
        if c.header.flags & (f::CONNECT | f::BIND | f::FAMILIES) != 0 {
            need.push("network");
        }
        if c.files.is_some() {
            need.push("bpf-lsm");
        }
        for n in need {
            if let Some(l) = self.layer(n) {
                if !l.available {
                    let hint = if n == "bpf-lsm" { format!(". {ENABLE_BPF_LSM}") } else { String::new() };
                    anyhow::bail!(
                        "profile {} needs the {n} enforcement layer, which this kernel lacks: {}{hint}",
                        c.name,
                        l.missing.join("; ")
                    );
                }
            }
        }
        Ok(())
    }

    pub fn human(&self) -> String {
        let mut s = format!("kernel {}\n", self.kernel);
        s += &format!("  BTF (/sys/kernel/btf/vmlinux): {}\n", yes(self.btf));
        s += &format!("  cgroup2: {}\n", self.cgroup2_mount.as_deref().unwrap_or("NOT MOUNTED"));
        s += &format!("  bpffs at /sys/fs/bpf: {}\n", yes(self.bpffs));
        s += &format!(
            "  active LSMs: {}\n",
            self.active_lsms.as_ref().map(|l| l.join(",")).unwrap_or_else(|| "unknown".into())
        );
        s += "enforcement layers:\n";
        for l in &self.layers {
            s +=
                &format!("  {:<9} {}  {}\n", l.name, if l.available { "available  " } else { "UNAVAILABLE" }, l.covers);
            for why in &l.missing {
                s += &format!("            - {why}\n");
            }
        }
        s
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn check(missing: &mut Vec<String>, ty: ProgramType, what: &str) {
    match aya::sys::is_program_supported(ty) {
        Ok(true) => {}
        Ok(false) => missing.push(format!("kernel lacks {what}")),
        Err(e) => missing.push(format!("probing {what} failed: {e}")),
    }
}

fn read_lsms() -> Option<Vec<String>> {
    let p = Path::new("/sys/kernel/security/lsm");
    if !p.exists() {
        // securityfs is often not mounted in minimal hosts; mounting it is harmless.
        let _ = std::fs::create_dir_all("/sys/kernel/security");
        let src = c"securityfs";
        let dst = c"/sys/kernel/security";
        unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
    }
    std::fs::read_to_string(p).ok().map(|s| s.trim().split(',').filter(|x| !x.is_empty()).map(str::to_string).collect())
}

/// How to get a usable bpf-lsm layer (appended to refusals of profiles with `files` rules).
pub const ENABLE_BPF_LSM: &str = "To enable it: put `bpf` in the active LSM list (kernel command line \
    lsm=...,bpf, e.g. lsm=landlock,lockdown,yama,apparmor,bpf) on a kernel built with \
    CONFIG_BPF_LSM=y and working BPF trampolines (fentry/lsm programs must load); \
    `warden probe` shows what this kernel has";

/// Why BPF-LSM programs cannot run here (empty: they can), given the active LSM list. `bpf` in
/// the list is not enough: LSM programs need BPF trampolines, which some kernels refuse (this
/// project's CI kernel does), so a real LSM program is loaded and attached.
fn bpf_lsm_missing(active_lsms: Option<&[String]>) -> Vec<String> {
    let mut why = Vec::new();
    match active_lsms {
        None => why.push("cannot read /sys/kernel/security/lsm (securityfs not mounted?)".to_string()),
        Some(l) if !l.iter().any(|x| x == "bpf") => why.push(format!(
            "`bpf` is not in the active LSM list ({}): boot with lsm={},bpf",
            l.join(","),
            l.join(",")
        )),
        _ => {}
    }
    match aya::sys::is_program_supported(ProgramType::Lsm(LsmAttachType::Mac)) {
        Ok(true) => {}
        Ok(false) => why.push(
            "BPF-LSM programs do not load or attach (no working BPF trampolines): use a kernel with \
             CONFIG_BPF_LSM=y and BPF trampoline support (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS)"
                .into(),
        ),
        Err(e) => why.push(format!(
            "loading a probe BPF-LSM program failed ({e}): this kernel refuses BPF trampoline \
             programs; use a kernel with CONFIG_BPF_LSM=y and working trampolines"
        )),
    }
    why
}

/// Whether BPF-LSM programs can run here: `bpf` in the active LSM list AND a trampoline
/// program loads. Err says what is missing and how to enable it.
pub fn bpf_lsm_status() -> Result<(), String> {
    let why = bpf_lsm_missing(read_lsms().as_deref());
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join("; "))
    }
}

pub fn is_bpffs(p: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}
