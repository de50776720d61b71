//! warden's eBPF object: loading it (kernel offsets and settings as globals, maps adopted from
//! their pins), the program tables, and loading the BPF-LSM programs.
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use aya::{programs::Lsm, Btf, Ebpf, EbpfLoader};
use tracing::{debug, info, warn};
use warden_common::globals;

use super::{maps, Enforcer};
use crate::kernel::btf::KernelOffsets;
use crate::kernel::probe::LsmPath;

/// The eBPF object built by hook/build.rs.
pub(super) static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/warden"));

/// Programs attached to every confined cgroup.
pub(super) const CGROUP_PROGRAMS: &[&str] = &[
    "warden_sock_create",
    "warden_connect4",
    "warden_connect6",
    "warden_sendmsg4",
    "warden_sendmsg6",
    "warden_bind4",
    "warden_bind6",
    // Listeners the bind hook never saw (listen() without bind()): see enforcer-ebpf network.rs.
    "warden_ingress",
];

/// Which group of LSM programs a confined cgroup needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LsmGroup {
    /// Files and execs: a `files` section, or learn mode (which records paths and execs).
    Files,
    /// Dangerous syscalls refused before they run: a killing syscall policy or a family list.
    Gate,
    /// The network calls no cgroup hook can refuse (listen(), ping and raw sockets' bind and
    /// send): connect or bind rules, or learn mode.
    Net,
}

/// BPF-LSM programs: (program, LSM hook, group, required). A required program that does not
/// load makes the bpf-lsm layer unusable; an optional one (a hook this kernel lacks) is skipped
/// with a warning. Links are pinned as `links/lsm_<hook>`.
pub(super) const LSM_PROGRAMS: &[(&str, &str, LsmGroup, bool)] = &[
    ("warden_file_open", "file_open", LsmGroup::Files, true),
    ("warden_bprm_check", "bprm_check_security", LsmGroup::Files, true),
    ("warden_path_mknod", "path_mknod", LsmGroup::Files, true),
    ("warden_path_mkdir", "path_mkdir", LsmGroup::Files, true),
    ("warden_path_unlink", "path_unlink", LsmGroup::Files, true),
    ("warden_path_rmdir", "path_rmdir", LsmGroup::Files, true),
    ("warden_path_symlink", "path_symlink", LsmGroup::Files, true),
    ("warden_path_rename", "path_rename", LsmGroup::Files, true),
    ("warden_path_link", "path_link", LsmGroup::Files, true),
    ("warden_path_truncate", "path_truncate", LsmGroup::Files, true),
    ("warden_path_chmod", "path_chmod", LsmGroup::Files, true),
    ("warden_path_chown", "path_chown", LsmGroup::Files, true),
    ("warden_sb_mount", "sb_mount", LsmGroup::Gate, false),
    ("warden_sb_umount", "sb_umount", LsmGroup::Gate, false),
    ("warden_move_mount", "move_mount", LsmGroup::Gate, false),
    ("warden_ptrace", "ptrace_access_check", LsmGroup::Gate, false),
    ("warden_bpf", "bpf", LsmGroup::Gate, false),
    ("warden_perf_event_open", "perf_event_open", LsmGroup::Gate, false),
    ("warden_kernel_load_data", "kernel_load_data", LsmGroup::Gate, false),
    ("warden_kernel_read_file", "kernel_read_file", LsmGroup::Gate, false),
    ("warden_userns_create", "userns_create", LsmGroup::Gate, false),
    ("warden_key_alloc", "key_alloc", LsmGroup::Gate, false),
    ("warden_anon_inode", "inode_init_security_anon", LsmGroup::Gate, false),
    ("warden_socket_create", "socket_create", LsmGroup::Gate, false),
    ("warden_socket_bind", "socket_bind", LsmGroup::Net, false),
    ("warden_socket_listen", "socket_listen", LsmGroup::Net, false),
    ("warden_socket_sendmsg", "socket_sendmsg", LsmGroup::Net, false),
];

/// Loads the eBPF object (maps reuse their pins under `pin_dir`) and every program but the
/// BPF-LSM ones.
pub(super) fn load_object(pin_dir: &Path) -> Result<Ebpf> {
    if EBPF_OBJECT.is_empty() {
        bail!("this warden binary was built without its eBPF object (AYA_BUILD_SKIP): rebuild without it");
    }
    let off = KernelOffsets::from_running_kernel()?;
    debug!(?off, "kernel offsets from BTF");
    let rate_limit: u64 = std::env::var("WARDEN_EVENT_RATE_LIMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let net_ok: u64 = off.net.is_some() as u64;
    let net = off.net.unwrap_or_default();
    let maps_dir = maps::maps_dir(pin_dir);
    preallocate_before_6_1(&maps_dir)?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(&maps_dir)
        .override_global(globals::CGROUP_KN, &off.cgroup_kn, true)
        .override_global(globals::KERNFS_NODE_ID, &off.kernfs_node_id, true)
        .override_global(globals::CGROUP_PARENT, &off.cgroup_parent, true)
        .override_global(globals::CGROUP_ROOT, &off.cgroup_root, true)
        .override_global(globals::CGROUP_ROOT_HIERARCHY_ID, &off.cgroup_root_hierarchy_id, true)
        .override_global(globals::TASK_TI_STATUS, &off.task_ti_status, true)
        .override_global(globals::FILE_F_PATH, &off.files.file_f_path, true)
        .override_global(globals::FILE_F_MODE, &off.files.file_f_mode, true)
        .override_global(globals::FILE_F_INODE, &off.files.file_f_inode, true)
        .override_global(globals::INODE_I_MODE, &off.files.inode_i_mode, true)
        .override_global(globals::BPRM_FILE, &off.files.bprm_file, true)
        .override_global(globals::PATH_MNT, &off.files.path_mnt, true)
        .override_global(globals::PATH_DENTRY, &off.files.path_dentry, true)
        .override_global(globals::DENTRY_PARENT, &off.files.dentry_parent, true)
        .override_global(globals::DENTRY_NAME_LEN, &off.files.dentry_name_len, true)
        .override_global(globals::DENTRY_NAME, &off.files.dentry_name, true)
        .override_global(globals::VFSMOUNT_ROOT, &off.files.vfsmount_root, true)
        .override_global(globals::MOUNT_MNT, &off.files.mount_mnt, true)
        .override_global(globals::MOUNT_PARENT, &off.files.mount_parent, true)
        .override_global(globals::MOUNT_MOUNTPOINT, &off.files.mount_mountpoint, true)
        .override_global(globals::MOUNT_NS, &off.files.mount_ns, true)
        .override_global(globals::TASK_FS, &off.files.task_fs, true)
        .override_global(globals::FS_ROOT, &off.files.fs_root, true)
        .override_global(globals::NET_OFFSETS_OK, &net_ok, true)
        .override_global(globals::SOCKET_SK, &net.socket_sk, true)
        .override_global(globals::SOCK_FAMILY, &net.sock_family, true)
        .override_global(globals::SOCK_STATE, &net.sock_state, true)
        .override_global(globals::SOCK_NUM, &net.sock_num, true)
        .override_global(globals::SOCK_DADDR, &net.sock_daddr, true)
        .override_global(globals::SOCK_RCV_SADDR, &net.sock_rcv_saddr, true)
        .override_global(globals::SOCK_V6_DADDR, &net.sock_v6_daddr, true)
        .override_global(globals::SOCK_V6_RCV_SADDR, &net.sock_v6_rcv_saddr, true)
        .override_global(globals::SOCK_PROT, &net.sock_prot, true)
        .override_global(globals::SOCK_TYPE, &net.sock_type, true)
        .override_global(globals::SOCK_PROTOCOL, &net.sock_protocol, true)
        .override_global(globals::PROTO_BIND, &net.proto_bind, true)
        .override_global(globals::MSGHDR_NAME, &net.msghdr_name, true)
        .override_global(globals::MSGHDR_NAMELEN, &net.msghdr_namelen, true)
        .override_global(globals::EVENT_RATE_LIMIT, &rate_limit, true)
        .load(EBPF_OBJECT)
        .context("loading warden's eBPF object")?;

    for (name, prog) in ebpf.programs_mut() {
        let r = match prog {
            aya::programs::Program::RawTracePoint(p) => p.load(),
            aya::programs::Program::CgroupSockAddr(p) => p.load(),
            aya::programs::Program::CgroupSock(p) => p.load(),
            aya::programs::Program::CgroupSkb(p) => p.load(),
            // BPF-LSM programs: below, only where the layer works (this project's CI kernel
            // refuses every trampoline program with EPERM).
            _ => continue,
        };
        r.with_context(|| format!("loading eBPF program {name}"))?;
    }

    Ok(ebpf)
}

/// Maps the object asks to allocate per element (BPF_F_NO_PREALLOC, enforcer-ebpf maps.rs),
/// created preallocated instead on kernels before 6.1: there the verifier WARNs ("trace type
/// BPF program uses run-time allocation", a kernel splat and taint) for every tracing program
/// (sys_enter, cgroup_mkdir/rmdir) using one, because allocating from those contexts could
/// deadlock before the BPF memory allocator (6.1). They are made and pinned under their names
/// before the object loads; aya adopts a pinned map as it is. Costs the memory 6.1+ saves.
/// `WARDEN_PREALLOC_MAPS=1` forces it on any kernel (tests). `WARDEN_LEARN_FILES` is left
/// alone: only BPF-LSM programs, which that check does not cover, use it.
fn preallocate_before_6_1(maps_dir: &Path) -> Result<()> {
    const NO_PREALLOC: u32 = 1;
    const HASH: u32 = 1;
    const PERCPU_HASH: u32 = 5;
    let forced = std::env::var_os("WARDEN_PREALLOC_MAPS").is_some_and(|v| v == "1");
    let old = crate::profile::seccomp::KernelVersion::running().is_some_and(|k| (k.0, k.1) < (6, 1));
    if !(forced || old) {
        return Ok(());
    }
    let obj = aya_obj::Object::parse(EBPF_OBJECT).context("reading the eBPF object's map definitions")?;
    std::fs::create_dir_all(maps_dir).with_context(|| format!("creating {}", maps_dir.display()))?;
    for (name, m) in &obj.maps {
        let per_element = m.map_flags() & NO_PREALLOC != 0;
        if !per_element || !matches!(m.map_type(), HASH | PERCPU_HASH) || name == "WARDEN_LEARN_FILES" {
            continue;
        }
        let pin = maps_dir.join(name);
        if pin.exists() {
            continue; // adopted as it was made
        }
        create_and_pin(
            name,
            m.map_type(),
            m.key_size(),
            m.value_size(),
            m.max_entries(),
            m.map_flags() & !NO_PREALLOC,
            &pin,
        )
        .with_context(|| format!("creating map {name} preallocated (kernel before 6.1)"))?;
        debug!(map = %name, "created preallocated (kernel before 6.1)");
    }
    Ok(())
}

/// BPF_MAP_CREATE, then BPF_OBJ_PIN at `pin` (the fd is closed after pinning).
fn create_and_pin(name: &str, ty: u32, key: u32, value: u32, max: u32, flags: u32, pin: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    // union bpf_attr, map-create part: type, key_size, value_size, max_entries, map_flags,
    // inner_map_fd, numa_node, map_name[16]; the rest zero (the kernel checks the tail is).
    let mut attr = [0u8; 128];
    for (i, v) in [ty, key, value, max, flags].iter().enumerate() {
        attr[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    let n = name.as_bytes();
    let len = n.len().min(15);
    attr[28..28 + len].copy_from_slice(&n[..len]);
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, 0 /* BPF_MAP_CREATE */, attr.as_ptr(), attr.len())
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("BPF_MAP_CREATE");
    }
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    let path = std::ffi::CString::new(pin.as_os_str().as_bytes())?;
    // BPF_OBJ_PIN: pathname (u64), bpf_fd (u32), file_flags (u32).
    let mut pattr = [0u8; 128];
    pattr[0..8].copy_from_slice(&(path.as_ptr() as u64).to_ne_bytes());
    pattr[8..12].copy_from_slice(&(std::os::fd::AsRawFd::as_raw_fd(&fd) as u32).to_ne_bytes());
    if unsafe {
        libc::syscall(libc::SYS_bpf, 6 /* BPF_OBJ_PIN */, pattr.as_ptr(), pattr.len())
    } != 0
    {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("pinning {}", pin.display()));
    }
    Ok(())
}

impl Enforcer {
    /// Loads LSM program `prog` for `hook` unless loaded. Ok(false): an optional program this
    /// kernel cannot load (warned); Err: a required one.
    pub(super) fn load_lsm(&mut self, prog: &str, hook: &str, required: bool) -> Result<bool> {
        if self.lsm_path() == Some(LsmPath::ModifyReturn) {
            return self.load_modify_return(prog, hook, required);
        }
        // Loaded already: no BTF needed (preload_lsm drops the parsed BTF afterwards).
        {
            let Some(p) = self.ebpf.program_mut(prog) else { bail!("program {prog} missing from the object") };
            let p: &mut Lsm = p.try_into()?;
            if p.fd().is_ok() {
                return Ok(true);
            }
        }
        if self.btf.is_none() {
            self.btf = Some(Btf::from_sys_fs().context("reading the kernel BTF for the BPF-LSM programs")?);
        }
        let btf = self.btf.as_ref().expect("parsed above");
        let Some(p) = self.ebpf.program_mut(prog) else { bail!("program {prog} missing from the object") };
        let p: &mut Lsm = p.try_into()?;
        match p.load(hook, btf) {
            Ok(()) => Ok(true),
            Err(e) => {
                // Optional means "a hook this kernel may lack" (its BTF name is unknown here),
                // not "may fail": a program the verifier refuses for a hook that exists is a
                // defect that would silently drop a layer (it did: warden_socket_sendmsg over
                // 6.1's stack limit), so it makes the BPF-LSM layer unusable, loudly.
                let refused_by_verifier = matches!(e, aya::programs::ProgramError::LoadError { .. });
                let e = anyhow::Error::from(e);
                if required || refused_by_verifier {
                    return Err(e).with_context(|| format!("the lsm/{hook} program does not load on this kernel"));
                }
                // A hook this kernel lacks: that syscall class keeps only the sys_enter kill.
                warn!(hook, "optional lsm program not loaded (hook missing here): {e:#}");
                Ok(false)
            }
        }
    }

    /// The fmod_ret path of [`Self::load_lsm`]: `prog` as fmod_ret on `security_<hook>`.
    fn load_modify_return(&mut self, prog: &str, hook: &str, required: bool) -> Result<bool> {
        if self.fmod_progs.contains_key(prog) {
            return Ok(true);
        }
        if self.btf.is_none() {
            self.btf = Some(Btf::from_sys_fs().context("reading the kernel BTF for the BPF-LSM programs")?);
        }
        let btf = self.btf.as_ref().expect("parsed above");
        let target = super::modify_return::security_function(hook);
        if btf.id_by_type_name_kind(&target, aya_obj::btf::BtfKind::Func).is_err() {
            let e = anyhow::anyhow!(
                "the kernel has no function {target} in its BTF (inlined, or the hook is not built), so lsm/{hook} cannot run as fmod_ret"
            );
            if required {
                return Err(e);
            }
            warn!(hook, "optional fmod_ret program not loaded: {e:#}");
            return Ok(false);
        }
        if self.fmod.is_none() {
            self.fmod = Some(super::modify_return::Relocated::new(&self.ebpf, btf)?);
        }
        if let Err(e) = self.fmod.as_ref().expect("made above").check_layout(hook) {
            if required {
                return Err(e);
            }
            warn!(hook, "optional fmod_ret program not loaded: {e:#}");
            return Ok(false);
        }
        // bpf_d_path is not allowed for fmod_ret on security_bprm_check: its variant walks
        // the dentries instead (enforcer-ebpf files.rs).
        let code = if prog == "warden_bprm_check" { "warden_bprm_check_walk" } else { prog };
        let fd = self.fmod.as_ref().expect("made above").load(code, hook, btf)?;
        self.fmod_progs.insert(prog.to_string(), fd);
        Ok(true)
    }

    /// Loads (verifies) every BPF-LSM program now instead of at first use: for a long-running
    /// daemon, so that the first container with a `files` profile does not wait for the
    /// verifier inside the runtime's request timeout. A required program that does not load
    /// makes the layer unusable (profiles with `files` are then refused, with the reason).
    pub fn preload_lsm(&mut self) {
        if self.lsm.is_err() {
            return;
        }
        for (prog, hook, _, required) in LSM_PROGRAMS {
            if let Err(e) = self.load_lsm(prog, hook, *required) {
                warn!("bpf-lsm layer unusable: {e:#}");
                self.lsm = Err(format!("{e:#}"));
                return;
            }
        }
        info!(via = self.lsm_path().map(LsmPath::name), "BPF-LSM programs loaded");
        // Every LSM program is verified: the parsed kernel BTF (tens of MB) and the relocated
        // object are not needed again unless one is reloaded (load_lsm makes them anew then).
        self.btf = None;
        self.fmod = None;
        return_load_memory();
    }
}

/// Loading parses the kernel BTF and the eBPF object: tens of MB of heap, freed right after
/// but kept by glibc's malloc, which made an idle daemon's RSS ~40 MB instead of ~6 MB
/// (warden-bench's scale part measures both). Hand it back to the kernel.
pub(super) fn return_load_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}
