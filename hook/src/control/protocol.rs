//! What goes over the control socket: one JSON request line from the client, JSON answer lines
//! from the daemon (see the module documentation of [`super`]).
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::peer::Access;
use crate::events::EventView;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Daemon version, kernel layers, confined containers.
    Status,
    /// Events of confined containers; with `follow`, a stream.
    Events(EventFilter),
    /// A confined container by id or unique id prefix.
    Container { id: String },
    /// From `warden oci-hook` at createRuntime.
    Confine(ConfineRequest),
    /// From `warden oci-hook` at poststop.
    Release { id: String },
}

impl Request {
    /// Whether the request changes confinement (see [`super::peer::decide`]).
    pub fn access(&self) -> Access {
        match self {
            Request::Status | Request::Events(_) | Request::Container { .. } => Access::ReadOnly,
            Request::Confine(c) if c.backstop => Access::Tighten,
            Request::Confine(_) | Request::Release { .. } => Access::Mutating,
        }
    }

    /// The `op` name, for logs.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Events(_) => "events",
            Request::Container { .. } => "container",
            Request::Confine(_) => "confine",
            Request::Release { .. } => "release",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventFilter {
    pub follow: bool,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    /// Container name, or a container id prefix.
    pub container: Option<String>,
    /// Root cgroup id of the confined cgroup.
    pub cgroup_id: Option<u64>,
}

impl EventFilter {
    pub fn matches(&self, ev: &ContainerEvent) -> bool {
        self.namespace.as_ref().is_none_or(|n| *n == ev.namespace)
            && self.pod.as_ref().is_none_or(|p| *p == ev.pod)
            && self.container.as_ref().is_none_or(|c| {
                *c == ev.container
                    || (!ev.container_id.is_empty() && !c.is_empty() && ev.container_id.starts_with(c.as_str()))
            })
            && self.cgroup_id.is_none_or(|id| id == ev.event.root_cgroup)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfineRequest {
    /// The runtime's container id.
    pub id: String,
    /// The container's init process (the OCI state's pid): the daemon reads its cgroup itself.
    pub pid: i32,
    /// The cgroup2 directory the hook found; must agree with the pid's.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// The container's OCI annotations (pod annotations included, as CRI-O passes them).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// From the NRI backstop hook (`warden oci-hook --backstop`): confine from what the daemon
    /// stored at CreateContainer; the annotations are not consulted.
    #[serde(default)]
    pub backstop: bool,
}

/// The daemon's answer to a [`Request::Confine`] that did not fail the start (a refusal is an
/// `{"ok":false,"error":...}` answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfineAnswer {
    Confined {
        profile: String,
        mode: String,
        cgroup_id: u64,
    },
    /// Not warden's business (no profile applies, or the pod's sandbox container).
    NotConfined,
    /// Refused, but the daemon's `fail_open` lets the container start unconfined.
    FailOpen(String),
}

/// A refused request: the daemon's message, and whether it is a violation of the operator's
/// rules, which no fail-open (the daemon's or the hook's `--fail-open`) may turn into an
/// unconfined start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub message: String,
    pub violation: bool,
}

/// Names of the container an event belongs to (empty for a cgroup confined by hand).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerNames {
    pub container_id: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// An event with the container it belongs to (empty names for a cgroup confined by hand).
#[derive(Debug, Clone, Serialize)]
pub struct ContainerEvent {
    pub container_id: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    #[serde(flatten)]
    pub event: EventView,
}

/// A confined container, as `status` and `container` report it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub profile: String,
    /// First bytes of the compiled profile's hash, as in the pinned state.
    pub version: String,
    pub mode: String,
    pub cgroup_id: u64,
    pub cgroup_path: PathBuf,
    /// `nri` or `oci-hook`.
    pub via: String,
    /// The operator's rule that decided the policy (`[[policy.rules]]` name, or `default`).
    #[serde(default)]
    pub rule: String,
    /// That rule's baseline, in force as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// Denials (enforce) or would-be denials (complain) per kind, from the kernel's counters.
    pub violations: BTreeMap<String, u64>,
    pub events_sent: u64,
    pub events_dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_mistakes_are_errors() {
        let r: Request = serde_json::from_str(r#"{"op":"status"}"#).unwrap();
        assert_eq!(r, Request::Status);
        let r: Request = serde_json::from_str(r#"{"op":"events","follow":true,"pod":"web"}"#).unwrap();
        assert_eq!(r, Request::Events(EventFilter { follow: true, pod: Some("web".into()), ..Default::default() }));
        let r: Request =
            serde_json::from_str(r#"{"op":"confine","id":"c1","pid":42,"annotations":{"warden.io/profile":"web"}}"#)
                .unwrap();
        let Request::Confine(c) = r else { panic!() };
        assert_eq!((c.id.as_str(), c.pid, c.annotations.len()), ("c1", 42, 1));
        // Round trip of what the client sends.
        for r in [
            Request::Release { id: "x".into() },
            Request::Container { id: "ab".into() },
            Request::Events(EventFilter::default()),
        ] {
            assert_eq!(serde_json::from_str::<Request>(&serde_json::to_string(&r).unwrap()).unwrap(), r);
        }
        assert!(serde_json::from_str::<Request>(r#"{"op":"shutdown"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"events","folow":true}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"release"}"#).is_err());
        // What a peer the daemon cannot place (pid 0) may still do: reads only.
        for (r, a) in [
            (r#"{"op":"status"}"#, Access::ReadOnly),
            (r#"{"op":"events","follow":true}"#, Access::ReadOnly),
            (r#"{"op":"container","id":"x"}"#, Access::ReadOnly),
            (r#"{"op":"release","id":"x"}"#, Access::Mutating),
            (r#"{"op":"confine","id":"x","pid":1}"#, Access::Mutating),
            (r#"{"op":"confine","id":"x","pid":1,"backstop":true}"#, Access::Tighten),
        ] {
            let req: Request = serde_json::from_str(r).unwrap();
            assert_eq!(req.access(), a, "{r}");
            assert!(r.contains(req.op()), "{r}");
        }
    }
}
