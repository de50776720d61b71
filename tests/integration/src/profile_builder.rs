//! [`ProfileBuilder`]: the profile JSON the tests hand to warden, built by what it allows.
use serde_json::{json, Map, Value};

/// A profile under construction. Sections appear only when a method sets them (an absent
/// section is not restricted); `no_connect`/`no_bind` write an empty list (nothing allowed).
#[derive(Clone, Debug)]
pub struct ProfileBuilder(Map<String, Value>);

impl ProfileBuilder {
    pub fn new(name: &str) -> ProfileBuilder {
        let mut m = Map::new();
        m.insert("name".into(), name.into());
        ProfileBuilder(m)
    }

    /// `syscalls`: every syscall this host knows but `deny`, `default: kill`.
    pub fn syscalls_all_except(mut self, deny: &[&str]) -> ProfileBuilder {
        let allow: Vec<&str> = syscalls::Sysno::iter().map(|s| s.name()).filter(|n| !deny.contains(n)).collect();
        self.0.insert("syscalls".into(), json!({ "default": "kill", "allow": allow }));
        self
    }

    /// `syscalls: { allow }` (the default action left to the format's default).
    pub fn syscalls_allow(mut self, allow: &[&str]) -> ProfileBuilder {
        self.0.insert("syscalls".into(), json!({ "allow": allow }));
        self
    }

    fn network(&mut self) -> &mut Map<String, Value> {
        self.0.entry("network").or_insert_with(|| json!({})).as_object_mut().expect("network is an object")
    }

    fn list(&mut self, key: &str) -> &mut Vec<Value> {
        self.network().entry(key).or_insert_with(|| json!([])).as_array_mut().expect("a list")
    }

    /// A `network.connect` rule: `cidr`, these ports, `proto` (`tcp`, `udp`).
    pub fn connect(mut self, cidr: &str, ports: &[u16], proto: &str) -> ProfileBuilder {
        self.list("connect").push(json!({ "cidr": cidr, "ports": ports, "protocol": proto }));
        self
    }

    /// `network.connect: []`: no destination allowed.
    pub fn no_connect(mut self) -> ProfileBuilder {
        self.list("connect");
        self
    }

    /// A `network.bind` rule for the ports `lo-hi`.
    pub fn bind_range(mut self, lo: u16, hi: u16, proto: &str) -> ProfileBuilder {
        self.list("bind").push(json!({ "ports": [format!("{lo}-{hi}")], "protocol": proto }));
        self
    }

    /// `network.bind: []`: no port may be bound.
    pub fn no_bind(mut self) -> ProfileBuilder {
        self.list("bind");
        self
    }

    /// `network.families`.
    pub fn families(mut self, families: &[&str]) -> ProfileBuilder {
        self.network().insert("families".into(), json!(families));
        self
    }

    /// `network.protocols`: inet protocols other than TCP and UDP (`icmp`, `sctp`, ...).
    pub fn protocols(mut self, protocols: &[&str]) -> ProfileBuilder {
        self.network().insert("protocols".into(), json!(protocols));
        self
    }

    pub fn value(self) -> Value {
        Value::Object(self.0)
    }

    pub fn json(self) -> String {
        self.value().to_string()
    }
}
