//! The BPF-LSM programs on kernels where `bpf` is not an active LSM (Ubuntu's and Flatcar's
//! default boot): the same compiled `lsm/` programs, loaded as `fmod_ret` (BPF_MODIFY_RETURN)
//! tracing programs on the kernel's `security_<hook>` functions (issue 18).
//!
//! Why this is the same check: every LSM hook is called through its `security_<hook>` wrapper
//! (security/security.c), which takes the hook's arguments in the same order. The verifier
//! accepts fmod_ret on any function named `security_*` without the error-injection list
//! (`check_attach_modify_return`), and a non-zero return skips the wrapper and makes the caller
//! see that error: the operation fails before it happens, as a BPF-LSM denial does. Zero lets
//! the wrapper run the other LSMs, as a BPF-LSM "allow" does.
//!
//! Why an own loader: aya 0.14 cannot parse an object with an `fmod_ret/` section and loads a
//! program under exactly one type. So the object is parsed again with aya-obj, its map
//! references are pointed at the maps aya already made (same fds: one set of maps, whichever
//! program reads them), its calls linked, and each program loaded with bpf(2) as
//! TRACING/MODIFY_RETURN. The link is pinned where the `lsm/` link would be, so everything
//! else (attach state, detach, gc) is the same for both paths.
use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use aya::maps::Map;
use aya::Ebpf;
use aya_obj::btf::{Btf, BtfKind};
use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_insn};
use aya_obj::Object;

use super::programs::EBPF_OBJECT;
use crate::kernel::probe::{load_modify_return, sys_bpf};

/// The kernel function a BPF-LSM hook is called through. The wrapper's name is the hook's with
/// `security_` in front, but for these (security/security.c).
pub(super) fn security_function(hook: &str) -> String {
    match hook {
        "bprm_check_security" => "security_bprm_check".into(),
        "userns_create" => "security_create_user_ns".into(),
        h => format!("security_{h}"),
    }
}

/// The eBPF object with its maps relocated to the loaded object's maps and its calls linked:
/// the instructions of every program, ready for BPF_PROG_LOAD.
pub(super) struct Relocated {
    obj: Object,
    /// The kernel's BTF as btf-rs reads it, for the argument-layout check.
    types: btf_rs::Btf,
}

fn map_fd(m: &Map) -> Option<RawFd> {
    let d = match m {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::PerCpuLruHashMap(d)
        | Map::RingBuf(d)
        | Map::ProgramArray(d)
        | Map::Unsupported(d) => d,
        _ => return None,
    };
    Some(d.fd().as_fd().as_raw_fd())
}

impl Relocated {
    /// `ebpf`: the object as aya loaded it (its maps, with the globals already written and
    /// frozen, are the ones these programs must use); `kernel_btf`: for CO-RE relocations.
    pub(super) fn new(ebpf: &Ebpf, kernel_btf: &Btf) -> Result<Self> {
        let mut obj = Object::parse(EBPF_OBJECT).context("parsing warden's eBPF object for fmod_ret")?;
        obj.relocate_btf(kernel_btf).context("CO-RE relocations of the eBPF object")?;
        let text_sections: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
        let mut fds = Vec::new();
        for (name, m) in ebpf.maps() {
            let Some(fd) = map_fd(m) else { bail!("map {name}: a map type the fmod_ret loader does not handle") };
            fds.push((name.to_string(), fd));
        }
        // Every map of the object must be one aya made: a reference left unrelocated would
        // not load, but say which.
        for name in obj.maps.keys() {
            if !fds.iter().any(|(n, _)| n == name) {
                bail!("map {name} of the eBPF object is not loaded");
            }
        }
        let maps: Vec<(String, RawFd, aya_obj::Map)> = fds
            .into_iter()
            .map(|(n, fd)| {
                let m = obj.maps[&n].clone();
                (n, fd, m)
            })
            .collect();
        obj.relocate_maps(maps.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)), &text_sections)
            .map_err(|e| anyhow!("relocating map references: {e}"))?;
        obj.relocate_calls(&text_sections).map_err(|e| anyhow!("linking calls: {e}"))?;
        let types = btf_rs::Btf::from_file(crate::kernel::btf::VMLINUX_BTF).context("reading the kernel BTF")?;
        Ok(Relocated { obj, types })
    }

    /// Whether `security_<hook>` takes the arguments the lsm/`hook` program reads: the same
    /// parameter types as the kernel's `bpf_lsm_<hook>` (the function BPF-LSM programs attach
    /// to). A wrapper that differed would make the program read the wrong argument, so it is
    /// refused rather than loaded.
    pub(super) fn check_layout(&self, hook: &str) -> Result<()> {
        layout_matches(&self.types, hook)
    }

    fn instructions(&self, prog: &str) -> Result<&[bpf_insn]> {
        let p = self.obj.programs.get(prog).ok_or_else(|| anyhow!("program {prog} missing from the object"))?;
        let f = self.obj.functions.get(&p.function_key()).ok_or_else(|| anyhow!("program {prog} has no code"))?;
        Ok(&f.instructions)
    }

    /// Loads program `prog` as fmod_ret on `security_<hook>`. The error carries the
    /// verifier's last lines.
    pub(super) fn load(&self, prog: &str, hook: &str, kernel_btf: &Btf) -> Result<OwnedFd> {
        let target = security_function(hook);
        let id = kernel_btf
            .id_by_type_name_kind(&target, BtfKind::Func)
            .map_err(|_| anyhow!("the kernel has no function {target} in its BTF (inlined or not built)"))?;
        let insns = self.instructions(prog)?;
        // bpf_insn is the kernel's 8-byte instruction (4-byte aligned: read as bytes).
        let raw = unsafe { std::slice::from_raw_parts(insns.as_ptr() as *const u8, std::mem::size_of_val(insns)) };
        let r = load_modify_return(raw, prog, id, None);
        let Err(e) = r else { return r };
        // Load again with the verifier's log for the error (not on the fast path).
        let mut log = vec![0u8; 64 * 1024];
        let _ = load_modify_return(raw, prog, id, Some(&mut log));
        let text = String::from_utf8_lossy(&log);
        let tail: Vec<&str> = text.trim_end_matches('\0').lines().rev().take(4).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(anyhow!("{e}; verifier: {}", tail.join(" | ")))
            .with_context(|| format!("loading {prog} as fmod_ret on {target}"))
    }
}

/// Attaches loaded tracing program `prog` and pins its link at `pin` (the link lives while the
/// pin does). EBUSY right after a detach (the old trampoline is freed asynchronously) is
/// retried for up to ~1 s, as for `lsm/` attaches.
pub(super) fn attach_and_pin(prog: &OwnedFd, pin: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.raw_tracepoint.prog_fd = prog.as_raw_fd() as u32;
    let mut tries = 0;
    let link = loop {
        match sys_bpf(bpf_cmd::BPF_RAW_TRACEPOINT_OPEN, &attr) {
            Err(e)
                if tries < 100
                    && e.downcast_ref::<std::io::Error>().and_then(|e| e.raw_os_error()) == Some(libc::EBUSY) =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => break r.context("attaching the fmod_ret program")?,
        }
    };
    let path = CString::new(pin.as_os_str().as_bytes())?;
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_4.pathname = path.as_ptr() as u64;
    attr.__bindgen_anon_4.bpf_fd = link.as_raw_fd() as u32;
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_PIN as libc::c_long,
            &attr as *const bpf_attr,
            std::mem::size_of::<bpf_attr>(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("pinning {}", pin.display()));
    }
    Ok(())
}

/// See [`Relocated::check_layout`].
fn layout_matches(types: &btf_rs::Btf, hook: &str) -> Result<()> {
    use crate::kernel::btf::function_signature;
    let target = security_function(hook);
    let lsm = format!("bpf_lsm_{hook}");
    let want = function_signature(types, &lsm).with_context(|| {
        format!("cannot check what {target} takes: the kernel has no {lsm} (it needs CONFIG_BPF_LSM=y)")
    })?;
    let have = function_signature(types, &target)?;
    if want != have {
        bail!(
            "{target} takes ({}) but the lsm/{hook} program reads ({}): not run as fmod_ret",
            have.join(", "),
            want.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the running kernel, every hook warden uses has a security_ wrapper with the hook's
    /// arguments (the name mapping included), and a mismatch is detected. Needs the kernel's
    /// BTF and CONFIG_BPF_LSM (bpf_lsm_* functions); with CI=true their absence fails.
    #[test]
    fn security_functions_take_the_hooks_arguments() {
        let btf = Path::new(crate::kernel::btf::VMLINUX_BTF);
        let types = match btf_rs::Btf::from_file(btf) {
            Ok(t) if crate::kernel::btf::function_signature(&t, "bpf_lsm_file_open").is_ok() => t,
            _ => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI=true: this kernel has no BTF with bpf_lsm_* functions"
                );
                eprintln!("SKIPPED: no kernel BTF with bpf_lsm_* functions");
                return;
            }
        };
        let mut checked = 0;
        for (_, hook, _, required) in super::super::programs::LSM_PROGRAMS {
            match layout_matches(&types, hook) {
                Ok(()) => checked += 1,
                // An optional hook this kernel lacks altogether (no bpf_lsm_ function either).
                Err(_)
                    if !required
                        && crate::kernel::btf::function_signature(&types, &format!("bpf_lsm_{hook}")).is_err() => {}
                Err(e) => panic!("{hook}: {e:#}"),
            }
        }
        assert!(checked >= 20, "only {checked} hooks checked");
        // The check is not vacuous: two different prototypes differ.
        let a = crate::kernel::btf::function_signature(&types, "security_file_open").unwrap();
        let b = crate::kernel::btf::function_signature(&types, "security_path_unlink").unwrap();
        assert_eq!(a, vec!["ptr struct file".to_string()]);
        assert_ne!(a, b);
    }
}
