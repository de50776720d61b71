//! No-op BPF trampoline programs (fentry, fmod_ret) on kernel functions, for the syscall-layer
//! measurements of issue 19, item 3. Loaded through bpf(2) directly: a two-instruction program
//! needs no object file, and aya loads a program once per object while these go on dozens or
//! hundreds of targets. Nothing here is used by the engine.
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use aya_obj::btf::{Btf, BtfKind};
use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Runs before the function; its return value is ignored.
    Fentry,
    /// fmod_ret: a non-zero return skips the function (only where the verifier allows it).
    ModifyReturn,
}

/// An attached program; dropping it closes the link and the program (detach).
pub struct Attached {
    _link: OwnedFd,
    _prog: OwnedFd,
}

fn sys_bpf(cmd: bpf_cmd, attr: &bpf_attr) -> std::io::Result<OwnedFd> {
    let r = unsafe {
        libc::syscall(libc::SYS_bpf, cmd as libc::c_long, attr as *const bpf_attr, std::mem::size_of::<bpf_attr>())
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Loads `r0 = 0; exit` as a tracing program of `kind` on vmlinux function `target` and
/// attaches it. The error says what the kernel refused, with the verifier's last line.
pub fn attach_noop(btf: &Btf, target: &str, kind: Kind) -> Result<Attached, String> {
    let id = btf
        .id_by_type_name_kind(target, BtfKind::Func)
        .map_err(|_| format!("{target}: not a function in the kernel's BTF"))?;
    // mov64 r0, 0 ; exit
    let insns: [u64; 2] =
        [u64::from_le_bytes([0xb7, 0, 0, 0, 0, 0, 0, 0]), u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0])];
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    unsafe {
        let p = &mut attr.__bindgen_anon_3;
        p.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
        p.expected_attach_type = match kind {
            Kind::Fentry => bpf_attach_type::BPF_TRACE_FENTRY,
            Kind::ModifyReturn => bpf_attach_type::BPF_MODIFY_RETURN,
        } as u32;
        p.insns = insns.as_ptr() as u64;
        p.insn_cnt = insns.len() as u32;
        p.license = license.as_ptr() as u64;
        p.attach_btf_id = id;
        p.log_level = 1;
        p.log_size = log.len() as u32;
        p.log_buf = log.as_mut_ptr() as u64;
    }
    let prog = sys_bpf(bpf_cmd::BPF_PROG_LOAD, &attr).map_err(|e| {
        let text = String::from_utf8_lossy(&log);
        let last = text.trim_end_matches('\0').lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").to_string();
        if last.is_empty() {
            format!("{target}: load refused: {e}")
        } else {
            format!("{target}: load refused: {e} (verifier: {last})")
        }
    })?;
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.raw_tracepoint.prog_fd = prog.as_raw_fd() as u32;
    // Right after a detach the kernel may still be tearing the old trampoline down (EBUSY).
    let mut tries = 0;
    let link = loop {
        match sys_bpf(bpf_cmd::BPF_RAW_TRACEPOINT_OPEN, &attr) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => break r.map_err(|e| format!("{target}: attach refused: {e}"))?,
        }
    };
    Ok(Attached { _link: link, _prog: prog })
}

/// The kernel function a native (x86_64) syscall enters through, if the BTF has it. The
/// table name is not always the function's (`stat` enters `newstat`), and `SYSCALL_DEFINE0`
/// syscalls are an alias of `__do_sys_<name>` with no `__x64_sys_` BTF entry on recent
/// kernels. Unmapped names that exist under another name are skipped, not guessed.
pub fn entry_point(btf: &Btf, name: &str) -> Option<String> {
    let sym = match name {
        "stat" | "fstat" | "lstat" | "uname" => format!("new{name}"),
        "sendfile" => "sendfile64".into(),
        "umount2" => "umount".into(),
        // ia32-only or unimplemented rows: x86_64 never calls __x64_sys_uselib and friends.
        "uselib" | "create_module" | "get_kernel_syms" | "query_module" | "nfsservctl" | "getpmsg" | "putpmsg"
        | "afs_syscall" | "tuxcall" | "security" | "vserver" | "_sysctl" => return None,
        n => n.into(),
    };
    [format!("__x64_sys_{sym}"), format!("__do_sys_{sym}")]
        .into_iter()
        .find(|f| btf.id_by_type_name_kind(f, BtfKind::Func).is_ok())
}
