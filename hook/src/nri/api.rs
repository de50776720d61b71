//! The subset of NRI's `nri.pkg.api.v1alpha1` messages warden uses, written by hand from the
//! public API description (containerd/nri pkg/api/api.proto, v0.6.x as shipped in containerd
//! 1.7). Field numbers are the wire contract; fields warden does not need are left out and
//! skipped on decode (protobuf ignores unknown fields), so newer runtimes that add fields work.
use std::collections::HashMap;

/// Fully qualified ttrpc service names.
pub const PLUGIN_SERVICE: &str = "nri.pkg.api.v1alpha1.Plugin";
pub const RUNTIME_SERVICE: &str = "nri.pkg.api.v1alpha1.Runtime";

// ---- Runtime service (served by the runtime, called by the plugin) ----

#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterPluginRequest {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    #[prost(string, tag = "2")]
    pub plugin_idx: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateContainersRequest {
    #[prost(message, repeated, tag = "1")]
    pub update: Vec<ContainerUpdate>,
    #[prost(message, repeated, tag = "2")]
    pub evict: Vec<ContainerEviction>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateContainersResponse {
    #[prost(message, repeated, tag = "1")]
    pub failed: Vec<ContainerUpdate>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

// ---- Plugin service (served by the plugin, called by the runtime) ----

#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfigureRequest {
    #[prost(string, tag = "1")]
    pub config: String,
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    #[prost(string, tag = "3")]
    pub runtime_version: String,
    /// Newer runtimes only (milliseconds; 0 when not sent).
    #[prost(int64, tag = "4")]
    pub registration_timeout: i64,
    #[prost(int64, tag = "5")]
    pub request_timeout: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfigureResponse {
    /// Bit (event - 1) set for every subscribed [`Event`].
    #[prost(int32, tag = "2")]
    pub events: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SynchronizeRequest {
    #[prost(message, repeated, tag = "1")]
    pub pods: Vec<PodSandbox>,
    #[prost(message, repeated, tag = "2")]
    pub containers: Vec<Container>,
    /// Newer runtimes split a large state into several requests; `more` is set on all but the last.
    #[prost(bool, tag = "3")]
    pub more: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SynchronizeResponse {
    #[prost(message, repeated, tag = "1")]
    pub update: Vec<ContainerUpdate>,
    #[prost(bool, tag = "2")]
    pub more: bool,
}

/// CreateContainer, StopContainer, UpdateContainer requests (and, on newer runtimes, the
/// per-event requests such as StartContainerRequest) all carry the pod as field 1 and the
/// container as field 2.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodContainerRequest {
    #[prost(message, optional, tag = "1")]
    pub pod: Option<PodSandbox>,
    #[prost(message, optional, tag = "2")]
    pub container: Option<Container>,
}

/// Response of UpdateContainer and StopContainer (and of CreateContainer when warden adjusts
/// nothing): no updates, no eviction.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdatesResponse {}

/// CreateContainer's answer: warden's adjustment of the container being created (the
/// `createRuntime` backstop hook). Updates of other containers (2) and evictions (3) are never
/// asked for and left out.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerResponse {
    #[prost(message, optional, tag = "1")]
    pub adjust: Option<ContainerAdjustment>,
}

/// The part of NRI's ContainerAdjustment warden uses: annotations (2) and OCI hooks (5).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerAdjustment {
    #[prost(map = "string, string", tag = "2")]
    pub annotations: HashMap<String, String>,
    #[prost(message, optional, tag = "5")]
    pub hooks: Option<Hooks>,
}

/// OCI hooks by stage; warden only adds `createRuntime` ones (field 2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hooks {
    #[prost(message, repeated, tag = "1")]
    pub prestart: Vec<Hook>,
    #[prost(message, repeated, tag = "2")]
    pub create_runtime: Vec<Hook>,
}

/// One OCI hook: the runtime executes `path` with `args` (args[0] is argv[0]) and the
/// container's state on stdin, and kills it after `timeout` seconds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hook {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(string, repeated, tag = "2")]
    pub args: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    pub env: Vec<String>,
    #[prost(message, optional, tag = "4")]
    pub timeout: Option<OptionalInt>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OptionalInt {
    #[prost(int64, tag = "1")]
    pub value: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StateChangeEvent {
    #[prost(enumeration = "Event", tag = "1")]
    pub event: i32,
    #[prost(message, optional, tag = "2")]
    pub pod: Option<PodSandbox>,
    #[prost(message, optional, tag = "3")]
    pub container: Option<Container>,
}

/// Lifecycle events; a plugin subscribes with an [`EventMask`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Event {
    Unknown = 0,
    RunPodSandbox = 1,
    StopPodSandbox = 2,
    RemovePodSandbox = 3,
    CreateContainer = 4,
    PostCreateContainer = 5,
    StartContainer = 6,
    PostStartContainer = 7,
    UpdateContainer = 8,
    PostUpdateContainer = 9,
    StopContainer = 10,
    RemoveContainer = 11,
}

/// A set of [`Event`]s: bit `event - 1`, as in the NRI API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventMask(pub i32);

impl EventMask {
    pub fn of(events: &[Event]) -> Self {
        let mut m = EventMask(0);
        for e in events {
            m.set(*e);
        }
        m
    }
    pub fn set(&mut self, e: Event) {
        if e != Event::Unknown {
            self.0 |= 1 << (e as i32 - 1);
        }
    }
    pub fn contains(self, e: Event) -> bool {
        e != Event::Unknown && self.0 & (1 << (e as i32 - 1)) != 0
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandbox {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub uid: String,
    #[prost(string, tag = "4")]
    pub namespace: String,
    #[prost(map = "string, string", tag = "5")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "6")]
    pub annotations: HashMap<String, String>,
    #[prost(string, tag = "7")]
    pub runtime_handler: String,
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandbox>,
    #[prost(uint32, tag = "9")]
    pub pid: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandbox {
    #[prost(string, tag = "3")]
    pub cgroup_parent: String,
    #[prost(string, tag = "4")]
    pub cgroups_path: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Container {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub pod_sandbox_id: String,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(enumeration = "ContainerState", tag = "4")]
    pub state: i32,
    #[prost(map = "string, string", tag = "5")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "6")]
    pub annotations: HashMap<String, String>,
    #[prost(string, repeated, tag = "7")]
    pub args: Vec<String>,
    #[prost(string, repeated, tag = "8")]
    pub env: Vec<String>,
    #[prost(message, repeated, tag = "9")]
    pub mounts: Vec<Mount>,
    #[prost(message, optional, tag = "11")]
    pub linux: Option<LinuxContainer>,
    /// Known from StartContainer on (the container's init process, in the host pid namespace).
    #[prost(uint32, tag = "12")]
    pub pid: u32,
}

impl Container {
    /// `linux.cgroups_path`, empty when the runtime did not send one.
    pub fn cgroups_path(&self) -> &str {
        self.linux.as_ref().map(|l| l.cgroups_path.as_str()).unwrap_or("")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ContainerState {
    ContainerUnknown = 0,
    ContainerCreated = 1,
    ContainerPaused = 2,
    ContainerRunning = 3,
    ContainerStopped = 4,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Mount {
    #[prost(string, tag = "1")]
    pub destination: String,
    #[prost(string, tag = "2")]
    pub r#type: String,
    #[prost(string, tag = "3")]
    pub source: String,
    #[prost(string, repeated, tag = "4")]
    pub options: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainer {
    #[prost(message, repeated, tag = "1")]
    pub namespaces: Vec<LinuxNamespace>,
    #[prost(string, tag = "5")]
    pub cgroups_path: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxNamespace {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub path: String,
}

/// An update request for an existing container. warden never changes resources, so the
/// `linux` field (2) is left out; it only names containers (e.g. in UpdateContainers' `failed`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerUpdate {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(bool, tag = "3")]
    pub ignore_failure: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerEviction {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(string, tag = "2")]
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn event_mask_bits_match_nri() {
        let m = EventMask::of(&[Event::RunPodSandbox, Event::StartContainer, Event::RemoveContainer]);
        assert_eq!(m.0, 1 | (1 << 5) | (1 << 10));
        assert!(m.contains(Event::StartContainer));
        assert!(!m.contains(Event::StopContainer));
        assert!(!m.contains(Event::Unknown));
    }

    /// A message carrying fields this subset does not know (hooks, resources, rlimits, and a
    /// field number from the future) decodes, keeping the known fields.
    #[test]
    fn unknown_fields_are_tolerated() {
        let mut buf = Vec::new();
        // Container.id = "c1"
        prost::encoding::string::encode(1, &"c1".to_string(), &mut buf);
        // Container.hooks (10): a nested message we do not model
        prost::encoding::bytes::encode(10, &vec![0x0a, 0x02, 0x08, 0x01], &mut buf);
        // Container.pid = 42
        prost::encoding::uint32::encode(12, &42, &mut buf);
        // Field 999, varint: unknown to everyone today
        prost::encoding::uint64::encode(999, &7, &mut buf);
        // Container.linux with cgroups_path and an unknown resources field (3)
        let mut linux = Vec::new();
        prost::encoding::bytes::encode(3, &vec![0x0a, 0x00], &mut linux);
        prost::encoding::string::encode(5, &"/kubepods/pod1/c1".to_string(), &mut linux);
        prost::encoding::bytes::encode(11, &linux, &mut buf);
        let c = Container::decode(buf.as_slice()).expect("decode with unknown fields");
        assert_eq!(c.id, "c1");
        assert_eq!(c.pid, 42);
        assert_eq!(c.cgroups_path(), "/kubepods/pod1/c1");
    }

    /// The backstop hook as NRI's wire contract spells it: CreateContainerResponse.adjust (1)
    /// -> ContainerAdjustment.hooks (5) -> Hooks.create_runtime (2) -> Hook {path 1, args 2,
    /// timeout 4 -> OptionalInt.value 1}. Bytes written by hand from the field numbers.
    #[test]
    fn create_container_adjustment_wire_format() {
        let resp = CreateContainerResponse {
            adjust: Some(ContainerAdjustment {
                annotations: HashMap::new(),
                hooks: Some(Hooks {
                    prestart: vec![],
                    create_runtime: vec![Hook {
                        path: "/w".into(),
                        args: vec!["w".into()],
                        env: vec![],
                        timeout: Some(OptionalInt { value: 30 }),
                    }],
                }),
            }),
        };
        let hook = [0x0a, 2, b'/', b'w', 0x12, 1, b'w', 0x22, 2, 0x08, 30];
        let mut hooks = vec![0x12, hook.len() as u8];
        hooks.extend(hook);
        let mut adjust = vec![0x2a, hooks.len() as u8];
        adjust.extend(hooks);
        let mut want = vec![0x0a, adjust.len() as u8];
        want.extend(adjust);
        assert_eq!(resp.encode_to_vec(), want);
    }

    #[test]
    fn state_change_round_trip() {
        let mut pod =
            PodSandbox { id: "p".into(), name: "web".into(), namespace: "default".into(), ..Default::default() };
        pod.annotations.insert("warden.io/profile".into(), "web".into());
        let ev = StateChangeEvent { event: Event::StartContainer as i32, pod: Some(pod), container: None };
        let back = StateChangeEvent::decode(ev.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, ev);
        assert_eq!(back.event(), Event::StartContainer);
    }
}
