//! cgroup2 paths and ids. The id the kernel reports (`bpf_get_current_cgroup_id`) is the
//! cgroup2 directory's kernfs id, which is its inode number on 64-bit hosts.
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};

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

/// The cgroup2 directory of a container from its OCI `linux.cgroupsPath`, under the cgroup2
/// mount `mount`. Two forms exist:
/// - cgroupfs driver: a path, `/kubepods/burstable/pod<uid>/<id>` (relative paths are taken
///   from the mount too);
/// - systemd driver: `slice:prefix:name`, e.g. `kubepods-burstable-pod1.slice:cri-containerd:abc`
///   -> `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope`.
pub fn resolve_cgroups_path(mount: &Path, cgroups_path: &str) -> Result<PathBuf> {
    if cgroups_path.is_empty() {
        bail!("the container has no linux.cgroupsPath");
    }
    let rel = if !cgroups_path.starts_with('/') && cgroups_path.matches(':').count() == 2 {
        systemd_path(cgroups_path)?
    } else {
        PathBuf::from(cgroups_path.trim_start_matches('/'))
    };
    if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        bail!("cgroups path {cgroups_path:?} has `..` or other non-plain components");
    }
    Ok(mount.join(rel))
}

fn systemd_path(spec: &str) -> Result<PathBuf> {
    let mut parts = spec.splitn(3, ':');
    let (slice, prefix, name) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    if name.is_empty() {
        bail!("systemd cgroups path {spec:?} has no unit name");
    }
    let mut path = expand_slice(if slice.is_empty() { "system.slice" } else { slice })?;
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push(unit);
    Ok(path)
}

/// `a-b-c.slice` -> `a.slice/a-b.slice/a-b-c.slice` (systemd's slice nesting); `-.slice` is
/// the root.
fn expand_slice(slice: &str) -> Result<PathBuf> {
    let Some(base) = slice.strip_suffix(".slice") else { bail!("{slice:?} is not a slice name") };
    let mut path = PathBuf::new();
    if base == "-" {
        return Ok(path);
    }
    if base.starts_with('-') || base.ends_with('-') || base.contains("--") || base.contains('/') {
        bail!("invalid slice name {slice:?}");
    }
    let mut acc = String::new();
    for part in base.split('-') {
        if !acc.is_empty() {
            acc.push('-');
        }
        acc.push_str(part);
        path.push(format!("{acc}.slice"));
    }
    Ok(path)
}

/// The cgroup2 directory of process `pid` (the `0::` line of /proc/PID/cgroup), under `mount`.
pub fn cgroup_of_pid(mount: &Path, pid: i32) -> Result<PathBuf> {
    let f = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&f)
        .with_context(|| format!("reading {f} (is process {pid} running, in this pid namespace?)"))?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| anyhow!("{f} has no cgroup2 (0::) line"))?
        .trim();
    if rel.ends_with(" (deleted)") {
        bail!("process {pid}'s cgroup {rel} was deleted");
    }
    let rel = Path::new(rel.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        bail!("process {pid}'s cgroup {} is outside this cgroup namespace's view", rel.display());
    }
    Ok(mount.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_form() {
        let m = Path::new("/sys/fs/cgroup/unified");
        assert_eq!(
            resolve_cgroups_path(m, "/kubepods/burstable/pod12/abc").unwrap(),
            Path::new("/sys/fs/cgroup/unified/kubepods/burstable/pod12/abc")
        );
        assert_eq!(
            resolve_cgroups_path(Path::new("/sys/fs/cgroup"), "k8s.io/abc").unwrap(),
            Path::new("/sys/fs/cgroup/k8s.io/abc")
        );
        assert!(resolve_cgroups_path(m, "/kubepods/../../etc").is_err());
        assert!(resolve_cgroups_path(m, "").is_err());
    }

    #[test]
    fn systemd_form() {
        let m = Path::new("/sys/fs/cgroup");
        assert_eq!(
            resolve_cgroups_path(m, "kubepods-burstable-pod1.slice:cri-containerd:abc").unwrap(),
            Path::new("/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope")
        );
        assert_eq!(
            resolve_cgroups_path(m, "system.slice:docker:x").unwrap(),
            Path::new("/sys/fs/cgroup/system.slice/docker-x.scope")
        );
        assert_eq!(resolve_cgroups_path(m, "-.slice::x").unwrap(), Path::new("/sys/fs/cgroup/x.scope"));
        assert!(resolve_cgroups_path(m, "bad--name.slice:p:x").is_err());
        assert!(resolve_cgroups_path(m, "kubepods.slice:p:").is_err());
    }
}
