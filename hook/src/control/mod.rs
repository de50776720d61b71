//! The daemon's control socket: `warden status`, `warden events --follow`, container look-ups
//! for the CLI, and `confine`/`release` for `warden oci-hook` (runtimes without NRI).
//!
//! Protocol ([`protocol`]): the client sends one JSON request line (`{"op":"status"}`, ...); the
//! daemon answers with JSON lines, the first one `{"ok":true,...}` or
//! `{"ok":false,"error":"..."}`. `events` with `follow` then streams `{"event":{...}}` lines,
//! and `{"dropped":N}` when this client was too slow and lost N events.
//!
//! - [`server`]: the socket, who may connect (root only, never from inside a confined
//!   container), and the [`Handler`] trait the daemon implements: this module knows no daemon
//!   type, as `nri` knows none.
//! - [`peer`]: where the peer process is (pidfd, /proc) and whether it may be served: fail
//!   closed, a confined or unplaceable peer is refused.
//! - [`hub`]: the fan-out of the daemon's events to `events --follow` subscribers.
//! - [`client`]: the CLI's and the OCI hook's side.
//! - [`status`]: the pinned state as `status` reports it, with or without a daemon.
pub mod client;
pub mod hub;
pub mod peer;
pub mod protocol;
pub mod server;
pub mod status;

pub use client::{call, container_cgroup, Client};
pub use hub::{EventHub, Subscription};
pub use protocol::{
    ConfineAnswer, ConfineRequest, ContainerEvent, ContainerInfo, ContainerNames, EventFilter, Refusal, Request,
};
pub use server::{peer_cred, prepare, serve, Handler, PeerCred, Prepared, Server, SUBSCRIBER_QUEUE};
pub use status::pin_status;
