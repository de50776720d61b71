//! The OCI-hook side of confinement: pod and container names from a container's OCI
//! annotations, and one record file per container so that a restarted daemon can release it
//! at poststop.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::{ConfinedContainer, Daemon, Via};
use crate::cgroup;

/// Pod and container names of an OCI container, from the annotations CRI-O and containerd's
/// CRI set; a plain runc or Podman container has none: its id stands for the container name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciMeta {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    /// The pod's infrastructure (pause) container: never confined, as with NRI.
    pub sandbox: bool,
}

pub fn oci_meta(ann: &BTreeMap<String, String>, id: &str) -> OciMeta {
    let first = |keys: &[&str]| keys.iter().find_map(|k| ann.get(*k)).cloned().unwrap_or_default();
    let container = first(&["io.kubernetes.container.name", "io.kubernetes.cri.container-name"]);
    let kind = first(&["io.kubernetes.cri-o.ContainerType", "io.kubernetes.cri.container-type"]);
    OciMeta {
        namespace: first(&["io.kubernetes.pod.namespace", "io.kubernetes.cri.sandbox-namespace"]),
        pod: first(&["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"]),
        pod_uid: first(&["io.kubernetes.pod.uid", "io.kubernetes.cri.sandbox-uid"]),
        container: if container.is_empty() { id.to_string() } else { container },
        sandbox: kind == "sandbox",
    }
}

/// Container ids as runtimes make them: no path tricks, bounded.
pub fn valid_container_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 256
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
    {
        bail!("invalid container id {id:?}");
    }
    Ok(())
}

/// NRI tells a restarted daemon which containers run (Synchronize); for OCI-hook containers no
/// one does, so the daemon keeps one small file per container beside its socket (a tmpfs under
/// /run: gone at reboot, like the cgroups and pins it describes).
pub fn oci_state_dir(socket: &Path) -> PathBuf {
    socket.parent().unwrap_or(Path::new("/")).join("oci-containers")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OciRecord {
    id: String,
    namespace: String,
    pod: String,
    container: String,
    profile: String,
    mode: crate::enforcer::Mode,
    cgroup_id: u64,
    cgroup_path: PathBuf,
    /// Records of an older daemon have none.
    #[serde(default)]
    rule: String,
    #[serde(default)]
    baseline: Option<String>,
}

impl OciRecord {
    pub(crate) fn of(id: &str, c: &ConfinedContainer) -> OciRecord {
        OciRecord {
            id: id.to_string(),
            namespace: c.namespace.clone(),
            pod: c.pod.clone(),
            container: c.container.clone(),
            profile: c.profile.clone(),
            mode: c.mode,
            cgroup_id: c.cgroup_id,
            cgroup_path: c.cgroup_path.clone(),
            rule: c.rule.clone(),
            baseline: c.baseline.clone(),
        }
    }
}

pub(crate) fn write_record(dir: &Path, r: &OciRecord) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.json", r.id));
    let tmp = dir.join(format!(".{}.json.tmp", r.id));
    std::fs::write(&tmp, serde_json::to_vec(r)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))
}

pub(crate) fn remove_record(dir: &Path, id: &str) {
    if valid_container_id(id).is_ok() {
        let _ = std::fs::remove_file(dir.join(format!("{id}.json")));
    }
}

impl Daemon {
    /// The OCI-hook records' folder (beside the control socket).
    pub fn oci_dir(&self) -> PathBuf {
        oci_state_dir(&self.cfg.control_socket)
    }

    /// Takes back the containers of the records whose cgroup still exists and is still confined
    /// in the pins; releases the pinned entry of a container whose cgroup is gone.
    pub fn adopt_oci(&self) {
        let dir = self.oci_dir();
        let dir = dir.as_path();
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let rec: OciRecord =
                match std::fs::read(&path).map_err(anyhow::Error::from).and_then(|b| Ok(serde_json::from_slice(&b)?)) {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(file = %path.display(), error = %format!("{e:#}"), "unreadable OCI-hook record; removed");
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                };
            let pinned = self.enforcer.lock().unwrap().maps().roots().iter().any(|(id, _)| *id == rec.cgroup_id);
            let alive = cgroup::cgroup_id(&rec.cgroup_path).ok() == Some(rec.cgroup_id);
            if pinned && alive {
                info!(container_id = %rec.id, namespace = %rec.namespace, pod = %rec.pod, container = %rec.container, profile = %rec.profile,
                  cgroup_id = rec.cgroup_id, "adopted an OCI-hook container confined by an earlier daemon");
                self.registry.insert(
                    rec.id.clone(),
                    ConfinedContainer {
                        cgroup_id: rec.cgroup_id,
                        namespace: rec.namespace,
                        pod: rec.pod,
                        container: rec.container,
                        profile: rec.profile,
                        mode: rec.mode,
                        cgroup_path: rec.cgroup_path,
                        via: Via::OciHook,
                        rule: rec.rule,
                        baseline: rec.baseline,
                    },
                );
                continue;
            }
            if pinned {
                info!(container_id = %rec.id, cgroup_id = rec.cgroup_id, "OCI-hook container is gone: releasing its pinned entry");
                if let Err(e) = self.enforcer.lock().unwrap().release(rec.cgroup_id) {
                    error!(container_id = %rec.id, error = %format!("{e:#}"), "release failed");
                }
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_metadata_from_cri_o_containerd_and_plain_runc() {
        let m =
            |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let crio = oci_meta(
            &m(&[
                ("io.kubernetes.pod.namespace", "shop"),
                ("io.kubernetes.pod.name", "web-1"),
                ("io.kubernetes.container.name", "app"),
            ]),
            "abc",
        );
        assert_eq!(
            (crio.namespace.as_str(), crio.pod.as_str(), crio.container.as_str(), crio.sandbox),
            ("shop", "web-1", "app", false)
        );
        let ctrd = oci_meta(
            &m(&[("io.kubernetes.cri.sandbox-namespace", "ns"), ("io.kubernetes.cri.container-type", "sandbox")]),
            "p",
        );
        assert!(ctrd.sandbox);
        assert_eq!(ctrd.namespace, "ns");
        let plain = oci_meta(&m(&[("warden.io/profile", "web")]), "my-ctr");
        assert_eq!((plain.namespace.as_str(), plain.pod.as_str(), plain.container.as_str()), ("", "", "my-ctr"));
    }

    #[test]
    fn container_ids() {
        assert!(valid_container_id("abc-1_2.3").is_ok());
        for bad in ["", "../x", "a/b", "a b", &"x".repeat(257)] {
            assert!(valid_container_id(bad).is_err(), "{bad}");
        }
    }
}
