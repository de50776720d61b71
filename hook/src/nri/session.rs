//! One NRI connection: the multiplexed unix socket with a ttrpc server on connection 1
//! (requests from the runtime) and a ttrpc client on connection 2 (requests to the runtime).
//! A reader task demultiplexes frames, reassembles ttrpc messages, completes pending client
//! calls and runs each incoming request on its own task; all writes go through one lock so
//! frames of a message stay together and client stream ids reach the peer in order.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{oneshot, watch};

use super::mux::{self, PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN};
use super::ttrpc::{self, code, Decoded, Request, Response, Status};

/// Serves one incoming request: `Ok(encoded response message)` or an error status.
pub type ServiceFn =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, Status>> + Send>> + Send + Sync>;

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The runtime closed the connection (e.g. containerd stopped or restarted).
    Eof,
    /// We closed it.
    Local,
    /// Protocol or I/O error.
    Error(String),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Eof => write!(f, "connection closed by the runtime"),
            Closed::Local => write!(f, "connection closed locally"),
            Closed::Error(e) => write!(f, "connection failed: {e}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{service}/{method}: the runtime answered with status {} ({})", .status.code, .status.message)]
    Status { service: String, method: String, status: Status },
    #[error("{service}/{method}: no answer within {timeout:?}")]
    Timeout { service: String, method: String, timeout: Duration },
    #[error("{service}/{method}: {closed}")]
    Closed { service: String, method: String, closed: Closed },
    #[error("{service}/{method}: {reason}")]
    Protocol { service: String, method: String, reason: String },
}

struct Writer {
    half: OwnedWriteHalf,
    next_stream_id: u32,
}

struct Inner {
    writer: tokio::sync::Mutex<Writer>,
    pending: Mutex<HashMap<u32, oneshot::Sender<Response>>>,
    closed_tx: watch::Sender<Option<Closed>>,
}

/// A running NRI connection. Cloning shares it.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
    closed_rx: watch::Receiver<Option<Closed>>,
    reader: Arc<tokio::task::JoinHandle<()>>,
}

impl Session {
    /// Starts the reader task on `stream`; incoming Plugin-service requests go to `service`.
    pub fn start(stream: UnixStream, service: ServiceFn) -> Session {
        let (rd, wr) = stream.into_split();
        let (closed_tx, closed_rx) = watch::channel(None);
        let inner = Arc::new(Inner {
            writer: tokio::sync::Mutex::new(Writer { half: wr, next_stream_id: 1 }),
            pending: Mutex::new(HashMap::new()),
            closed_tx,
        });
        let reader = tokio::spawn(reader_loop(rd, inner.clone(), service));
        Session { inner, closed_rx, reader: Arc::new(reader) }
    }

    /// Calls `service/method` on the runtime (multiplexer connection 2).
    pub async fn call<Q: Message, A: Message + Default>(
        &self,
        service: &str,
        method: &str,
        req: &Q,
        timeout: Duration,
    ) -> Result<A, CallError> {
        let names = || (service.to_string(), method.to_string());
        if let Some(closed) = self.closed_rx.borrow().clone() {
            let (service, method) = names();
            return Err(CallError::Closed { service, method, closed });
        }
        let request = Request {
            service: service.into(),
            method: method.into(),
            payload: req.encode_to_vec(),
            timeout_nano: timeout.as_nanos().min(i64::MAX as u128) as i64,
            metadata: vec![],
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.inner.writer.lock().await;
            let id = w.next_stream_id;
            w.next_stream_id = w.next_stream_id.wrapping_add(2);
            let msg =
                ttrpc::encode_message(id, ttrpc::TYPE_REQUEST, ttrpc::FLAG_REMOTE_CLOSED, &request.encode_to_vec())
                    .map_err(|e| {
                        let (service, method) = names();
                        CallError::Protocol { service, method, reason: e.to_string() }
                    })?;
            self.inner.pending.lock().expect("pending lock").insert(id, tx);
            if let Err(e) = mux::write_frames(&mut w.half, RUNTIME_SERVICE_CONN, &msg).await {
                self.inner.pending.lock().expect("pending lock").remove(&id);
                let (service, method) = names();
                return Err(CallError::Closed { service, method, closed: Closed::Error(format!("write: {e}")) });
            }
        }
        let resp = match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                let (service, method) = names();
                return Err(CallError::Timeout { service, method, timeout });
            }
            Ok(Err(_)) => {
                let closed = self.closed_rx.borrow().clone().unwrap_or(Closed::Eof);
                let (service, method) = names();
                return Err(CallError::Closed { service, method, closed });
            }
            Ok(Ok(resp)) => resp,
        };
        if let Some(status) = resp.status.filter(|s| s.code != code::OK) {
            let (service, method) = names();
            return Err(CallError::Status { service, method, status });
        }
        A::decode(resp.payload.as_slice()).map_err(|e| {
            let (service, method) = names();
            CallError::Protocol { service, method, reason: format!("undecodable response: {e}") }
        })
    }

    /// Resolves when the connection has ended, with the reason.
    pub async fn closed(&self) -> Closed {
        let mut rx = self.closed_rx.clone();
        loop {
            if let Some(c) = rx.borrow_and_update().clone() {
                return c;
            }
            if rx.changed().await.is_err() {
                return Closed::Local;
            }
        }
    }

    /// Closes the connection (both directions) and fails pending calls.
    pub async fn close(&self) {
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.inner.writer.lock().await.half).await;
        self.reader.abort();
        finish(&self.inner, Closed::Local);
    }
}

fn finish(inner: &Inner, why: Closed) {
    inner.closed_tx.send_if_modified(|c| {
        if c.is_none() {
            *c = Some(why);
            true
        } else {
            false
        }
    });
    // Dropping the senders fails every pending call with "closed".
    inner.pending.lock().expect("pending lock").clear();
}

async fn send(inner: &Inner, conn: u32, stream_id: u32, kind: u8, body: &[u8]) {
    let msg = match ttrpc::encode_message(stream_id, kind, 0, body) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(stream_id, error = %e, "NRI response too large, answering with an error status");
            let resp = Response { status: Some(Status::new(code::RESOURCE_EXHAUSTED, e.to_string())), payload: vec![] };
            ttrpc::encode_message(stream_id, kind, 0, &resp.encode_to_vec()).expect("small message")
        }
    };
    let mut w = inner.writer.lock().await;
    if let Err(e) = mux::write_frames(&mut w.half, conn, &msg).await {
        tracing::warn!(stream_id, error = %e, "NRI: writing a response failed");
    }
}

async fn reader_loop(mut rd: OwnedReadHalf, inner: Arc<Inner>, service: ServiceFn) {
    let mut plugin_conn = ttrpc::Decoder::default();
    let mut runtime_conn = ttrpc::Decoder::default();
    let why = loop {
        let frame = match mux::read_frame(&mut rd).await {
            Ok(Some(f)) => f,
            Ok(None) => break Closed::Eof,
            Err(e) => break Closed::Error(e.to_string()),
        };
        match frame.conn {
            PLUGIN_SERVICE_CONN => {
                plugin_conn.push(&frame.payload);
                while let Some(d) = plugin_conn.next_message() {
                    on_request(&inner, &service, d);
                }
            }
            RUNTIME_SERVICE_CONN => {
                runtime_conn.push(&frame.payload);
                while let Some(d) = runtime_conn.next_message() {
                    on_response(&inner, d);
                }
            }
            other => tracing::debug!(
                conn = other,
                len = frame.payload.len(),
                "NRI: frame for an unknown multiplexed connection dropped"
            ),
        }
    };
    tracing::debug!(reason = %why, "NRI connection reader ended");
    finish(&inner, why);
}

fn on_request(inner: &Arc<Inner>, service: &ServiceFn, d: Decoded) {
    let (header, body) = match d {
        Decoded::Oversized(h) => {
            tracing::warn!(stream_id = h.stream_id, len = h.length, "NRI: oversized request refused");
            let resp = Response {
                status: Some(Status::new(
                    code::RESOURCE_EXHAUSTED,
                    format!("message length {} exceeds maximum {}", h.length, ttrpc::MAX_MESSAGE),
                )),
                payload: vec![],
            };
            let inner = inner.clone();
            tokio::spawn(async move {
                send(&inner, PLUGIN_SERVICE_CONN, h.stream_id, ttrpc::TYPE_RESPONSE, &resp.encode_to_vec()).await
            });
            return;
        }
        Decoded::Message { header, body } => (header, body),
    };
    if header.kind != ttrpc::TYPE_REQUEST {
        tracing::debug!(
            stream_id = header.stream_id,
            kind = header.kind,
            "NRI: non-request message on the plugin service connection ignored"
        );
        return;
    }
    let inner = inner.clone();
    let service = service.clone();
    tokio::spawn(async move {
        let result = match Request::decode(body.as_slice()) {
            Ok(req) => service(req).await,
            Err(e) => Err(Status::new(code::INVALID_ARGUMENT, format!("undecodable ttrpc request: {e}"))),
        };
        let resp = match result {
            Ok(payload) => Response { status: Some(Status::new(code::OK, "")), payload },
            Err(status) => Response { status: Some(status), payload: vec![] },
        };
        send(&inner, PLUGIN_SERVICE_CONN, header.stream_id, ttrpc::TYPE_RESPONSE, &resp.encode_to_vec()).await;
    });
}

fn on_response(inner: &Inner, d: Decoded) {
    let (id, resp) = match d {
        Decoded::Oversized(h) => (
            h.stream_id,
            Response {
                status: Some(Status::new(code::RESOURCE_EXHAUSTED, format!("response of {} bytes refused", h.length))),
                payload: vec![],
            },
        ),
        Decoded::Message { header, body } if header.kind == ttrpc::TYPE_RESPONSE => {
            match Response::decode(body.as_slice()) {
                Ok(r) => (header.stream_id, r),
                Err(e) => (
                    header.stream_id,
                    Response {
                        status: Some(Status::new(code::UNKNOWN, format!("undecodable ttrpc response: {e}"))),
                        payload: vec![],
                    },
                ),
            }
        }
        Decoded::Message { header, .. } => {
            tracing::debug!(
                stream_id = header.stream_id,
                kind = header.kind,
                "NRI: non-response message on the runtime service connection ignored"
            );
            return;
        }
    };
    match inner.pending.lock().expect("pending lock").remove(&id) {
        Some(tx) => {
            let _ = tx.send(resp);
        }
        None => tracing::debug!(stream_id = id, "NRI: response for no pending call dropped"),
    }
}
