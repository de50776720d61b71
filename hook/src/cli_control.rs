//! `warden status` and `warden events`: through the daemon's control socket when a daemon is
//! running; otherwise from the pins (status) or the ring buffer itself (events).
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;
use warden::control::{self, Client, EventFilter, Request};
use warden::enforcer::{self, Maps};
use warden::escape::{escape, json_inert, Esc};

/// The daemon at `socket`, if one is running and serves the pins at `pin_dir` (a client asking
/// about other pins, e.g. a test's private folder, reads those pins itself).
fn daemon_for(socket: &Path, pin_dir: &Path) -> Result<Option<(Client, Value)>> {
    let Some(mut c) = Client::connect(socket)? else { return Ok(None) };
    let v = c.request(&Request::Status, Duration::from_secs(30))?;
    if v["daemon"]["pin_dir"].as_str().map(Path::new) != Some(pin_dir) {
        eprintln!(
            "warden: the daemon at {} serves pin folder {}, not {}: reading the pins",
            socket.display(),
            v["daemon"]["pin_dir"].as_str().unwrap_or("?"),
            pin_dir.display()
        );
        return Ok(None);
    }
    Ok(Some((c, v)))
}

pub fn status(socket: &Path, pin_dir: &Path, json: bool) -> Result<()> {
    if let Some((_, v)) = daemon_for(socket, pin_dir)? {
        if json {
            println!("{}", json_inert(&serde_json::to_string_pretty(&v)?));
        } else {
            print_daemon_status(&v);
        }
        return Ok(());
    }
    eprintln!(
        "warden: no daemon running (no control socket at {}): reading the pinned state in {}",
        socket.display(),
        pin_dir.display()
    );
    let maps = Maps::open(pin_dir)?;
    if json {
        println!("{}", json_inert(&serde_json::to_string_pretty(&control::pin_status(&maps, pin_dir))?));
        return Ok(());
    }
    let list = enforcer::list(&maps);
    let sys_enter = pin_dir.join("links/sys_enter").exists();
    println!("sys_enter hook: {}", if sys_enter { "attached" } else { "not attached (no syscall policy)" });
    println!(
        "{:<12} {:<20} {:<13} {:<9} {:>5} {:>10} {:>8}  violations",
        "CGROUP-ID", "PROFILE", "VERSION", "MODE", "SUBS", "EVENTS", "DROPPED"
    );
    for c in &list {
        let v: Vec<String> = c.violations.iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!(
            "{:<12} {:<20} {:<13} {:<9} {:>5} {:>10} {:>8}  {}",
            c.cgroup_id,
            c.profile,
            c.version,
            c.mode,
            c.descendants,
            c.events_sent,
            c.events_dropped,
            v.join(" ")
        );
    }
    Ok(())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A string field for the terminal: names come from annotations, comm and paths from the
/// workload (see crate::escape).
fn e(v: &Value) -> Esc<'_> {
    Esc(s(v))
}

fn print_daemon_status(v: &Value) {
    let d = &v["daemon"];
    println!(
        "warden daemon {} (pid {}), pins {}, NRI {}, {} event subscriber(s)",
        s(&d["version"]),
        d["pid"],
        s(&d["pin_dir"]),
        if d["nri"] == Value::Bool(true) { "on" } else { "off (OCI hook only)" },
        d["subscribers"]
    );
    println!("kernel {}:", s(&v["kernel"]["kernel"]));
    for l in v["kernel"]["layers"].as_array().into_iter().flatten() {
        if l["available"] == Value::Bool(true) {
            println!("  {:<10} available", s(&l["name"]));
        } else {
            let missing: Vec<&str> = l["missing"].as_array().into_iter().flatten().map(s).collect();
            println!("  {:<10} UNAVAILABLE: {}", s(&l["name"]), missing.join("; "));
        }
    }
    println!(
        "sys_enter hook: {}",
        if v["sys_enter_attached"] == Value::Bool(true) { "attached" } else { "not attached (no syscall policy)" }
    );
    // Node-wide deny lists (only a daemon knows them).
    if let Some(lists) = v["deny_lists"].as_array() {
        if lists.is_empty() {
            println!("deny lists: none");
        }
        for l in lists {
            let version = if l["version"].is_string() { s(&l["version"]).to_string() } else { "none in force".into() };
            print!("deny list {}: {} entries, version {version}, {} hits", e(&l["name"]), l["entries"], l["hits"]);
            if l["error"].is_string() {
                print!("; current file REFUSED: {}", e(&l["error"]));
            }
            println!();
        }
    }
    println!(
        "{:<14} {:<30} {:<16} {:<20} {:<13} {:<9} {:>10} {:<8} {:<12}  denials",
        "CONTAINER-ID", "NAMESPACE/POD", "CONTAINER", "PROFILE", "VERSION", "MODE", "CGROUP-ID", "VIA", "RULE"
    );
    let containers = v["containers"].as_array().cloned().unwrap_or_default();
    for c in &containers {
        let id = escape(s(&c["id"]));
        let pod =
            if s(&c["pod"]).is_empty() { "-".to_string() } else { format!("{}/{}", e(&c["namespace"]), e(&c["pod"])) };
        let viol: Vec<String> =
            c["violations"].as_object().into_iter().flatten().map(|(k, n)| format!("{k}={n}")).collect();
        println!(
            "{:<14} {:<30} {:<16} {:<20} {:<13} {:<9} {:>10} {:<8} {:<12}  {}",
            id.chars().take(13).collect::<String>(),
            pod,
            e(&c["container"]).to_string(),
            e(&c["profile"]).to_string(),
            s(&c["version"]),
            s(&c["mode"]),
            c["cgroup_id"],
            s(&c["via"]),
            if s(&c["rule"]).is_empty() { "-".to_string() } else { e(&c["rule"]).to_string() },
            if viol.is_empty() { "-".to_string() } else { viol.join(" ") }
        );
    }
    // Pinned entries the daemon did not confine (`warden confine` by hand, or a previous run).
    let known: Vec<&Value> = containers.iter().map(|c| &c["cgroup_id"]).collect();
    let others: Vec<String> = v["confined"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| !known.contains(&&c["cgroup_id"]))
        .map(|c| format!("{} ({} {})", c["cgroup_id"], e(&c["profile"]), e(&c["mode"])))
        .collect();
    if !others.is_empty() {
        println!("pinned, not confined by this daemon: {}", others.join(", "));
    }
}

pub struct EventArgs {
    pub follow: bool,
    pub json: bool,
    pub filter: EventFilter,
    pub count: Option<usize>,
    pub timeout: Option<Duration>,
}

fn is_timeout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
    })
}

fn print_event(v: &Value, json: bool) {
    if json {
        println!("{}", json_inert(&v.to_string()));
        return;
    }
    let who = if s(&v["pod"]).is_empty() && s(&v["container"]).is_empty() {
        String::new()
    } else {
        format!(" {}/{}/{}", e(&v["namespace"]), e(&v["pod"]), e(&v["container"]))
    };
    println!(
        "{}{who} pid={} comm={} cgroup={} profile={} mode={}: {}",
        e(&v["verdict"]),
        v["pid"],
        e(&v["comm"]),
        v["cgroup_id"],
        e(&v["profile"]),
        e(&v["mode"]),
        e(&v["detail"])
    );
}

/// Through the daemon (the ring's only consumer) when one is running; `Ok(false)` when none is.
pub fn events_from_daemon(socket: &Path, pin_dir: &Path, a: &EventArgs) -> Result<bool> {
    let Some((_, _)) = daemon_for(socket, pin_dir)? else { return Ok(false) };
    let Some(mut c) = Client::connect(socket)? else { return Ok(false) };
    let mut filter = a.filter.clone();
    filter.follow = a.follow;
    let first = c.request(&Request::Events(filter), Duration::from_secs(30))?;
    if !a.follow {
        eprintln!("warden: {}", s(&first["note"]));
        return Ok(true);
    }
    let start = Instant::now();
    let mut seen = 0usize;
    loop {
        // Short reads so --timeout is honoured while no event comes.
        let left = a.timeout.map(|t| t.saturating_sub(start.elapsed()));
        if left.is_some_and(|l| l.is_zero()) {
            return Ok(true);
        }
        c.set_read_timeout(Some(
            left.unwrap_or(Duration::from_secs(3600)).clamp(Duration::from_millis(1), Duration::from_millis(500)),
        ))?;
        let v = match c.next_line() {
            Ok(Some(v)) => v,
            Ok(None) => bail!("the warden daemon closed the event stream (daemon stopped?)"),
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(e),
        };
        if let Some(n) = v["dropped"].as_u64() {
            eprintln!(
                "warden: {n} event(s) lost: this client read too slowly (the daemon never waits for a subscriber)"
            );
            continue;
        }
        if v["event"].is_object() {
            print_event(&v["event"], a.json);
            seen += 1;
            if a.count.is_some_and(|n| seen >= n) {
                return Ok(true);
            }
        }
    }
}

/// Without a daemon: pod names are unknown, and the ring is read directly.
pub fn check_direct(socket: &Path, f: &EventFilter) -> Result<()> {
    if f.pod.is_some() || f.namespace.is_some() || f.container.is_some() {
        bail!(
            "--pod, --namespace and --container need the warden daemon (it knows which container a cgroup is), and none is running (no control socket at {})",
            socket.display()
        );
    }
    eprintln!(
        "warden: no daemon running (no control socket at {}): reading the event ring directly (one reader at a time: a daemon started now would miss what this reads)",
        socket.display()
    );
    Ok(())
}
