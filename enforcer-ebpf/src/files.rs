//! The files layer (BPF-LSM): the files allow-list, r/w/x by path (an LPM trie of path
//! prefixes per profile, WARDEN_FILES). `file_open` and `bprm_check_security` judge the path
//! bpf_d_path gives; the `path_*` hooks (create, remove, rename, link, truncate, chmod, chown)
//! build the path themselves by walking dentries and mounts. Denial = EPERM. In learn and
//! complain modes the paths go to WARDEN_LEARN_FILES (see learn.rs).
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_task, bpf_probe_read_kernel},
    macros::lsm,
    maps::lpm_trie::Key,
    programs::LsmContext,
};
use warden_common::{
    access, file_op, kind, mode, profile_flags, CgroupPolicy, FileKey, PathScratch, FILE_PATH_MAX, PATH_SCRATCH,
};

use crate::{
    globals::{
        global, OFF_BPRM_FILE, OFF_DENTRY_NAME, OFF_DENTRY_NAME_LEN, OFF_DENTRY_PARENT, OFF_FILE_F_INODE,
        OFF_FILE_F_MODE, OFF_FILE_F_PATH, OFF_FS_ROOT, OFF_INODE_I_MODE, OFF_MOUNT_MNT, OFF_MOUNT_MOUNTPOINT,
        OFF_MOUNT_NS, OFF_MOUNT_PARENT, OFF_PATH_DENTRY, OFF_PATH_MNT, OFF_TASK_FS, OFF_VFSMOUNT_ROOT,
    },
    maps::{scratch, WARDEN_FILES},
    policy::{policy_for, profile},
    verdict::{judge, Attempt, LSM_ALLOW, LSM_DENY},
};

const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;
const FMODE_EXEC: u32 = 0x20;

/// Path components (and mount crossings) the dir+dentry path builder follows.
const MAX_PATH_DEPTH: u32 = 40;

/// `inode->i_mode` file types (uapi linux/stat.h).
const S_IFMT: u16 = 0o170000;
const S_IFDIR: u16 = 0o040000;
const S_IFIFO: u16 = 0o010000;
const S_IFSOCK: u16 = 0o140000;

/// A probe read of the `T` at `base + off` (a kernel address).
#[inline(always)]
unsafe fn read<T>(base: *const u8, off: u64) -> Option<T> {
    bpf_probe_read_kernel(base.wrapping_add(off as usize) as *const T).ok()
}

/// The policy of the current process when its files (or execs) are judged or learned.
/// None: not confined, or its profile does not restrict files and it is not learning.
#[inline(always)]
fn files_policy() -> Option<(u64, u64, CgroupPolicy, bool)> {
    let cgid = unsafe { bpf_get_current_cgroup_id() };
    let (root, pol) = policy_for(cgid)?;
    let restricts = match profile(pol.profile_id) {
        None => true, // confined, profile missing: fail closed
        Some(h) => h.flags & profile_flags::FILES != 0,
    };
    if !restricts && pol.mode != mode::LEARN {
        return None;
    }
    Some((cgid, root, pol, restricts))
}

/// The access bits (warden_common::access) the profile grants the path in `s.path` (`n`: its
/// length with the NUL as the kernel returned it, or a negative error): the longest matching
/// rule's, 0 when no rule matches or the path could not be resolved.
#[inline(always)]
fn granted(pol: &CgroupPolicy, s: &mut PathScratch, n: i64) -> u8 {
    if n <= 0 {
        return 0; // unresolvable path (too long, ...): nothing granted, so fail closed
    }
    // A path longer than the key is judged by its first FILE_PATH_MAX bytes: only directory
    // rules can match those, which is exact (no exact rule is that long).
    let bytes = if n as usize > FILE_PATH_MAX { FILE_PATH_MAX } else { n as usize };
    s.prefixlen = 32 + (bytes as u32) * 8;
    s.profile_id_be = pol.profile_id.to_be_bytes();
    let key = unsafe { &*(s as *const PathScratch as *const Key<FileKey>) };
    match WARDEN_FILES.get(key) {
        Some(a) => *a as u8,
        None => 0,
    }
}

/// Judges the path in `s.path` (`n` as for [`granted`]) against the profile: the longest
/// matching rule must grant `need`.
// Inlined into each file hook: the arguments are the hook's own registers, and a struct to
// carry them would only add stack traffic.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn judge_path(
    cgid: u64,
    root: u64,
    pol: &CgroupPolicy,
    restricts: bool,
    s: &mut PathScratch,
    n: i64,
    need: u8,
    op: u16,
    k: u8,
) -> i32 {
    if n <= 0 {
        s.path[0] = 0;
    }
    let allowed = !restricts || granted(pol, s, n) & need == need;
    let a = Attempt {
        kind: k,
        nr: need as u32,
        family: 0,
        port: op,
        addr: [0; 16],
        path: s.path.as_ptr(),
        from_packet: false,
    };
    if judge(cgid, root, pol, allowed, &a) {
        LSM_DENY
    } else {
        LSM_ALLOW
    }
}

/// bpf_d_path of `file->f_path` into the scratch; returns what the helper returned.
#[inline(always)]
fn file_path(s: &mut PathScratch, file: *const u8) -> i64 {
    let p = file.wrapping_add(global(&OFF_FILE_F_PATH) as usize) as *mut aya_ebpf::bindings::path;
    unsafe { aya_ebpf::helpers::generated::bpf_d_path(p, s.path.as_mut_ptr() as *mut _, PATH_SCRATCH as u32) }
}

#[lsm(hook = "file_open")]
#[inline(always)]
pub fn warden_file_open(ctx: LsmContext) -> i32 {
    let Some((cgid, root, pol, restricts)) = files_policy() else { return LSM_ALLOW };
    let file: *const u8 = ctx.arg(0);
    let fmode: u32 = unsafe { read(file, global(&OFF_FILE_F_MODE)) }.unwrap_or(0);
    if fmode & FMODE_EXEC != 0 {
        return LSM_ALLOW; // the exec itself is judged by bprm_check_security
    }
    let mut need = 0u8;
    if fmode & FMODE_READ != 0 {
        need |= access::READ;
    }
    if fmode & FMODE_WRITE != 0 {
        need |= access::WRITE;
    }
    if need == 0 {
        // Neither read nor write: open(2) with O_ACCMODE == 3 (O_PATH opens never reach this
        // hook). The fd serves ioctl(2), which can read and change what the file stands for
        // (a device, a tty), and the kernel's own permission check treats it as read+write
        // (ACC_MODE in fs/namei.c): so does warden. Before, such opens were allowed on any path.
        need = access::READ | access::WRITE;
    }
    if on_internal_mount(file) {
        return LSM_ALLOW;
    }
    let Some(s) = scratch() else { return LSM_DENY };
    let mut n = file_path(s, file);
    // A directory is judged as `path/`, so the rule `/etc/` also covers opendir("/etc").
    let imode: u16 = unsafe {
        read::<*const u8>(file, global(&OFF_FILE_F_INODE)).and_then(|i| read::<u16>(i, global(&OFF_INODE_I_MODE)))
    }
    .unwrap_or(0);
    // FIFOs and sockets opened by path are IPC endpoints, not file contents (runc's exec fifo,
    // reopened through /proc/self/fd at container start, is one): not judged. Creating them
    // (mknod) is.
    if imode & S_IFMT == S_IFIFO || imode & S_IFMT == S_IFSOCK {
        return LSM_ALLOW;
    }
    if imode & S_IFMT == S_IFDIR && n >= 2 && (n as usize) < PATH_SCRATCH - 1 {
        // Through map memory, so the masked index is what the verifier sees.
        s.pos = (n as u64).wrapping_sub(2);
        let last = (unsafe { core::ptr::read_volatile(&s.pos) } as usize) & (PATH_SCRATCH - 1);
        if s.path[last] != b'/' {
            s.path[(last + 1) & (PATH_SCRATCH - 1)] = b'/';
            s.path[(last + 2) & (PATH_SCRATCH - 1)] = 0;
            n += 1;
        }
    }
    judge_path(cgid, root, &pol, restricts, s, n, need, file_op::OPEN, kind::FILE)
}

/// `MNT_NS_INTERNAL` (fs/mount.h): ERR_PTR(-EINVAL) in `mount->mnt_ns` of long-term kernel
/// mounts (clone_private_mount, kern_mount).
const MNT_NS_INTERNAL: u64 = -22i64 as u64;

/// Whether `file` lives on a kernel-internal mount that no path walk in any mount namespace
/// reaches. Since 6.8 overlayfs opens its layers' real files as "backing files" whose f_path is
/// the real path on a private clone of the layer mount (before, it was the overlay path), and
/// that open runs file_open again in the opener's context: judging it would judge the image's
/// layer path (`/var/lib/containerd/...`), not the path the process opened. The process's own
/// open of the overlay file was judged just before (do_dentry_open calls security_file_open
/// before f_op->open). Otherwise only magic links (/proc/PID/fd, /proc/PID/ns) reach such
/// mounts (memfd, nsfs), for objects the process already holds: nothing a path rule can name.
#[inline(always)]
fn on_internal_mount(file: *const u8) -> bool {
    let f_path = global(&OFF_FILE_F_PATH);
    let Some(mnt) = (unsafe { read::<u64>(file, f_path + global(&OFF_PATH_MNT)) }) else { return false };
    let mount = (mnt as *const u8).wrapping_sub(global(&OFF_MOUNT_MNT) as usize);
    matches!(unsafe { read::<u64>(mount, global(&OFF_MOUNT_NS)) }, Some(MNT_NS_INTERNAL))
}

/// Runs for the executable and again for a script's interpreter (binfmt_script), so both need x.
#[lsm(hook = "bprm_check_security")]
#[inline(always)]
pub fn warden_bprm_check(ctx: LsmContext) -> i32 {
    let Some((cgid, root, pol, restricts)) = files_policy() else { return LSM_ALLOW };
    let bprm: *const u8 = ctx.arg(0);
    // A direct load (not a probe read): the verifier knows bprm->file as a trusted struct file.
    let file: *const u8 =
        unsafe { core::ptr::read_volatile(bprm.wrapping_add(global(&OFF_BPRM_FILE) as usize) as *const *const u8) };
    let Some(s) = scratch() else { return LSM_DENY };
    let n = file_path(s, file);
    judge_path(cgid, root, &pol, restricts, s, n, access::EXEC, file_op::EXEC, kind::EXEC)
}

/// The exec check for the fmod_ret path (issue 18; the loader takes it for
/// `security_bprm_check` instead of `warden_bprm_check`): the verifier allows bpf_d_path in
/// fmod_ret programs only on an allow-list of functions, and `security_bprm_check` is not on
/// it. So the path is built by the dentry walk the path_* hooks use. Never loaded on the lsm/
/// path. Its own section: two programs in one section make 6.1 see the second as a subprogram.
#[lsm(hook = "bprm_check_security_walk")]
#[inline(always)]
pub fn warden_bprm_check_walk(ctx: LsmContext) -> i32 {
    let bprm: *const u8 = ctx.arg(0);
    let file: *const u8 =
        unsafe { core::ptr::read_volatile(bprm.wrapping_add(global(&OFF_BPRM_FILE) as usize) as *const *const u8) };
    whole_path(file.wrapping_add(global(&OFF_FILE_F_PATH) as usize), access::EXEC, file_op::EXEC, kind::EXEC)
}

/// Builds the path of `dentry` on mount `vfsmnt`, as the current task sees it (up to its root,
/// across mounts), into `s.path`; returns its length with the NUL, or -1. bpf_d_path is not
/// allowed in the path_* hooks, so this walks d_parent / mnt_parent like d_path does.
#[inline(always)]
fn build_path(s: &mut PathScratch, vfsmnt: *const u8, dentry: *const u8) -> i64 {
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let (root_mnt, root_dentry) = unsafe {
        let Some(fs) = read::<*const u8>(task, global(&OFF_TASK_FS)) else { return -1 };
        let r = global(&OFF_FS_ROOT);
        let Some(m) = read::<*const u8>(fs, r + global(&OFF_PATH_MNT)) else { return -1 };
        let Some(d) = read::<*const u8>(fs, r + global(&OFF_PATH_DENTRY)) else { return -1 };
        (m as u64, d as u64)
    };
    const END: usize = PATH_SCRATCH - 1;
    const MASK: u64 = (PATH_SCRATCH - 1) as u64;
    s.work[END] = 0;
    s.pos = END as u64;
    s.cur_mnt = vfsmnt as u64;
    s.cur_dentry = dentry as u64;
    let mut done = false;
    let mut i = 0;
    while i < MAX_PATH_DEPTH {
        i += 1;
        // Loop state from map memory: unknown scalars to the verifier, so iterations prune.
        let mnt = unsafe { core::ptr::read_volatile(&s.cur_mnt) };
        let den = unsafe { core::ptr::read_volatile(&s.cur_dentry) };
        let pos = unsafe { core::ptr::read_volatile(&s.pos) } & MASK;
        if den == root_dentry && mnt == root_mnt {
            done = true;
            break;
        }
        let Some(mnt_root) = (unsafe { read::<u64>(mnt as *const u8, global(&OFF_VFSMOUNT_ROOT)) }) else { return -1 };
        if den == mnt_root {
            // Top of this mount: continue from its mountpoint in the parent mount.
            let mount = (mnt as *const u8).wrapping_sub(global(&OFF_MOUNT_MNT) as usize);
            let Some(parent) = (unsafe { read::<u64>(mount, global(&OFF_MOUNT_PARENT)) }) else { return -1 };
            if parent == mount as u64 {
                done = true; // root of the mount tree
                break;
            }
            let Some(mp) = (unsafe { read::<u64>(mount, global(&OFF_MOUNT_MOUNTPOINT)) }) else { return -1 };
            s.cur_dentry = mp;
            s.cur_mnt = parent + global(&OFF_MOUNT_MNT);
            continue;
        }
        let Some(parent) = (unsafe { read::<u64>(den as *const u8, global(&OFF_DENTRY_PARENT)) }) else { return -1 };
        if parent == den {
            done = true; // root of a detached tree
            break;
        }
        let Some(len) = (unsafe { read::<u32>(den as *const u8, global(&OFF_DENTRY_NAME_LEN)) }) else { return -1 };
        let Some(name) = (unsafe { read::<u64>(den as *const u8, global(&OFF_DENTRY_NAME)) }) else { return -1 };
        let len = (len & 0xff) as u64;
        if len + 1 >= pos {
            return -1; // longer than the scratch: fail closed
        }
        let p = (pos - len) & MASK;
        if unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                s.work.as_mut_ptr().wrapping_add(p as usize) as *mut _,
                len as u32,
                name as *const _,
            )
        } != 0
        {
            return -1;
        }
        let p = (p.wrapping_sub(1)) & MASK;
        s.work[p as usize] = b'/';
        s.pos = p;
        s.cur_dentry = parent;
    }
    if !done {
        return -1;
    }
    let mut pos = s.pos & MASK;
    if pos == END as u64 {
        pos -= 1;
        s.work[pos as usize] = b'/';
    }
    let n = ((PATH_SCRATCH as u64) - pos) & MASK;
    let src = s.work.as_ptr().wrapping_add(pos as usize);
    if unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(s.path.as_mut_ptr() as *mut _, n as u32, src as *const _)
    } != 0
    {
        return -1;
    }
    n as i64
}

/// Judges `dentry` below the directory `dir` (a `struct path *`) for `need`, reported as `k`.
#[inline(always)]
fn dir_entry(dir: *const u8, dentry: *const u8, need: u8, op: u16, k: u8) -> i32 {
    let Some((cgid, root, pol, restricts)) = files_policy() else { return LSM_ALLOW };
    let Some(s) = scratch() else { return LSM_DENY };
    let Some(mnt) = (unsafe { read::<*const u8>(dir, global(&OFF_PATH_MNT)) }) else { return LSM_DENY };
    let n = build_path(s, mnt, dentry);
    judge_path(cgid, root, &pol, restricts, s, n, need, op, k)
}

/// Judges the object of a `struct path *` for `need`, reported as `k`.
#[inline(always)]
fn whole_path(path: *const u8, need: u8, op: u16, k: u8) -> i32 {
    let Some(dentry) = (unsafe { read::<*const u8>(path, global(&OFF_PATH_DENTRY)) }) else { return LSM_DENY };
    dir_entry(path, dentry, need, op, k)
}

#[lsm(hook = "path_mknod")]
#[inline(always)]
pub fn warden_path_mknod(ctx: LsmContext) -> i32 {
    dir_entry(ctx.arg(0), ctx.arg(1), access::WRITE, file_op::CREATE, kind::FILE)
}

#[lsm(hook = "path_mkdir")]
#[inline(always)]
pub fn warden_path_mkdir(ctx: LsmContext) -> i32 {
    dir_entry(ctx.arg(0), ctx.arg(1), access::WRITE, file_op::MKDIR, kind::FILE)
}

#[lsm(hook = "path_unlink")]
#[inline(always)]
pub fn warden_path_unlink(ctx: LsmContext) -> i32 {
    dir_entry(ctx.arg(0), ctx.arg(1), access::WRITE, file_op::UNLINK, kind::FILE)
}

#[lsm(hook = "path_rmdir")]
#[inline(always)]
pub fn warden_path_rmdir(ctx: LsmContext) -> i32 {
    dir_entry(ctx.arg(0), ctx.arg(1), access::WRITE, file_op::RMDIR, kind::FILE)
}

#[lsm(hook = "path_symlink")]
#[inline(always)]
pub fn warden_path_symlink(ctx: LsmContext) -> i32 {
    dir_entry(ctx.arg(0), ctx.arg(1), access::WRITE, file_op::SYMLINK, kind::FILE)
}

/// Both ends of a rename need w.
#[lsm(hook = "path_rename")]
#[inline(always)]
pub fn warden_path_rename(ctx: LsmContext) -> i32 {
    let r = dir_entry(ctx.arg(0), ctx.arg(1), access::WRITE, file_op::RENAME_FROM, kind::FILE);
    if r != LSM_ALLOW {
        return r;
    }
    dir_entry(ctx.arg(2), ctx.arg(3), access::WRITE, file_op::RENAME_TO, kind::FILE)
}

/// The new name needs w, and since files are judged by path, a hard link must not reach more
/// than its source: the source must grant every access the new name would (and at least r, a
/// link being a new way to open it). Otherwise `ln /etc/passwd /tmp/p` under `/etc/` r and
/// `/tmp/` rw gives a writable name for /etc/passwd (same filesystem).
#[lsm(hook = "path_link")]
#[inline(always)]
pub fn warden_path_link(ctx: LsmContext) -> i32 {
    let old_dentry: *const u8 = ctx.arg(0);
    let new_dir: *const u8 = ctx.arg(1);
    let new_dentry: *const u8 = ctx.arg(2);
    let Some((cgid, root, pol, restricts)) = files_policy() else { return LSM_ALLOW };
    let Some(s) = scratch() else { return LSM_DENY };
    // Both names are on new_dir's mount: the kernel refuses cross-mount links before this hook.
    let Some(mnt) = (unsafe { read::<*const u8>(new_dir, global(&OFF_PATH_MNT)) }) else { return LSM_DENY };
    let n = build_path(s, mnt, new_dentry);
    let new_grants = if restricts { granted(&pol, s, n) } else { 0 };
    let r = judge_path(cgid, root, &pol, restricts, s, n, access::WRITE, file_op::LINK, kind::FILE);
    if r != LSM_ALLOW {
        return r;
    }
    let n = build_path(s, mnt, old_dentry);
    judge_path(cgid, root, &pol, restricts, s, n, new_grants | access::READ, file_op::LINK_SOURCE, kind::FILE)
}

#[lsm(hook = "path_truncate")]
#[inline(always)]
pub fn warden_path_truncate(ctx: LsmContext) -> i32 {
    whole_path(ctx.arg(0), access::WRITE, file_op::TRUNCATE, kind::FILE)
}

#[lsm(hook = "path_chmod")]
#[inline(always)]
pub fn warden_path_chmod(ctx: LsmContext) -> i32 {
    whole_path(ctx.arg(0), access::WRITE, file_op::CHMOD, kind::FILE)
}

#[lsm(hook = "path_chown")]
#[inline(always)]
pub fn warden_path_chown(ctx: LsmContext) -> i32 {
    whole_path(ctx.arg(0), access::WRITE, file_op::CHOWN, kind::FILE)
}
