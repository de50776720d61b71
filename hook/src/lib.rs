//! warden: per-container runtime enforcer. Library half of the `warden` binary: the modules
//! are public so the integration tests drive the same code the daemon runs.
pub mod cgroup;
pub mod config;
pub mod config_check;
pub mod control;
pub mod daemon;
pub mod denylist;
pub mod enforcer;
pub mod escape;
pub mod events;
pub mod kernel;
pub mod learn;
pub mod nri;
pub mod oci_hook;
pub mod ops;
pub mod policy;
pub mod profile;
