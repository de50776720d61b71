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
    /// How the layer's programs run here, when that can differ (`bpf-lsm`: "lsm" or
    /// "fmod_ret"), and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
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
            via: None,
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
            via: None,
        });

        let mut m = common;
        let (path, why) = match lsm_path(active_lsms.as_deref()) {
            Ok((p, note)) => (Some(p), note),
            Err(why) => (None, why),
        };
        let via = path.map(|p| format!("{}: {why}", p.name()));
        if path.is_none() {
            m.push(why);
        }
        layers.push(Layer {
            name: "bpf-lsm",
            covers: "file and exec allow-lists, dangerous syscalls denied before they run (EPERM)",
            available: m.is_empty(),
            missing: m,
            via,
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
            if let Some(via) = &l.via {
                s += &format!("            via {via}\n");
            }
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
pub const ENABLE_BPF_LSM: &str = "To enable it: a kernel with BTF (CONFIG_DEBUG_INFO_BTF=y) and working BPF \
    trampolines (fentry/lsm programs must load); with `bpf` in the active LSM list (kernel command line \
    lsm=...,bpf, e.g. lsm=landlock,lockdown,yama,apparmor,bpf, on a kernel built with CONFIG_BPF_LSM=y) warden \
    runs lsm/ programs, without it fmod_ret programs on the security_* functions; \
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

/// How warden's BPF-LSM programs run on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LsmPath {
    /// As `lsm/` programs: `bpf` is an active LSM.
    Lsm,
    /// As `fmod_ret` programs on the kernel's `security_<hook>` functions: `bpf` is not an
    /// active LSM (Ubuntu's and Flatcar's default boot) but BPF trampolines work (issue 18).
    ModifyReturn,
}

impl LsmPath {
    pub fn name(self) -> &'static str {
        match self {
            LsmPath::Lsm => "lsm",
            LsmPath::ModifyReturn => "fmod_ret",
        }
    }
}

/// Which path the BPF-LSM programs take here and why, or why neither works (with what would
/// enable it). `lsm/` where `bpf` is active; `fmod_ret` on `security_*` otherwise, if a probe
/// fmod_ret program loads and attaches there. `WARDEN_LSM_PATH=fmod_ret` takes the fmod_ret
/// path even where `bpf` is active (tests and diagnosis: both paths judge the same).
fn lsm_path(active_lsms: Option<&[String]>) -> Result<(LsmPath, String), String> {
    let why = bpf_lsm_missing(active_lsms);
    let forced = std::env::var("WARDEN_LSM_PATH").ok();
    if why.is_empty() && forced.as_deref() != Some("fmod_ret") {
        return Ok((LsmPath::Lsm, "`bpf` is an active LSM".into()));
    }
    let because = if why.is_empty() { "WARDEN_LSM_PATH=fmod_ret".to_string() } else { why.join("; ") };
    match modify_return_works() {
        Ok(()) => Ok((
            LsmPath::ModifyReturn,
            format!("fmod_ret programs on the kernel's security_* functions, because {because}"),
        )),
        Err(e) => Err(format!("{because}; and the fmod_ret route on security_* functions does not work either: {e:#}")),
    }
}

/// Whether BPF-LSM programs can run here, and how: `bpf` in the active LSM list and a
/// trampoline program loads (lsm/), or fmod_ret on security_* works. Err says what is missing
/// and how to enable it.
pub fn bpf_lsm_status() -> Result<LsmPath, String> {
    lsm_path(read_lsms().as_deref()).map(|(p, _)| p)
}

/// bpf(2) for a command that returns a file descriptor.
pub(crate) fn sys_bpf(
    cmd: aya_obj::generated::bpf_cmd,
    attr: &aya_obj::generated::bpf_attr,
) -> anyhow::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *const aya_obj::generated::bpf_attr,
            std::mem::size_of::<aya_obj::generated::bpf_attr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r as i32) })
}

/// BPF_PROG_LOAD of `insns` (the bytes of 8-byte instructions) as an fmod_ret (TRACING,
/// BPF_MODIFY_RETURN) program named `name` on the vmlinux BTF function `btf_id`. With `log`,
/// the verifier's log goes there.
pub(crate) fn load_modify_return(
    insns: &[u8],
    name: &str,
    btf_id: u32,
    log: Option<&mut [u8]>,
) -> anyhow::Result<std::os::fd::OwnedFd> {
    use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type};
    let license = c"GPL";
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    unsafe {
        let a = &mut attr.__bindgen_anon_3;
        a.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
        a.expected_attach_type = bpf_attach_type::BPF_MODIFY_RETURN as u32;
        a.insns = insns.as_ptr() as u64;
        a.insn_cnt = (insns.len() / 8) as u32;
        a.license = license.as_ptr() as u64;
        a.attach_btf_id = btf_id;
        for (i, b) in name.as_bytes().iter().take(15).enumerate() {
            a.prog_name[i] = *b as libc::c_char;
        }
        if let Some(log) = log {
            a.log_level = 1;
            a.log_size = log.len() as u32;
            a.log_buf = log.as_mut_ptr() as u64;
        }
    }
    sys_bpf(bpf_cmd::BPF_PROG_LOAD, &attr)
}

/// Whether the fmod_ret route works here: a two-instruction fmod_ret program (`return 0`) on
/// `security_file_open` loads and attaches (then is detached). Says what failed.
fn modify_return_works() -> anyhow::Result<()> {
    use anyhow::{anyhow, Context as _};
    use aya_obj::btf::{Btf, BtfKind};
    use aya_obj::generated::{bpf_attr, bpf_cmd};
    use std::os::fd::AsRawFd as _;
    let btf = Btf::from_sys_fs().context("reading the kernel BTF (CONFIG_DEBUG_INFO_BTF=y)")?;
    let target = "security_file_open";
    let id = btf
        .id_by_type_name_kind(target, BtfKind::Func)
        .map_err(|_| anyhow!("the kernel has no function {target} in its BTF"))?;
    // mov64 r0, 0; exit
    let insns: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let prog = load_modify_return(&insns, "warden_probe", id, None).with_context(|| {
        format!(
            "loading a probe fmod_ret program on {target} (BPF trampolines refused: CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS and CONFIG_BPF_JIT are needed)"
        )
    })?;
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.raw_tracepoint.prog_fd = prog.as_raw_fd() as u32;
    let link = sys_bpf(bpf_cmd::BPF_RAW_TRACEPOINT_OPEN, &attr)
        .with_context(|| format!("attaching a probe fmod_ret program to {target}"))?;
    drop(link);
    Ok(())
}

pub fn is_bpffs(p: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}
