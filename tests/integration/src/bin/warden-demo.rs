//! `warden-demo`: warden's main job on an embedded default, end to end. Starts a private
//! containerd with NRI, starts `warden run` with the built-in profiles, runs a pod annotated
//! `warden.io/profile: client-one-address` whose container tries an allowed connect, a
//! forbidden one, a forbidden syscall; prints what happened and the events warden reported.
//! Everything it started is stopped and removed at exit. Run by scripts/demo.sh (as root).
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use warden_integration_tests::containerd::Containerd;
use warden_integration_tests::{static_attempt, WardenDaemon};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize()?;
    let profiles = repo.join("profiles");

    println!("== a listener on 127.0.0.1:8080 (the profile allows it) and one on 127.0.0.1:9090");
    let _allowed = TcpListener::bind("127.0.0.1:8080").context("127.0.0.1:8080 is in use")?;
    let _other = TcpListener::bind("127.0.0.1:9090").context("127.0.0.1:9090 is in use")?;

    println!("== starting a private containerd 1.7 with NRI");
    let c = Containerd::start().await?;
    println!("   containerd pid {:?}, state under {}", c.pid(), c.root.display());

    println!("== starting `warden run` (profiles from {})", profiles.display());
    let builtin: Vec<(String, String)> = std::fs::read_dir(&profiles)?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            (e.path().file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap())
        })
        .collect();
    let refs: Vec<(&str, String)> = builtin.iter().map(|(n, j)| (n.as_str(), j.clone())).collect();
    let mut w = WardenDaemon::configure(&c.nri_socket, &refs, "");
    w.start();
    println!("   warden pid {:?} registered with containerd", w.pid());

    println!("== pod `demo` in namespace `shop`, annotated warden.io/profile: client-one-address");
    let pod = c.run_pod("demo", "shop", &[("warden.io/profile", "client-one-address")]).await?;
    let helper = static_attempt();
    let attempts = [
        "connect 127.0.0.1 8080",
        "connect 127.0.0.1 9090",
        "udp-send 127.0.0.1 53",
        "bind-tcp 0.0.0.0 8081",
        "unshare-uts",
    ];
    let mut cmd = vec!["/warden-attempt", "seq"];
    cmd.extend(attempts);
    let id = c.create_container_with(&pod, "client", &cmd, &[], &[(helper.as_path(), "/warden-attempt")]).await?;
    c.start_container(&id).await.map_err(|s| anyhow::anyhow!("start: {}", s.message()))?;
    let mut code = None;
    for _ in 0..100 {
        let st = c.container_status(&id).await?;
        if st.finished_at != 0 {
            code = Some(st.exit_code);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("\n== what the container tried (its own log)");
    for line in c.container_log("demo", "client").lines() {
        let line = line.trim_end();
        if line.ends_with("=>") {
            println!("   {line} killed (SIGKILL)");
        } else {
            println!("   {line}");
        }
    }
    println!("   container exit code: {}", code.map(|c| c.to_string()).unwrap_or("still running".into()));

    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\n== what warden reported (daemon log)");
    for line in w.log_text().lines().filter(|l| l.contains("warden::event") || l.contains(" confined")) {
        println!("   {}", line.trim());
    }
    println!("\n== refusing a pod that names a profile that does not exist");
    let bad = c.run_pod("typo", "shop", &[("warden.io/profile", "client-one-adress")]).await?;
    let id = c
        .create_container_with(
            &bad,
            "client",
            &["/warden-attempt", "getpid"],
            &[],
            &[(helper.as_path(), "/warden-attempt")],
        )
        .await?;
    match c.start_container(&id).await {
        Err(s) => println!("   StartContainer failed: {}", s.message()),
        Ok(()) => println!("   UNEXPECTED: it started"),
    }
    println!("\n== cleaning up (containerd, warden, pods, cgroups, pinned state)");
    Ok(())
}
