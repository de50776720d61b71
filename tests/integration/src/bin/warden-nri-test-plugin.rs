//! A minimal NRI plugin built on warden's client, for the integration tests. Runs pre-launched
//! (containerd starts it with the connection on fd 3 and passes the plugin config, here the
//! path of a file to record events in) or external (`warden-nri-test-plugin SOCKET FILE`).
//! Records one JSON line per event; refuses to start a container named "refused".
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use warden::nri::api::ConfigureRequest;
use warden::nri::{run_with_reconnect, Container, Endpoint, Handler, PluginOptions, PodSandbox};

struct FileRecorder {
    out: Mutex<Option<std::fs::File>>,
}

impl FileRecorder {
    fn open(&self, path: &str) -> Result<(), String> {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("{path}: {e}"))?;
        *self.out.lock().unwrap() = Some(f);
        Ok(())
    }
    fn record(&self, event: &str, pod: &PodSandbox, c: Option<&Container>) {
        let line = serde_json::json!({
            "event": event,
            "pod": pod.name,
            "namespace": pod.namespace,
            "annotations": pod.annotations,
            "container": c.map(|c| c.name.clone()).unwrap_or_default(),
            "pid": c.map(|c| c.pid).unwrap_or(0),
            "cgroups_path": c.map(|c| c.cgroups_path().to_string()).unwrap_or_default(),
            "plugin_pid": std::process::id(),
        });
        if let Some(f) = self.out.lock().unwrap().as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }
}

impl Handler for FileRecorder {
    fn on_configure(&self, req: &ConfigureRequest) -> Result<(), String> {
        let path = req.config.trim();
        if !path.is_empty() {
            self.open(path)?;
        }
        self.record("Configured", &PodSandbox::default(), None);
        Ok(())
    }
    fn on_synchronize(&self, pods: &[PodSandbox], containers: &[Container]) -> Result<(), String> {
        for c in containers {
            let pod = pods.iter().find(|p| p.id == c.pod_sandbox_id).cloned().unwrap_or_default();
            self.record("Synchronize", &pod, Some(c));
        }
        self.record("Synchronized", &PodSandbox::default(), None);
        Ok(())
    }
    fn on_run_pod_sandbox(&self, pod: &PodSandbox) -> Result<(), String> {
        self.record("RunPodSandbox", pod, None);
        Ok(())
    }
    fn on_start_container(&self, pod: &PodSandbox, c: &Container) -> Result<(), String> {
        self.record("StartContainer", pod, Some(c));
        if c.name == "refused" {
            return Err(format!("test plugin {} refuses {}/{}", std::process::id(), pod.name, c.name));
        }
        Ok(())
    }
    fn on_stop_container(&self, pod: &PodSandbox, c: &Container) -> Result<(), String> {
        self.record("StopContainer", pod, Some(c));
        Ok(())
    }
    fn on_remove_container(&self, pod: &PodSandbox, c: &Container) -> Result<(), String> {
        self.record("RemoveContainer", pod, Some(c));
        Ok(())
    }
    fn on_remove_pod_sandbox(&self, pod: &PodSandbox) -> Result<(), String> {
        self.record("RemovePodSandbox", pod, None);
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let handler = Arc::new(FileRecorder { out: Mutex::new(None) });
    if let Some(file) = args.get(2) {
        handler.open(file).expect("event file");
    }
    let socket = args.get(1).cloned().unwrap_or_else(|| warden::nri::plugin::DEFAULT_SOCKET.into());
    let endpoint = Endpoint::from_env_or(socket).expect("endpoint");
    let opts = PluginOptions::from_env_or("warden-test", "10").expect("plugin options");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let exit = rt.block_on(run_with_reconnect(endpoint, opts, handler, std::time::Duration::from_secs(1), |_| {}));
    eprintln!("test plugin exiting: {exit:?}");
}
