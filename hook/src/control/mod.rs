//! The control socket (see server.rs).
mod server;
pub use server::*;
