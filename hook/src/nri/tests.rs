//! The whole client against a scripted fake runtime on a socketpair: handshake, split and
//! chunked messages, multi-part Synchronize, an event refused with a message, unknown methods,
//! Shutdown. (The real-containerd test lives in tests/integration.)
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::io::AsyncWriteExt as _;
use tokio::net::UnixStream;

use super::api::*;
use super::mux::{self, PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN};
use super::plugin::*;
use super::ttrpc::{self, code, Decoded, Request, Response};

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<String>>,
}

impl Handler for Recorder {
    fn on_synchronize(&self, pods: &[PodSandbox], containers: &[Container]) -> Result<(), String> {
        self.seen.lock().unwrap().push(format!("sync {} {}", pods.len(), containers.len()));
        Ok(())
    }
    fn on_run_pod_sandbox(&self, pod: &PodSandbox) -> Result<(), String> {
        let a = pod.annotations.get("big").map(|v| v.len()).unwrap_or(0);
        self.seen.lock().unwrap().push(format!("run {} {a}", pod.name));
        Ok(())
    }
    fn on_start_container(&self, pod: &PodSandbox, c: &Container) -> Result<(), String> {
        if c.name == "slow" {
            // Past the deadline: the runtime is answered before this returns.
            std::thread::sleep(Duration::from_millis(800));
        }
        self.seen.lock().unwrap().push(format!("start {}/{} pid {} {}", pod.name, c.name, c.pid, c.cgroups_path()));
        if c.name == "bad" {
            return Err(format!("refused: {}", c.name));
        }
        Ok(())
    }
    fn on_shutdown(&self) {
        self.seen.lock().unwrap().push("shutdown".into());
    }
    fn on_late(&self, event: Event, _pod: &PodSandbox, c: Option<&Container>) {
        let name = c.map(|c| c.name.as_str()).unwrap_or("-");
        self.seen.lock().unwrap().push(format!("late {event:?} {name}"));
    }
}

/// The runtime end, written with the low-level modules only.
struct FakeRuntime {
    s: UnixStream,
    decoders: [ttrpc::Decoder; 3],
    next_id: u32,
    /// Mux frame size used when sending (small: exercises reassembly on the plugin side).
    frame: usize,
}

impl FakeRuntime {
    async fn next(&mut self) -> (u32, ttrpc::Header, Vec<u8>) {
        loop {
            for conn in [1u32, 2] {
                if let Some(d) = self.decoders[conn as usize].next_message() {
                    let Decoded::Message { header, body } = d else { panic!("oversized from plugin") };
                    return (conn, header, body);
                }
            }
            let f = tokio::time::timeout(Duration::from_secs(5), mux::read_frame(&mut self.s))
                .await
                .expect("plugin answers")
                .expect("frame")
                .expect("not EOF");
            assert!(f.payload.len() <= mux::WRITE_CHUNK, "plugin sent a frame over the 4 KiB chunk");
            self.decoders[f.conn as usize].push(&f.payload);
        }
    }

    async fn send_raw(&mut self, conn: u32, msg: &[u8]) {
        for chunk in msg.chunks(self.frame) {
            let mut b = Vec::new();
            mux::encode(conn, chunk, &mut b);
            self.s.write_all(&b).await.unwrap();
        }
    }

    /// Calls a Plugin-service method and returns the response.
    async fn call(&mut self, method: &str, payload: Vec<u8>) -> Response {
        let id = self.next_id;
        self.next_id += 2;
        let req = Request { service: PLUGIN_SERVICE.into(), method: method.into(), payload, ..Default::default() };
        let msg =
            ttrpc::encode_message(id, ttrpc::TYPE_REQUEST, ttrpc::FLAG_REMOTE_CLOSED, &req.encode_to_vec()).unwrap();
        self.send_raw(PLUGIN_SERVICE_CONN, &msg).await;
        let (conn, h, body) = self.next().await;
        assert_eq!((conn, h.stream_id, h.kind), (PLUGIN_SERVICE_CONN, id, ttrpc::TYPE_RESPONSE));
        Response::decode(body.as_slice()).unwrap()
    }

    async fn expect_register(&mut self) -> RegisterPluginRequest {
        let (conn, h, body) = self.next().await;
        assert_eq!((conn, h.kind, h.stream_id % 2), (RUNTIME_SERVICE_CONN, ttrpc::TYPE_REQUEST, 1));
        let req = Request::decode(body.as_slice()).unwrap();
        assert_eq!((req.service.as_str(), req.method.as_str()), (RUNTIME_SERVICE, "RegisterPlugin"));
        let resp = Response { status: None, payload: Empty {}.encode_to_vec() };
        let msg = ttrpc::encode_message(h.stream_id, ttrpc::TYPE_RESPONSE, 0, &resp.encode_to_vec()).unwrap();
        self.send_raw(RUNTIME_SERVICE_CONN, &msg).await;
        RegisterPluginRequest::decode(req.payload.as_slice()).unwrap()
    }
}

fn ok(resp: &Response) -> bool {
    resp.status.as_ref().map(|s| s.code == code::OK).unwrap_or(true)
}

#[tokio::test]
async fn handshake_events_errors_and_shutdown() {
    let dir = tempfile_dir();
    let sock = dir.join("nri.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();

    let handler = Arc::new(Recorder::default());
    let opts = PluginOptions::new("warden", "10").unwrap();
    let h2 = handler.clone();
    let connect = tokio::spawn(async move { Plugin::connect(&Endpoint::Socket(sock), &opts, h2).await });

    let (s, _) = listener.accept().await.unwrap();
    let mut rt = FakeRuntime { s, decoders: Default::default(), next_id: 1, frame: 3 };
    let reg = rt.expect_register().await;
    assert_eq!((reg.plugin_name.as_str(), reg.plugin_idx.as_str()), ("warden", "10"));

    let cfg = ConfigureRequest { runtime_name: "fake".into(), runtime_version: "1".into(), ..Default::default() };
    let resp = rt.call("Configure", cfg.encode_to_vec()).await;
    assert!(ok(&resp));
    let mask = EventMask(ConfigureResponse::decode(resp.payload.as_slice()).unwrap().events);
    for e in [
        Event::RunPodSandbox,
        Event::StartContainer,
        Event::StopContainer,
        Event::RemoveContainer,
        Event::RemovePodSandbox,
    ] {
        assert!(mask.contains(e), "{e:?} subscribed");
    }
    assert!(!mask.contains(Event::CreateContainer));

    // Two-part Synchronize (newer runtimes): the handler sees it once, whole.
    rt.frame = 1 << 20;
    let part1 = SynchronizeRequest { pods: vec![PodSandbox::default()], containers: vec![], more: true };
    let r1 = rt.call("Synchronize", part1.encode_to_vec()).await;
    assert!(SynchronizeResponse::decode(r1.payload.as_slice()).unwrap().more);
    let part2 =
        SynchronizeRequest { pods: vec![], containers: vec![Container::default(), Container::default()], more: false };
    let r2 = rt.call("Synchronize", part2.encode_to_vec()).await;
    assert!(ok(&r2));
    let plugin = connect.await.unwrap().expect("plugin connected");
    assert!(plugin.synchronized(Duration::from_secs(1)).await);

    // A RunPodSandbox with a 100 KiB annotation: many frames on the wire.
    let mut pod = PodSandbox { name: "web".into(), namespace: "default".into(), ..Default::default() };
    pod.annotations.insert("big".into(), "x".repeat(100 * 1024));
    let ev = StateChangeEvent { event: Event::RunPodSandbox as i32, pod: Some(pod.clone()), container: None };
    rt.frame = 4096;
    assert!(ok(&rt.call("StateChange", ev.encode_to_vec()).await));

    let mut c = Container { name: "app".into(), pid: 1234, ..Default::default() };
    c.linux = Some(LinuxContainer { cgroups_path: "/kubepods/p/c".into(), ..Default::default() });
    let ev =
        StateChangeEvent { event: Event::StartContainer as i32, pod: Some(pod.clone()), container: Some(c.clone()) };
    assert!(ok(&rt.call("StateChange", ev.encode_to_vec()).await));

    c.name = "bad".into();
    let ev =
        StateChangeEvent { event: Event::StartContainer as i32, pod: Some(pod.clone()), container: Some(c.clone()) };
    let resp = rt.call("StateChange", ev.encode_to_vec()).await;
    let st = resp.status.expect("error status");
    assert_eq!((st.code, st.message.as_str()), (code::UNKNOWN, "refused: bad"));

    // Newer runtimes' dedicated method for the same event.
    let req = PodContainerRequest { pod: Some(pod.clone()), container: Some(c.clone()) };
    let resp = rt.call("StartContainer", req.encode_to_vec()).await;
    assert_eq!(resp.status.unwrap().message, "refused: bad");

    let resp = rt.call("NoSuchMethod", vec![]).await;
    assert_eq!(resp.status.unwrap().code, code::UNIMPLEMENTED);

    // Garbage payload: an error status, and the connection keeps working.
    let resp = rt.call("StateChange", vec![0xff, 0xff, 0xff]).await;
    assert_eq!(resp.status.unwrap().code, code::INVALID_ARGUMENT);

    assert!(ok(&rt.call("Shutdown", Empty {}.encode_to_vec()).await));
    drop(rt);
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), plugin.wait()).await.unwrap(), Exit::Shutdown);

    let seen = handler.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            "sync 1 2".to_string(),
            format!("run web {}", 100 * 1024),
            "start web/app pid 1234 /kubepods/p/c".into(),
            "start web/bad pid 1234 /kubepods/p/c".into(),
            "start web/bad pid 1234 /kubepods/p/c".into(),
            "shutdown".into(),
        ]
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A runtime that closes the connection: pending and future calls fail, wait() says so.
#[tokio::test]
async fn eof_is_reported() {
    let dir = tempfile_dir();
    let sock = dir.join("nri.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let opts = PluginOptions::new("warden", "10").unwrap();
    let connect =
        tokio::spawn(
            async move { Plugin::connect(&Endpoint::Socket(sock), &opts, Arc::new(Recorder::default())).await },
        );
    let (s, _) = listener.accept().await.unwrap();
    drop(s); // close before answering RegisterPlugin
    let err = connect.await.unwrap().err().expect("registration must fail");
    assert!(err.to_string().contains("RegisterPlugin"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn plugin_index_is_two_digits() {
    assert!(PluginOptions::new("warden", "1").is_err());
    assert!(PluginOptions::new("warden", "ab").is_err());
    assert!(PluginOptions::new("a/b", "10").is_err());
    assert!(PluginOptions::new("warden", "05").is_ok());
}

fn tempfile_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "warden-nri-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A plugin pre-launched on one end of a socketpair (index `idx`, a `Recorder` handler) and the
/// fake runtime on the other; the plugin's connect runs in a task until the handshake is done.
fn prelaunched(idx: &'static str) -> (FakeRuntime, Arc<Recorder>, tokio::task::JoinHandle<Result<Plugin, NriError>>) {
    use std::os::fd::IntoRawFd as _;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = ours.into_raw_fd();
    theirs.set_nonblocking(true).unwrap();
    let rt =
        FakeRuntime { s: UnixStream::from_std(theirs).unwrap(), decoders: Default::default(), next_id: 1, frame: 4096 };
    let handler = Arc::new(Recorder::default());
    let h2 = handler.clone();
    let connect = tokio::spawn(async move {
        let opts = PluginOptions::new("warden", idx).unwrap();
        Plugin::connect(&Endpoint::Fd(fd), &opts, h2).await
    });
    (rt, handler, connect)
}

/// Pre-launched mode: the runtime's end of a socketpair, the plugin on the inherited fd.
#[tokio::test]
async fn prelaunched_plugin_uses_its_fd() {
    let (mut rt, handler, connect) = prelaunched("05");
    let reg = rt.expect_register().await;
    assert_eq!(reg.plugin_idx, "05");
    assert!(ok(&rt.call("Configure", ConfigureRequest::default().encode_to_vec()).await));
    let plugin = connect.await.unwrap().expect("connected on fd, before any Synchronize");
    assert!(!plugin.synchronized(Duration::from_millis(50)).await);
    assert!(ok(&rt.call("Synchronize", SynchronizeRequest::default().encode_to_vec()).await));
    assert!(plugin.synchronized(Duration::from_secs(1)).await);
    drop(rt); // the runtime goes away: EOF
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), plugin.wait()).await.unwrap(),
        Exit::Closed(super::session::Closed::Eof)
    );
    assert_eq!(handler.seen.lock().unwrap().clone(), vec!["sync 0 0".to_string()]);
}

#[test]
fn endpoint_from_env() {
    // Only this test touches NRI_PLUGIN_SOCKET in this process.
    std::env::set_var(ENV_SOCKET, "3");
    assert!(matches!(Endpoint::from_env_or("/x.sock").unwrap(), Endpoint::Fd(3)));
    std::env::set_var(ENV_SOCKET, "three");
    assert!(Endpoint::from_env_or("/x.sock").is_err());
    std::env::remove_var(ENV_SOCKET);
    assert!(
        matches!(Endpoint::from_env_or("/x.sock").unwrap(), Endpoint::Socket(p) if p == std::path::Path::new("/x.sock"))
    );
}

#[test]
fn handlers_answer_before_the_runtime_gives_up() {
    use super::plugin::answer_deadline;
    use std::time::Duration;
    assert_eq!(answer_deadline(0), Duration::from_millis(1500), "containerd's default 2 s");
    assert_eq!(answer_deadline(2000), Duration::from_millis(1500));
    assert_eq!(answer_deadline(10_000), Duration::from_millis(9500), "at most 500 ms of margin");
    assert_eq!(answer_deadline(400), Duration::from_millis(300));
}

/// A handler past the deadline: the runtime gets a refusal at the deadline, and the undo
/// (`on_late`) runs only after the handler has returned, never beside it: an undo that ran
/// first would be undone by the handler's own late work (a confined entry left pinned).
#[tokio::test]
async fn a_late_handler_is_refused_at_the_deadline_and_undone_after_it_ends() {
    let (mut rt, handler, connect) = prelaunched("10");
    rt.expect_register().await;
    // 400 ms request timeout: 300 ms to answer (answer_deadline).
    let cfg = ConfigureRequest { request_timeout: 400, ..Default::default() };
    assert!(ok(&rt.call("Configure", cfg.encode_to_vec()).await));
    assert!(ok(&rt.call("Synchronize", SynchronizeRequest::default().encode_to_vec()).await));
    let _plugin = connect.await.unwrap().expect("connected");

    let pod = PodSandbox { name: "web".into(), ..Default::default() };
    let c = Container { name: "slow".into(), ..Default::default() };
    let ev = StateChangeEvent { event: Event::StartContainer as i32, pod: Some(pod), container: Some(c) };
    let t0 = std::time::Instant::now();
    let resp = rt.call("StateChange", ev.encode_to_vec()).await;
    let answered = t0.elapsed();
    let st = resp.status.expect("refused at the deadline");
    assert!(st.message.contains("not handled within 300ms") && st.message.contains("fail closed"), "{}", st.message);
    assert!(answered < Duration::from_millis(700), "answered at the deadline, not after the handler: {answered:?}");

    let late = "late StartContainer slow".to_string();
    for _ in 0..100 {
        if handler.seen.lock().unwrap().contains(&late) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        handler.seen.lock().unwrap().clone(),
        vec!["sync 0 0".to_string(), "start web/slow pid 0 ".into(), late],
        "the undo comes after the handler's own work"
    );
}
