//! A private containerd 1.7 with NRI for tests: everything (root, state, sockets, NRI socket,
//! config, logs) under one temp folder, images imported from the local OCI tarballs that
//! scripts/containerd.sh builds, CRI driven over its socket with the `k8s-cri` crate.
//!
//! Drop cleans up even after a failed test: stops and removes the pods it created (CRI),
//! kills the containerd it started (its own pid only) and any shim serving that containerd's
//! address, kills and removes the pod cgroups under its private cgroup parent, removes the
//! shim sockets its pods got under /run/containerd/s, and unmounts whatever is still mounted
//! below its temp folder.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// Where scripts/containerd.sh put things (from `--print-env`).
#[derive(Clone, Debug)]
pub struct Install {
    /// containerd's binaries: 1.7 (trixie), or 2.x (sid) under `WARDEN_TEST_CONTAINERD=2`.
    pub bin_dir: PathBuf,
    /// Whether `bin_dir` is containerd 2.x (config version 3, the split CRI plugins).
    pub v2: bool,
    pub busybox_tar: PathBuf,
    pub busybox_image: String,
    pub pause_tar: PathBuf,
    pub pause_image: String,
    /// The OCI runtime containerd's runc shim runs (see [`oci_runtime_choice`]).
    pub oci_runtime: PathBuf,
}

impl Install {
    /// Runs the idempotent installer (seconds when everything is there already).
    pub fn ensure() -> Result<Install> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/containerd.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("--print-env")
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!("{} failed ({})", script.display(), out.status);
        }
        let env: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let get = |k: &str| env.get(k).cloned().with_context(|| format!("{} did not print {k}", script.display()));
        let v2 = containerd_major() == 2;
        Ok(Install {
            bin_dir: get(if v2 { "WARDEN_CONTAINERD2_BIN" } else { "WARDEN_CONTAINERD_BIN" })?.into(),
            v2,
            busybox_tar: get("WARDEN_BUSYBOX_IMAGE_TAR")?.into(),
            busybox_image: get("WARDEN_BUSYBOX_IMAGE")?,
            pause_tar: get("WARDEN_PAUSE_IMAGE_TAR")?.into(),
            pause_image: get("WARDEN_PAUSE_IMAGE")?,
            oci_runtime: match oci_runtime_choice() {
                OciRuntime::Runc => crate::gate::RUNC.into(),
                OciRuntime::Crun => get("WARDEN_CRUN")?.into(),
                OciRuntime::Path(p) => p,
            },
        })
    }
}

/// Why this machine cannot run the containerd tests, if it cannot.
pub fn missing_prerequisite() -> Option<String> {
    crate::gate::missing(&[crate::Need::Root, crate::Need::Containerd])
}

pub const NAMESPACE: &str = "k8s.io";

/// A plugin containerd launches itself (pre-launched NRI plugin, connection on fd 3).
#[derive(Clone, Debug)]
pub struct Prelaunch {
    /// `<idx>-<name>`, the file name under the plugin folder.
    pub name: String,
    pub exe: PathBuf,
    /// Handed to the plugin in Configure (from `<plugin_config_path>/<idx>-<name>.conf`).
    pub config: String,
}

pub struct Containerd {
    pub install: Install,
    dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub address: PathBuf,
    pub nri_socket: PathBuf,
    /// Private cgroup parent of every pod this instance creates (relative to each hierarchy).
    pub cgroup_parent: String,
    child: Option<Child>,
    pods: Mutex<Vec<String>>,
    cri: Mutex<Option<RuntimeServiceClient<Channel>>>,
    prelaunch: Vec<Prelaunch>,
}

impl Containerd {
    /// Installs if needed, starts a private containerd with NRI, waits for it, imports the
    /// images. Call from inside a tokio runtime.
    pub async fn start() -> Result<Containerd> {
        Self::start_with(Vec::new()).await
    }

    /// As [`Containerd::start`], with plugins for containerd to launch (at every start).
    pub async fn start_with(prelaunch: Vec<Prelaunch>) -> Result<Containerd> {
        let install = tokio::task::spawn_blocking(Install::ensure).await??;
        if let Some(why) = runtime_unusable_here(&install.oci_runtime) {
            bail!("WARDEN_TEST_OCI_RUNTIME: {why}");
        }
        let dir = tempfile::Builder::new().prefix("warden-ctrd-").tempdir().context("temp folder")?;
        let root = dir.path().to_path_buf();
        let tag = root.file_name().and_then(|n| n.to_str()).unwrap_or("x").replace('.', "-");
        let mut c = Containerd {
            install,
            address: root.join("containerd.sock"),
            nri_socket: root.join("nri.sock"),
            cgroup_parent: format!("/{tag}"),
            root,
            dir: Some(dir),
            child: None,
            pods: Mutex::new(Vec::new()),
            cri: Mutex::new(None),
            prelaunch,
        };
        c.spawn().await?;
        c.import(&c.install.pause_tar.clone()).await?;
        c.import(&c.install.busybox_tar.clone()).await?;
        Ok(c)
    }

    fn config(&self) -> String {
        if self.install.v2 {
            return self.config_v3();
        }
        // (The OCI runtime: runc unless WARDEN_TEST_OCI_RUNTIME names another, see oci_runtime.)
        let r = self.root.display();
        format!(
            r#"version = 2
root = "{r}/root"
state = "{r}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{r}/containerd.sock"
[ttrpc]
  address = "{r}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{oci_runtime}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{r}/cni"
{nri}"#,
            pause = self.install.pause_image,
            oci_runtime = self.install.oci_runtime.display(),
            nri = self.nri_snippet("containerd-nri-1.7.toml"),
        )
    }

    /// containerd 2.x's config (version 3): the CRI plugin is split into images and runtime
    /// parts, the sandbox image is a pinned image, the rest as for 1.7.
    fn config_v3(&self) -> String {
        let r = self.root.display();
        format!(
            r#"version = 3
root = "{r}/root"
state = "{r}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{r}/containerd.sock"
[ttrpc]
  address = "{r}/containerd.sock.ttrpc"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause}"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{oci_runtime}"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{r}/cni"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
{nri}"#,
            pause = self.install.pause_image,
            oci_runtime = self.install.oci_runtime.display(),
            nri = self.nri_snippet("containerd-nri-2.x.toml"),
        )
    }

    /// The NRI table as the docs tell operators to write it (packaging/k8s/`file`), with this
    /// instance's socket and plugin folders and the request timeout the test asks for: the
    /// shipped snippet is what the tests run, under 1.7 and 2.x.
    fn nri_snippet(&self, file: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/k8s").join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let r = self.root.display();
        let mut out = String::new();
        for line in text.lines() {
            match line.trim_start().split([' ', '=']).next().unwrap_or("") {
                "socket_path" => out.push_str(&format!(
                    "  socket_path = \"{r}/nri.sock\"\n  plugin_path = \"{r}/nri-plugins\"\n  plugin_config_path = \"{r}/nri-conf\"\n"
                )),
                "plugin_request_timeout" => {
                    out.push_str(&format!("  plugin_request_timeout = \"{}\"\n", nri_request_timeout()))
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        assert!(
            out.contains("/nri.sock") && out.contains("disable = false"),
            "{} lost its NRI settings",
            path.display()
        );
        out
    }

    /// Starts (or restarts) the containerd process on this instance's folder.
    pub async fn spawn(&mut self) -> Result<()> {
        for d in ["cni", "nri-plugins", "nri-conf"] {
            std::fs::create_dir_all(self.root.join(d))?;
        }
        for p in &self.prelaunch {
            let exe = self.root.join("nri-plugins").join(&p.name);
            let _ = std::fs::remove_file(&exe);
            std::fs::copy(&p.exe, &exe).with_context(|| format!("installing NRI plugin {}", p.exe.display()))?;
            std::fs::write(self.root.join("nri-conf").join(format!("{}.conf", p.name)), &p.config)?;
        }
        let cfg = self.root.join("config.toml");
        std::fs::write(&cfg, self.config()).context("writing containerd config")?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.root.join("containerd.log"))?;
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.install.bin_dir.display());
        let child = Command::new(self.install.bin_dir.join("containerd"))
            .arg("--config")
            .arg(&cfg)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd")?;
        tracing::info!(pid = child.id(), root = %self.root.display(), "private containerd started");
        self.child = Some(child);
        *self.cri.lock().unwrap() = None;
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait()? {
                bail!("containerd exited at start ({st}); log:\n{}", self.log_tail());
            }
            if self.address.exists() && self.nri_socket.exists() {
                if let Ok(mut cri) = self.cri().await {
                    if let Ok(v) = cri.version(cri::VersionRequest::default()).await {
                        // The major asked for is the one that answers (no silent fallback).
                        let v = v.into_inner().runtime_version;
                        let major = v.trim_start_matches('v').split('.').next().unwrap_or("").to_string();
                        let want = if self.install.v2 { "2" } else { "1" };
                        if major != want {
                            bail!("containerd {v} answered; the test asked for {want}.x (WARDEN_TEST_CONTAINERD)");
                        }
                        return Ok(());
                    }
                }
            }
            if t0.elapsed() > Duration::from_secs(20) {
                bail!("containerd did not answer within 20 s; log:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the containerd process (SIGTERM, then SIGKILL); shims and containers keep running.
    pub fn stop_daemon(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        *self.cri.lock().unwrap() = None;
    }

    /// Restarts containerd on the same state (plugins see EOF and must reconnect).
    pub async fn restart(&mut self) -> Result<()> {
        self.stop_daemon();
        self.spawn().await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.root.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    async fn import(&self, tar: &Path) -> Result<()> {
        let out = tokio::process::Command::new(self.install.bin_dir.join("ctr"))
            .arg("--address")
            .arg(&self.address)
            .args(["-n", NAMESPACE, "images", "import", "--all-platforms"])
            .arg(tar)
            .output()
            .await
            .context("running ctr images import")?;
        if !out.status.success() {
            bail!("ctr images import {}: {}", tar.display(), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// A CRI runtime-service client on this instance's socket.
    pub async fn cri(&self) -> Result<RuntimeServiceClient<Channel>> {
        if let Some(c) = self.cri.lock().unwrap().clone() {
            return Ok(c);
        }
        let path = self.address.clone();
        let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")?
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
                }
            }))
            .await
            .context("connecting to the CRI socket")?;
        let client = RuntimeServiceClient::new(channel);
        *self.cri.lock().unwrap() = Some(client.clone());
        Ok(client)
    }

    /// RunPodSandbox: host network (no CNI), the given annotations, a cgroup parent under
    /// this instance's private parent. Returns the sandbox id.
    pub async fn run_pod(&self, name: &str, namespace: &str, annotations: &[(&str, &str)]) -> Result<PodHandle> {
        let uid = format!("uid-{name}-{}", std::process::id());
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            log_directory: self.root.join("pod-logs").join(name).display().to_string(),
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            labels: [("app".to_string(), name.to_string())].into(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/pod{uid}", self.cgroup_parent),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let t0 = Instant::now();
        let resp = self
            .cri()
            .await?
            .run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
            .await
            .map_err(|s| anyhow::anyhow!("RunPodSandbox {name}: {}", s.message()))
            .with_context(|| format!("containerd log:\n{}", self.log_tail()))?;
        let id = resp.into_inner().pod_sandbox_id;
        tracing::info!(pod = name, id = %id, ms = t0.elapsed().as_millis() as u64, "pod running");
        self.pods.lock().unwrap().push(id.clone());
        Ok(PodHandle { id, config })
    }

    /// CreateContainer from the busybox image with `command`. Returns the container id.
    pub async fn create_container(
        &self,
        pod: &PodHandle,
        name: &str,
        command: &[&str],
        annotations: &[(&str, &str)],
    ) -> Result<String> {
        self.create_container_with(pod, name, command, annotations, &[]).await
    }

    /// As [`Containerd::create_container`], with read-only bind mounts (host path, container
    /// path), e.g. a static test helper.
    pub async fn create_container_with(
        &self,
        pod: &PodHandle,
        name: &str,
        command: &[&str],
        annotations: &[(&str, &str)],
        mounts: &[(&Path, &str)],
    ) -> Result<String> {
        self.create_container_linux(pod, name, command, annotations, mounts, cri::LinuxContainerConfig::default()).await
    }

    /// As [`Containerd::create_container_with`], with the runtime's own seccomp set to the
    /// OCI seccomp profile at `seccomp` (`securityContext.seccompProfile: Localhost`).
    pub async fn create_container_seccomp(
        &self,
        pod: &PodHandle,
        name: &str,
        command: &[&str],
        mounts: &[(&Path, &str)],
        seccomp: &Path,
    ) -> Result<String> {
        let linux = cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                seccomp: Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::Localhost as i32,
                    localhost_ref: seccomp.display().to_string(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.create_container_linux(pod, name, command, &[], mounts, linux).await
    }

    async fn create_container_linux(
        &self,
        pod: &PodHandle,
        name: &str,
        command: &[&str],
        annotations: &[(&str, &str)],
        mounts: &[(&Path, &str)],
        linux: cri::LinuxContainerConfig,
    ) -> Result<String> {
        let config = cri::ContainerConfig {
            mounts: mounts
                .iter()
                .map(|(h, c)| cri::Mount {
                    host_path: h.display().to_string(),
                    container_path: c.to_string(),
                    readonly: true,
                    ..Default::default()
                })
                .collect(),
            metadata: Some(cri::ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(cri::ImageSpec { image: self.install.busybox_image.clone(), ..Default::default() }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            linux: Some(linux),
            ..Default::default()
        };
        let resp = self
            .cri()
            .await?
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            })
            .await
            .map_err(|s| anyhow::anyhow!("CreateContainer {name}: {}", s.message()))?;
        Ok(resp.into_inner().container_id)
    }

    /// StartContainer; the error carries the runtime's message (e.g. an NRI plugin's refusal).
    pub async fn start_container(&self, id: &str) -> std::result::Result<(), tonic::Status> {
        self.cri()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?
            .start_container(cri::StartContainerRequest { container_id: id.into() })
            .await
            .map(|_| ())
    }

    pub async fn stop_container(&self, id: &str) -> Result<()> {
        self.cri().await?.stop_container(cri::StopContainerRequest { container_id: id.into(), timeout: 0 }).await?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        self.cri().await?.remove_container(cri::RemoveContainerRequest { container_id: id.into() }).await?;
        Ok(())
    }

    /// What a container wrote (stdout and stderr), without the CRI log prefixes.
    pub fn container_log(&self, pod: &str, container: &str) -> String {
        let p = self.root.join("pod-logs").join(pod).join(format!("{container}.log"));
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let r = self
            .cri()
            .await?
            .container_status(cri::ContainerStatusRequest { container_id: id.into(), verbose: false })
            .await?;
        r.into_inner().status.context("no container status")
    }

    /// StopPodSandbox + RemovePodSandbox (stops and removes its containers too).
    pub async fn remove_pod(&self, id: &str) -> Result<()> {
        let mut cri = self.cri().await?;
        cri.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.into() }).await?;
        cri.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id.into() }).await?;
        self.pods.lock().unwrap().retain(|p| p != id);
        Ok(())
    }

    /// The cgroup2 directory of a `linux.cgroups_path` (cgroupfs form) on this host.
    pub fn cgroup2_dir(cgroups_path: &str) -> PathBuf {
        let base = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            "/sys/fs/cgroup/unified"
        } else {
            "/sys/fs/cgroup"
        };
        Path::new(base).join(cgroups_path.trim_start_matches('/'))
    }

    /// The socket containerd gives the shim of sandbox `id` (always under /run/containerd/s).
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        use sha2::Digest as _;
        // containerd 1.7 (runtime/v2/shim SocketAddress): sha256 of "<address>/<namespace>/<id>".
        let key = self.address.join(NAMESPACE).join(id);
        let sum = sha2::Sha256::digest(key.as_os_str().as_encoded_bytes());
        let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
        Path::new("/run/containerd/s").join(hex)
    }

    fn cleanup(&mut self) {
        // 1. Stop and remove our pods through CRI while containerd still runs (own thread and
        //    runtime: Drop may run inside, or outside, a tokio runtime).
        let pods = self.pods.lock().unwrap().clone();
        if !pods.is_empty() && self.child.is_some() {
            let address = self.address.clone();
            let ids = pods.clone();
            let worker = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(async {
                    let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
                        .ok()?
                        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                            let p = address.clone();
                            async move {
                                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                                    tokio::net::UnixStream::connect(p).await?,
                                ))
                            }
                        }))
                        .await
                        .ok()?;
                    let mut cri = RuntimeServiceClient::new(channel);
                    for id in ids {
                        let _ = tokio::time::timeout(Duration::from_secs(10), async {
                            let _ =
                                cri.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await;
                            let _ = cri
                                .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id.clone() })
                                .await;
                        })
                        .await;
                    }
                    Some(())
                })
            });
            let _ = worker.join();
        }
        // 2. Our containerd, by the pid we started.
        self.stop_daemon();
        // 3. Shims serving our address (they outlive containerd by design).
        let addr = self.address.display().to_string();
        for pid in processes_with_arg(&addr) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // ... and plugins containerd launched from our folder.
        for pid in processes_started_from(&self.root.join("nri-plugins")) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // 4. Pod cgroups: kill what is left, then remove the directories in every hierarchy.
        let parent = self.cgroup_parent.trim_start_matches('/').to_string();
        let unified = Self::cgroup2_dir(&self.cgroup_parent);
        if unified.exists() {
            let _ = std::fs::write(unified.join("cgroup.kill"), "1");
        }
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            let mut roots: Vec<PathBuf> = rd.flatten().map(|e| e.path().join(&parent)).collect();
            roots.push(PathBuf::from("/sys/fs/cgroup").join(&parent));
            for r in roots {
                remove_cgroup_tree(&r);
            }
        }
        // 5. Shim sockets of our pods under /run/containerd/s.
        for id in &pods {
            let _ = std::fs::remove_file(self.shim_socket(id));
        }
        // 6. Mounts below our folder, deepest first.
        unmount_below(&self.root);
        if std::env::var_os("WARDEN_KEEP_CONTAINERD_DIR").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("kept {}", d.keep().display());
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A pod created by [`Containerd::run_pod`].
#[derive(Clone)]
pub struct PodHandle {
    pub id: String,
    pub config: cri::PodSandboxConfig,
}

fn processes_with_arg(arg: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_shim = args.first().map(|a| String::from_utf8_lossy(a).contains("containerd-shim")).unwrap_or(false);
        if is_shim && args.contains(&arg.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

fn processes_started_from(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if std::fs::read_link(e.path().join("exe")).map(|x| x.starts_with(dir)).unwrap_or(false) {
            out.push(pid);
        }
    }
    out
}

fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return,
        }
    }
}

fn unmount_below(root: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let prefix = root.display().to_string();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// containerd's NRI plugin request timeout: its default (2 s) natively. Inside the qemu TCG
/// VMs (WARDEN_VM set by tests/vm/run) everything runs ~100x slower and warden's StartContainer
/// handling, which attaches the BPF-LSM programs there, took 0.25-0.8 s on an idle host and
/// more under load; past the timeout containerd drops the plugin, which then reconnects and
/// resynchronizes (suspected in a rare incomplete learn record in the VM, see docs/learn.md,
/// "Known issue"). 10 s there keeps emulation speed out of the result.
fn nri_request_timeout() -> &'static str {
    if std::env::var_os("WARDEN_VM").is_some() {
        "10s"
    } else {
        "2s"
    }
}

/// Which OCI runtime containerd's runc shim runs.
pub enum OciRuntime {
    /// bookworm's runc (the default).
    Runc,
    /// trixie's crun 1.21, fetched by scripts/containerd.sh (bookworm's 1.8.1 refuses the
    /// config.json of containerd 1.7 and 2.x: "unknown version specified").
    Crun,
    /// Any other runtime binary, by path.
    Path(PathBuf),
}

/// `WARDEN_TEST_OCI_RUNTIME`: unset or `runc`, `crun`, or a path. tests/vm/crun.sh runs the
/// core of the containerd suite under crun in a VM (issue 20), whose init, cgroup handling and
/// hook handling differ from runc's.
pub fn oci_runtime_choice() -> OciRuntime {
    match std::env::var("WARDEN_TEST_OCI_RUNTIME").ok().filter(|v| !v.is_empty()).as_deref() {
        None | Some("runc") => OciRuntime::Runc,
        Some("crun") => OciRuntime::Crun,
        Some(other) => OciRuntime::Path(other.into()),
    }
}

/// Whether a failing hook's output reaches the caller's error: runc puts the hook's stderr in
/// its error; crun discards a hook's stdout and stderr and reports only "error executing hook
/// `PATH` (exit code: N)" (the reason is then in warden's log: "container start refused").
pub fn hook_output_reaches_caller() -> bool {
    !matches!(oci_runtime_choice(), OciRuntime::Crun)
}

/// Asserts that `msg`, a start error, is a refusal by warden's hook: naming all of `why` where
/// the runtime passes the hook's output on, else the bare hook failure crun reports.
pub fn assert_hook_refusal(msg: &str, why: &[&str]) {
    if hook_output_reaches_caller() {
        assert!(why.iter().all(|w| msg.contains(w)), "the hook's refusal ({why:?}) reaches the caller: {msg}");
    } else {
        assert!(
            msg.contains("error executing hook") && msg.contains("warden") && msg.contains("exit code: 1"),
            "crun reports the hook's failure: {msg}"
        );
    }
}

/// Why `runtime` cannot serve containerd on this host, if it cannot: crun refuses a hybrid
/// cgroup layout (v1 controllers, cgroup2 at /sys/fs/cgroup/unified: "cgroups in hybrid mode
/// not supported"). Showing it the cgroup2 mount alone (a mount namespace) is not enough either:
/// containerd's CRI gives every sandbox cpu shares, and on a hybrid host the cpu controller
/// belongs to cgroup v1 ("controller `cpu` is not available"). tests/vm/crun.sh runs the
/// suite under crun in a VM, on a pure cgroup2 Debian kernel.
pub fn runtime_unusable_here(runtime: &Path) -> Option<String> {
    let hybrid = Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists();
    (runtime.file_name().is_some_and(|n| n == "crun") && hybrid).then(|| {
        format!(
            "{} needs a pure cgroup2 host and this one has hybrid cgroups (v1 controllers, cgroup2 at \
             /sys/fs/cgroup/unified); run the crun suite in a VM: tests/vm/crun.sh",
            runtime.display()
        )
    })
}

/// Which containerd the tests start: 1 (1.7, the default) or 2 (`WARDEN_TEST_CONTAINERD=2`;
/// scripts/test.sh runs the NRI suite under both).
pub fn containerd_major() -> u32 {
    match std::env::var("WARDEN_TEST_CONTAINERD").ok().as_deref() {
        Some("2") => 2,
        _ => 1,
    }
}
