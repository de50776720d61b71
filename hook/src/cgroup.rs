//! cgroup2 paths and ids. The id the kernel reports (`bpf_get_current_cgroup_id`) is the
//! cgroup2 directory's kernfs id, which is its inode number on 64-bit hosts.
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

const CGROUP2_SUPER_MAGIC: i64 = 0x63677270;

/// Where cgroup2 is mounted: `/sys/fs/cgroup` on pure v2 hosts, `/sys/fs/cgroup/unified` on
/// hybrid ones; read from /proc/self/mountinfo rather than guessed.
pub fn cgroup2_mount() -> Result<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    for line in info.lines() {
        // fields: id parent maj:min root mountpoint opts ... - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else { continue };
        if right.split_whitespace().next() == Some("cgroup2") {
            if let Some(mp) = left.split_whitespace().nth(4) {
                return Ok(PathBuf::from(mp));
            }
        }
    }
    bail!("cgroup2 is not mounted (warden needs the unified hierarchy: mount -t cgroup2 none /sys/fs/cgroup)")
}

/// The cgroup2 id of the directory at `path`, checking that it is a cgroup2 directory.
pub fn cgroup_id(path: &Path) -> Result<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cgroup {} does not exist", path.display()));
    }
    if st.f_type as i64 != CGROUP2_SUPER_MAGIC {
        bail!("{} is not on a cgroup2 filesystem", path.display());
    }
    let md = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    if !md.is_dir() {
        bail!("{} is not a cgroup directory", path.display());
    }
    Ok(md.ino())
}

/// Every cgroup directory strictly below `path`, parents before children.
pub fn descendants(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push(e.path());
                stack.push(e.path());
            }
        }
    }
    out
}

/// Finds the cgroup2 directory whose id is `id` (walks the tree: for display only).
pub fn path_of(id: u64) -> Option<PathBuf> {
    let root = cgroup2_mount().ok()?;
    if cgroup_id(&root).ok() == Some(id) {
        return Some(root);
    }
    descendants(&root).into_iter().find(|p| cgroup_id(p).ok() == Some(id))
}
