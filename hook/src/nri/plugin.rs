//! The plugin side of NRI: connect (external socket or the pre-launched fd 3), register,
//! answer the runtime's Plugin-service calls by handing events to a [`Handler`], and call the
//! Runtime service (RegisterPlugin, UpdateContainers).
use std::os::fd::{FromRawFd as _, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::net::UnixStream;
use tokio::sync::watch;

use super::api::*;
use super::session::{CallError, Closed, ServiceFn, Session};
use super::ttrpc::{code, Request, Status};

/// Environment of a plugin the runtime launched itself (connection on an inherited fd).
pub const ENV_SOCKET: &str = "NRI_PLUGIN_SOCKET";
pub const ENV_NAME: &str = "NRI_PLUGIN_NAME";
pub const ENV_IDX: &str = "NRI_PLUGIN_IDX";
/// The runtime's default socket for external plugins.
pub const DEFAULT_SOCKET: &str = "/var/run/nri/nri.sock";

/// What the plugin does on each event. Methods run on a blocking-capable thread, one task per
/// request; each answers within the runtime's request timeout (2 s by default) or the runtime
/// drops the plugin. An `Err(message)` is returned to the runtime as the call's error: from
/// `on_start_container` (or `on_create_container`) it fails that container with the message.
pub trait Handler: Send + Sync + 'static {
    /// The events to subscribe to (asked once per connection, at Configure).
    fn events(&self) -> EventMask {
        EventMask::of(&[
            Event::RunPodSandbox,
            Event::StartContainer,
            Event::StopContainer,
            Event::RemoveContainer,
            Event::RemovePodSandbox,
        ])
    }
    fn on_configure(&self, _req: &ConfigureRequest) -> Result<(), String> {
        Ok(())
    }
    /// A pod or container event whose handler missed [`answer_deadline`] has now finished; the
    /// runtime was answered with a refusal meanwhile. Undo what the handler did that only
    /// makes sense for a container that runs.
    fn on_late(&self, _event: Event, _pod: &PodSandbox, _c: Option<&Container>) {}
    /// Everything the runtime already runs, once after each (re)connection.
    fn on_synchronize(&self, _pods: &[PodSandbox], _containers: &[Container]) -> Result<(), String> {
        Ok(())
    }
    fn on_run_pod_sandbox(&self, _pod: &PodSandbox) -> Result<(), String> {
        Ok(())
    }
    fn on_stop_pod_sandbox(&self, _pod: &PodSandbox) -> Result<(), String> {
        Ok(())
    }
    fn on_remove_pod_sandbox(&self, _pod: &PodSandbox) -> Result<(), String> {
        Ok(())
    }
    /// The container is being created (its cgroup does not exist yet); the answer may adjust
    /// it (warden adds its `createRuntime` backstop hook).
    fn on_create_container(&self, _pod: &PodSandbox, _c: &Container) -> Result<Option<ContainerAdjustment>, String> {
        Ok(None)
    }
    /// The cgroup exists, `c.pid` is set, the entrypoint has not run; the runtime waits.
    fn on_start_container(&self, _pod: &PodSandbox, _c: &Container) -> Result<(), String> {
        Ok(())
    }
    fn on_update_container(&self, _pod: &PodSandbox, _c: &Container) -> Result<(), String> {
        Ok(())
    }
    fn on_stop_container(&self, _pod: &PodSandbox, _c: &Container) -> Result<(), String> {
        Ok(())
    }
    fn on_remove_container(&self, _pod: &PodSandbox, _c: &Container) -> Result<(), String> {
        Ok(())
    }
    /// Post* events, if subscribed.
    fn on_other_event(&self, _event: Event, _pod: &PodSandbox, _c: Option<&Container>) -> Result<(), String> {
        Ok(())
    }
    /// The runtime is going down; the connection closes next.
    fn on_shutdown(&self) {}
}

/// Where the runtime is.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// External plugin: connect to the runtime's NRI socket.
    Socket(PathBuf),
    /// Pre-launched plugin: the runtime passed a connected socket (fd 3, in `NRI_PLUGIN_SOCKET`).
    Fd(RawFd),
}

impl Endpoint {
    /// `NRI_PLUGIN_SOCKET` (pre-launched) if set, else the given socket path.
    pub fn from_env_or(socket: impl Into<PathBuf>) -> Result<Endpoint, NriError> {
        match std::env::var(ENV_SOCKET) {
            Ok(v) if !v.is_empty() => v
                .parse::<RawFd>()
                .map(Endpoint::Fd)
                .map_err(|_| NriError::Config(format!("{ENV_SOCKET}={v:?} is not a file descriptor number"))),
            _ => Ok(Endpoint::Socket(socket.into())),
        }
    }

    async fn connect(&self) -> Result<UnixStream, NriError> {
        match self {
            Endpoint::Socket(p) => UnixStream::connect(p)
                .await
                .map_err(|e| NriError::Connect(format!("connecting to the NRI socket {}: {e}", p.display()))),
            Endpoint::Fd(fd) => {
                // SAFETY: the runtime hands this fd to us alone; it is used exactly once.
                let std = unsafe { std::os::unix::net::UnixStream::from_raw_fd(*fd) };
                std.set_nonblocking(true)
                    .and_then(|_| UnixStream::from_std(std))
                    .map_err(|e| NriError::Connect(format!("using the pre-connected NRI socket fd {fd}: {e}")))
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct PluginOptions {
    /// Plugin name as the runtime shows it (`<idx>-<name>`).
    pub name: String,
    /// Two digits, "00".."99": the order among plugins.
    pub idx: String,
    /// How long to wait for registration, configuration and the first Synchronize each.
    pub registration_timeout: Duration,
}

impl PluginOptions {
    pub fn new(name: &str, idx: &str) -> Result<Self, NriError> {
        if name.is_empty() || name.contains(['/', '\0']) {
            return Err(NriError::Config(format!("invalid NRI plugin name {name:?}")));
        }
        if idx.len() != 2 || !idx.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NriError::Config(format!("NRI plugin index must be two digits (00-99), not {idx:?}")));
        }
        Ok(PluginOptions { name: name.into(), idx: idx.into(), registration_timeout: Duration::from_secs(5) })
    }

    /// Name and index from the pre-launched environment, if present, else the given ones.
    pub fn from_env_or(name: &str, idx: &str) -> Result<Self, NriError> {
        let n = std::env::var(ENV_NAME).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| name.into());
        let i = std::env::var(ENV_IDX).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| idx.into());
        Self::new(&n, &i)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NriError {
    #[error("NRI configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Connect(String),
    #[error("registering NRI plugin {name}: {source}")]
    Register { name: String, source: CallError },
    #[error("NRI plugin {name}: {stage}")]
    Handshake { name: String, stage: String },
}

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The runtime sent Shutdown (it is going down).
    Shutdown,
    Closed(Closed),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Connected,
    Configured,
    Synchronized,
}

/// A registered and configured plugin connection.
pub struct Plugin {
    session: Session,
    name: String,
    shutdown_rx: watch::Receiver<bool>,
    stage_rx: watch::Receiver<Stage>,
}

/// Calls into the runtime's Runtime service.
#[derive(Clone)]
pub struct RuntimeClient {
    session: Session,
    timeout: Duration,
}

impl RuntimeClient {
    pub async fn register_plugin(&self, name: &str, idx: &str) -> Result<(), CallError> {
        let req = RegisterPluginRequest { plugin_name: name.into(), plugin_idx: idx.into() };
        self.session.call::<_, Empty>(RUNTIME_SERVICE, "RegisterPlugin", &req, self.timeout).await.map(|_| ())
    }

    /// Unsolicited updates or evictions; returns the updates the runtime could not apply.
    pub async fn update_containers(&self, req: UpdateContainersRequest) -> Result<Vec<ContainerUpdate>, CallError> {
        let resp: UpdateContainersResponse =
            self.session.call(RUNTIME_SERVICE, "UpdateContainers", &req, self.timeout).await?;
        Ok(resp.failed)
    }
}

impl Plugin {
    /// Connects, registers as `<idx>-<name>`, and returns once the runtime has configured
    /// (subscribed) the plugin. Synchronize follows (see [`Plugin::synchronized`]).
    pub async fn connect<H: Handler>(
        endpoint: &Endpoint,
        opts: &PluginOptions,
        handler: Arc<H>,
    ) -> Result<Plugin, NriError> {
        let full = format!("{}-{}", opts.idx, opts.name);
        let stream = endpoint.connect().await?;
        let (stage_tx, mut stage_rx) = watch::channel(Stage::Connected);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let dispatch = Arc::new(Dispatch {
            handler,
            sync_parts: Mutex::new(None),
            stage_tx,
            shutdown_tx,
            deadline: Mutex::new(answer_deadline(0)),
        });
        let service: ServiceFn = Arc::new(move |req: Request| {
            let d = dispatch.clone();
            Box::pin(async move { d.handle(req).await })
        });
        let session = Session::start(stream, service);
        let plugin = Plugin { session: session.clone(), name: full.clone(), shutdown_rx, stage_rx: stage_rx.clone() };
        let runtime = plugin.runtime();
        let t0 = Instant::now();
        if let Err(source) = runtime.register_plugin(&opts.name, &opts.idx).await {
            session.close().await;
            return Err(NriError::Register { name: full, source });
        }
        // Runtimes synchronize external plugins right after configuring them, but containerd
        // 1.7 does not synchronize plugins it launches at its own start: wait for Configure only.
        for (want, what) in [(Stage::Configured, "configuration")] {
            let waited = tokio::time::timeout(opts.registration_timeout, async {
                tokio::select! {
                    r = stage_rx.wait_for(|s| *s >= want) => r.is_ok(),
                    _ = session.closed() => false,
                }
            })
            .await;
            match waited {
                Ok(true) => {}
                Ok(false) => {
                    let closed = session.closed().await;
                    return Err(NriError::Handshake { name: full, stage: format!("{closed} before {what}") });
                }
                Err(_) => {
                    session.close().await;
                    return Err(NriError::Handshake {
                        name: full,
                        stage: format!("no {what} from the runtime within {:?}", opts.registration_timeout),
                    });
                }
            }
        }
        tracing::info!(plugin = %full, elapsed_ms = t0.elapsed().as_millis() as u64, "NRI plugin registered and configured");
        Ok(plugin)
    }

    /// Waits until the runtime has delivered Synchronize (false on timeout or closed connection).
    pub async fn synchronized(&self, timeout: Duration) -> bool {
        let mut rx = self.stage_rx.clone();
        let reached =
            tokio::time::timeout(timeout, async { rx.wait_for(|s| *s >= Stage::Synchronized).await.is_ok() }).await;
        reached.unwrap_or(false)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn runtime(&self) -> RuntimeClient {
        RuntimeClient { session: self.session.clone(), timeout: Duration::from_secs(5) }
    }

    /// Waits until the runtime shuts the plugin down or the connection ends.
    pub async fn wait(&self) -> Exit {
        let mut sd = self.shutdown_rx.clone();
        // Err when the dispatcher (and its sender) went away with the connection: not a Shutdown.
        let shutdown = async move { sd.wait_for(|v| *v).await.is_ok() };
        tokio::select! {
            c = self.session.closed() => {
                if *self.shutdown_rx.borrow() { Exit::Shutdown } else { Exit::Closed(c) }
            }
            // The runtime closes the connection right after Shutdown; report Shutdown.
            true = shutdown => Exit::Shutdown,
        }
    }

    /// Disconnects (the runtime then forgets this plugin).
    pub async fn close(&self) {
        self.session.close().await;
    }
}

/// Runs the plugin, reconnecting with exponential backoff (0.1 s doubling up to
/// `max_backoff`) whenever the connection ends or cannot be made, e.g. while containerd
/// restarts (a runtime that shuts down may come back: Shutdown does not end the loop for an
/// external plugin; stop it by dropping or aborting the future). A pre-launched plugin (fd
/// endpoint) cannot reconnect: it returns when its connection ends, as the runtime relaunches
/// it. `on_connected` runs after every successful connection (registered and configured).
pub async fn run_with_reconnect<H: Handler>(
    endpoint: Endpoint,
    opts: PluginOptions,
    handler: Arc<H>,
    max_backoff: Duration,
    mut on_connected: impl FnMut(&Plugin),
) -> Result<Exit, NriError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match Plugin::connect(&endpoint, &opts, handler.clone()).await {
            Ok(p) => {
                backoff = Duration::from_millis(100);
                on_connected(&p);
                let exit = p.wait().await;
                p.close().await;
                tracing::warn!(plugin = %p.name(), ?exit, "NRI connection ended");
                if matches!(endpoint, Endpoint::Fd(_)) {
                    return Ok(exit);
                }
            }
            Err(e) if matches!(endpoint, Endpoint::Fd(_)) => return Err(e),
            Err(e) => tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "NRI connection failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}

struct Dispatch<H> {
    handler: Arc<H>,
    /// Parts of a multi-request Synchronize (newer runtimes), until the last one.
    sync_parts: Mutex<Option<(Vec<PodSandbox>, Vec<Container>)>>,
    stage_tx: watch::Sender<Stage>,
    shutdown_tx: watch::Sender<bool>,
    /// How long a pod or container event's handler may take ([`answer_deadline`]).
    deadline: Mutex<Duration>,
}

/// containerd's request timeout when Configure does not say (its default, 1.7 and 2.x).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long warden lets a pod or container event's handler run before answering with an
/// error itself: a quarter (at most 500 ms) below the runtime's request timeout
/// (`request_timeout_ms` from Configure; 0: not sent, [`DEFAULT_REQUEST_TIMEOUT`]). A runtime
/// whose plugin misses its timeout drops the plugin and starts the container WITHOUT it
/// (containerd 1.7 and 2.x); an error answered in time refuses the container instead: fail
/// closed (issue 17).
pub fn answer_deadline(request_timeout_ms: i64) -> Duration {
    let t =
        if request_timeout_ms > 0 { Duration::from_millis(request_timeout_ms as u64) } else { DEFAULT_REQUEST_TIMEOUT };
    t - (t / 4).min(Duration::from_millis(500))
}

fn decode<M: Message + Default>(method: &str, payload: &[u8]) -> Result<M, Status> {
    M::decode(payload).map_err(|e| Status::new(code::INVALID_ARGUMENT, format!("{method}: undecodable request: {e}")))
}

impl<H: Handler> Dispatch<H> {
    async fn handle(self: Arc<Self>, req: Request) -> Result<Vec<u8>, Status> {
        if req.service != PLUGIN_SERVICE {
            return Err(Status::new(code::UNIMPLEMENTED, format!("service {}", req.service)));
        }
        let m = req.method.as_str();
        match m {
            "Configure" => {
                let r: ConfigureRequest = decode(m, &req.payload)?;
                tracing::info!(runtime = %r.runtime_name, version = %r.runtime_version, "NRI: configure");
                let events = self.handler.events();
                *self.deadline.lock().unwrap() = answer_deadline(r.request_timeout);
                self.blocking(move |h| h.on_configure(&r)).await?;
                self.stage_tx.send_if_modified(|s| raise(s, Stage::Configured));
                Ok(ConfigureResponse { events: events.0 }.encode_to_vec())
            }
            "Synchronize" => {
                let r: SynchronizeRequest = decode(m, &req.payload)?;
                let more = r.more;
                let (pods, containers) = {
                    let mut parts = self.sync_parts.lock().expect("sync lock");
                    let acc = parts.get_or_insert_with(Default::default);
                    acc.0.extend(r.pods);
                    acc.1.extend(r.containers);
                    if more {
                        return Ok(SynchronizeResponse { update: vec![], more: true }.encode_to_vec());
                    }
                    parts.take().expect("just inserted")
                };
                tracing::info!(pods = pods.len(), containers = containers.len(), "NRI: synchronize");
                let res = self.blocking(move |h| h.on_synchronize(&pods, &containers)).await;
                self.stage_tx.send_if_modified(|s| raise(s, Stage::Synchronized));
                res?;
                Ok(SynchronizeResponse::default().encode_to_vec())
            }
            "Shutdown" => {
                tracing::info!("NRI: runtime shutdown");
                let _ = self
                    .blocking(|h| {
                        h.on_shutdown();
                        Ok(())
                    })
                    .await;
                self.shutdown_tx.send_replace(true);
                Ok(Empty {}.encode_to_vec())
            }
            "StateChange" => {
                let r: StateChangeEvent = decode(m, &req.payload)?;
                let ev = Event::try_from(r.event).unwrap_or(Event::Unknown);
                self.deliver(ev, r.pod, r.container).await?;
                Ok(Empty {}.encode_to_vec())
            }
            // v1alpha1 (containerd 1.7): dedicated calls for these three, and, on newer
            // runtimes, for every event, all with {pod = 1, container = 2} requests.
            _ => {
                let Some(ev) = method_event(m) else {
                    return Err(Status::new(code::UNIMPLEMENTED, format!("method {m}")));
                };
                let r: PodContainerRequest = decode(m, &req.payload)?;
                let adjust = self.deliver(ev, r.pod, r.container).await?;
                // Every other response of these calls is valid empty (no updates, no evictions).
                Ok(match ev {
                    Event::CreateContainer => CreateContainerResponse { adjust }.encode_to_vec(),
                    _ => UpdatesResponse {}.encode_to_vec(),
                })
            }
        }
    }

    /// Runs the event's handler within the deadline; CreateContainer's may return an adjustment.
    async fn deliver(
        self: &Arc<Self>,
        ev: Event,
        pod: Option<PodSandbox>,
        c: Option<Container>,
    ) -> Result<Option<ContainerAdjustment>, Status> {
        let pod = pod.unwrap_or_default();
        let t0 = Instant::now();
        let (pod_name, ns, cname) =
            (pod.name.clone(), pod.namespace.clone(), c.as_ref().map(|c| c.name.clone()).unwrap_or_default());
        let deadline = *self.deadline.lock().unwrap();
        let (late_pod, late_c) = (pod.clone(), c.clone());
        let mut task = self.spawn_blocking(move |h| {
            let need = |c: &Option<Container>| c.clone().ok_or_else(|| format!("{ev:?} event without a container"));
            match ev {
                Event::CreateContainer => return h.on_create_container(&pod, &need(&c)?),
                Event::RunPodSandbox => h.on_run_pod_sandbox(&pod),
                Event::StopPodSandbox => h.on_stop_pod_sandbox(&pod),
                Event::RemovePodSandbox => h.on_remove_pod_sandbox(&pod),
                Event::StartContainer => h.on_start_container(&pod, &need(&c)?),
                Event::UpdateContainer => h.on_update_container(&pod, &need(&c)?),
                Event::StopContainer => h.on_stop_container(&pod, &need(&c)?),
                Event::RemoveContainer => h.on_remove_container(&pod, &need(&c)?),
                other => h.on_other_event(other, &pod, c.as_ref()),
            }
            .map(|()| None)
        });
        let res = match tokio::time::timeout(deadline, &mut task).await {
            Ok(joined) => joined_result(joined),
            Err(_) => {
                // Answer now, refusing; the handler still runs. Only when it has ended may it
                // undo what it did (a confined container that will never run): undone any
                // earlier, the handler would confine again after the undo and leave the entry
                // pinned (seen in CI: released at the deadline, confined again 1.5 s later).
                let h = self.handler.clone();
                tokio::spawn(async move {
                    let _ = task.await;
                    let _ = tokio::task::spawn_blocking(move || {
                        h.on_late(ev, &late_pod, late_c.as_ref());
                    })
                    .await;
                });
                Err(Status::new(
                    code::UNKNOWN,
                    format!(
                        "warden: {ev:?} of pod {ns}/{pod_name}, container {cname}: not handled within {deadline:?} (below the runtime's request timeout): refused, fail closed"
                    ),
                ))
            }
        };
        let us = t0.elapsed().as_micros() as u64;
        match &res {
            Ok(_) => {
                tracing::debug!(event = ?ev, pod = %pod_name, namespace = %ns, container = %cname, elapsed_us = us, "NRI event handled")
            }
            Err(s) => {
                tracing::warn!(event = ?ev, pod = %pod_name, namespace = %ns, container = %cname, elapsed_us = us, error = %s.message, "NRI event refused")
            }
        }
        res
    }

    async fn blocking(
        self: &Arc<Self>,
        f: impl FnOnce(&H) -> Result<(), String> + Send + 'static,
    ) -> Result<(), Status> {
        joined_result(self.spawn_blocking(f).await)
    }

    fn spawn_blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&H) -> Result<T, String> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<T, String>> {
        let h = self.handler.clone();
        tokio::task::spawn_blocking(move || f(&h))
    }
}

fn joined_result<T>(r: Result<Result<T, String>, tokio::task::JoinError>) -> Result<T, Status> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(msg)) => Err(Status::new(code::UNKNOWN, msg)),
        Err(e) => Err(Status::new(code::UNKNOWN, format!("plugin handler panicked: {e}"))),
    }
}

fn raise(s: &mut Stage, to: Stage) -> bool {
    if *s < to {
        *s = to;
        true
    } else {
        false
    }
}

fn method_event(m: &str) -> Option<Event> {
    Some(match m {
        "RunPodSandbox" => Event::RunPodSandbox,
        "StopPodSandbox" => Event::StopPodSandbox,
        "RemovePodSandbox" => Event::RemovePodSandbox,
        "CreateContainer" => Event::CreateContainer,
        "PostCreateContainer" => Event::PostCreateContainer,
        "StartContainer" => Event::StartContainer,
        "PostStartContainer" => Event::PostStartContainer,
        "UpdateContainer" => Event::UpdateContainer,
        "PostUpdateContainer" => Event::PostUpdateContainer,
        "StopContainer" => Event::StopContainer,
        "RemoveContainer" => Event::RemoveContainer,
        _ => return None,
    })
}
