//! A self-contained client for containerd's NRI (Node Resource Interface) v1alpha1 protocol,
//! the plugin side. It depends only on tokio, prost, bytes, thiserror and tracing, so it can
//! be lifted out as a crate.
//!
//! Layers, bottom up:
//! - [`mux`]: the connection multiplexer NRI runs on its single unix-socket connection
//!   (logical connection 1: Plugin service, served here; 2: Runtime service, called from here).
//! - [`ttrpc`]: containerd's ttrpc framing (10-byte header, Request/Response/Status).
//! - [`session`]: one live connection: demultiplexing, request dispatch, client calls.
//! - [`api`]: hand-written prost messages for the subset of `nri.pkg.api.v1alpha1` used.
//! - [`plugin`]: [`Handler`] trait, connect/register ([`Plugin`]), reconnection.
//!
//! Handshake: the plugin connects (or inherits fd 3 when pre-launched), calls
//! Runtime/RegisterPlugin(name, idx); the runtime calls Plugin/Configure (the plugin answers
//! with its event mask), then Plugin/Synchronize (existing pods and containers), then the
//! subscribed events as they happen (StateChange, CreateContainer, StopContainer, ...).
pub mod api;
pub mod mux;
pub mod plugin;
pub mod session;
pub mod ttrpc;

pub use api::{Container, ContainerAdjustment, Event, EventMask, Hook, Hooks, OptionalInt, PodSandbox};
pub use plugin::{run_with_reconnect, Endpoint, Exit, Handler, NriError, Plugin, PluginOptions, RuntimeClient};

#[cfg(test)]
mod tests;
