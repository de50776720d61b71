//! The `warden` command line.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{CommandFactory as _, Parser, Subcommand};
use warden::escape::{escape, json_inert, Esc};

mod cli_control;
mod cli_profile;
use warden::{
    cgroup,
    enforcer::{self, Enforcer, Maps, Mode},
    events,
    kernel::probe::Probe,
    profile::{self, Profile},
};

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Per-container runtime enforcer: syscalls, files, execs and network confined by eBPF"
)]
struct Cli {
    /// bpffs folder holding warden's pinned maps and links.
    #[arg(long, global = true, env = "WARDEN_PIN_DIR", default_value = enforcer::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// The daemon's control socket (status, events, container look-ups, oci-hook). `warden run`
    /// takes its own from the config's `control_socket`.
    #[arg(long, global = true, env = "WARDEN_SOCKET", default_value = warden::config::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Log format (default: text, or the config's log_format for `run`).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the NRI plugin daemon for containerd.
    Run {
        #[arg(long, default_value = warden::config::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Release every confined container on exit (default: enforcement stays pinned).
        #[arg(long)]
        release_on_exit: bool,
    },
    /// Check a daemon config (like `nginx -t`): keys, rules, every profile it can reach, and
    /// which namespaces get what. Exit 1 on any problem.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Report which enforcement layers this kernel supports, and what is missing.
    Probe {
        #[arg(long)]
        json: bool,
    },
    /// Confine an existing cgroup (and every cgroup below it) to a profile.
    Confine {
        /// cgroup2 directory (absolute, or relative to the cgroup2 mount).
        #[arg(long)]
        cgroup: PathBuf,
        /// Profile file (JSON).
        #[arg(long)]
        profile: PathBuf,
        #[arg(long, value_enum, default_value = "enforce")]
        mode: Mode,
        /// The policy takes effect at the first exec in the cgroup (as for a container
        /// confined at createRuntime, while the runtime's init sets it up).
        #[arg(long)]
        arm_at_exec: bool,
    },
    /// Release a confined cgroup.
    Release {
        #[arg(long, conflicts_with = "cgroup_id", required_unless_present = "cgroup_id")]
        cgroup: Option<PathBuf>,
        /// For a cgroup whose directory is gone.
        #[arg(long)]
        cgroup_id: Option<u64>,
    },
    /// Load a new version of a profile and switch every cgroup using that profile name to it
    /// atomically.
    Replace {
        #[arg(long)]
        profile: PathBuf,
    },
    /// The daemon's view (version, kernel layers, confined containers with pod, profile, mode and
    /// denial counters); without a running daemon, the confined cgroups from the pins.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Remove all of warden's pinned state: every confined cgroup is released.
    Reset,
    /// Print events (denials, complain hits, learned items): from the daemon when it runs (it
    /// is the event ring's only reader), else from the ring itself.
    Events {
        /// Keep reading.
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        json: bool,
        /// Only events of this confined cgroup.
        #[arg(long)]
        cgroup: Option<PathBuf>,
        /// Only events of this pod (daemon only).
        #[arg(long)]
        pod: Option<String>,
        /// Only events of this namespace (daemon only).
        #[arg(long)]
        namespace: Option<String>,
        /// Only events of this container: name, or container id prefix (daemon only).
        #[arg(long)]
        container: Option<String>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<usize>,
        /// Exit after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// What enforce would have denied a cgroup in complain mode, grouped by kind: exact counts,
    /// and the distinct items the kernel recorded (deduplicated, bounded).
    Report {
        #[command(flatten)]
        target: cli_profile::CgroupTarget,
        #[arg(long)]
        json: bool,
    },
    /// Validate, show, import (OCI seccomp), compare, generate (learn mode) and merge profiles.
    Profile(cli_profile::ProfileCmd),
    /// OCI runtime hook for runtimes without NRI (CRI-O, Podman, runc): at createRuntime asks
    /// the daemon to confine the container (from its annotations) before its entrypoint runs,
    /// at poststop to release it. Reads the OCI state on stdin. Fails the start (exit 1) if
    /// the daemon refuses or cannot be reached.
    OciHook {
        /// Default: from the state's status (creating: createRuntime, stopped: poststop).
        #[arg(long, value_enum)]
        stage: Option<warden::oci_hook::Stage>,
        /// Let the container start UNCONFINED, with a warning, when the daemon refuses or
        /// cannot be reached (default: the start fails).
        #[arg(long)]
        fail_open: bool,
        /// Annotation prefix marking containers for warden (as the daemon's policy config).
        #[arg(long, default_value = "warden.io")]
        annotation_prefix: String,
        /// The hook warden's NRI plugin adds at CreateContainer (not for hooks.d): the start
        /// fails unless the daemon confines the container from what it stored then.
        #[arg(long, conflicts_with = "fail_open")]
        backstop: bool,
    },
    /// Print a shell completion script (used when building the packages).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print the man page, roff (used when building the packages).
    #[command(hide = true)]
    Manpage,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Parse FILE, compile every profile it reaches, resolve each rule, print what each
    /// namespace gets. The daemon runs the same check at start and on reload.
    Check {
        #[arg(default_value = warden::config::DEFAULT_CONFIG)]
        file: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Run { config, release_on_exit } = &cli.cmd {
        let r = warden::config::Config::load(config).and_then(|mut cfg| {
            init_logging(cli.log_format.as_deref().unwrap_or(&cfg.log_format));
            cfg.release_on_exit |= *release_on_exit;
            warden::daemon::run(cfg)
        });
        if let Err(e) = r {
            eprintln!("warden: error: {}", Esc(&format!("{e:#}")));
            std::process::exit(1);
        }
        return;
    }
    init_logging(cli.log_format.as_deref().unwrap_or("text"));
    if let Err(e) = run(cli) {
        eprintln!("warden: error: {}", Esc(&format!("{e:#}")));
        std::process::exit(1);
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal();
    // Log fields carry workload strings (comm, paths, names from annotations): every record is
    // made inert on its way out (issue 15, item 9), whatever field a log call adds.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(warden::escape::InertLogs::new(std::io::stderr, format == "json", ansi))
        .with_ansi(ansi);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn cgroup_path(p: &std::path::Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(cgroup::cgroup2_mount()?.join(p))
}

fn load_profile(path: &std::path::Path) -> Result<profile::CompiledProfile> {
    let p = Profile::from_file(path)?;
    profile::compile(&p).with_context(|| format!("compiling {}", path.display()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Run { .. } => unreachable!("handled in main"),
        Cmd::Profile(cmd) => cli_profile::run(cmd, &cli.pin_dir, &cli.socket)?,
        Cmd::OciHook { stage, fail_open, annotation_prefix, backstop } => {
            warden::oci_hook::run(&warden::oci_hook::Options {
                socket: cli.socket,
                stage,
                fail_open,
                annotation_prefix,
                backstop,
            })?
        }
        // Generated from the same clap definition as the parser, so they cannot drift.
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "warden", &mut std::io::stdout())
        }
        Cmd::Manpage => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?,
        Cmd::Config(ConfigCmd::Check { file }) => warden::config_check::run(&file)?,
        Cmd::Probe { json } => {
            let p = Probe::run();
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print!("{}", p.human());
            }
        }
        Cmd::Confine { cgroup, profile, mode, arm_at_exec } => {
            let compiled = load_profile(&profile)?;
            Probe::run().check_profile(&compiled)?;
            let path = cgroup_path(&cgroup)?;
            let mut e = Enforcer::open(&cli.pin_dir)?;
            let arming = warden::enforcer::Arming { floor: false, at_exec: arm_at_exec };
            let id = e.apply_policy(&path, &compiled, mode, arming)?;
            println!(
                "confined {} (cgroup id {id}) to profile {} version {} in {} mode",
                path.display(),
                compiled.name,
                compiled.version(),
                mode.as_str()
            );
        }
        Cmd::Release { cgroup, cgroup_id } => {
            let id = match (cgroup, cgroup_id) {
                (_, Some(id)) => id,
                (Some(p), None) => cgroup::cgroup_id(&cgroup_path(&p)?)?,
                _ => unreachable!("clap requires one"),
            };
            let mut e = Enforcer::open(&cli.pin_dir)?;
            if e.release(id)? {
                println!("released cgroup id {id}");
            } else {
                println!("cgroup id {id} was not confined");
            }
        }
        Cmd::Replace { profile } => {
            let compiled = load_profile(&profile)?;
            let mut e = Enforcer::open(&cli.pin_dir)?;
            let n = e.replace_profile(&compiled)?;
            println!("profile {} version {} now applies to {n} cgroup(s)", compiled.name, compiled.version());
        }
        Cmd::Status { json } => cli_control::status(&cli.socket, &cli.pin_dir, json)?,
        Cmd::Report { target, json } => {
            let (id, _) = target.resolve(&cli.socket)?;
            let maps = Maps::open(&cli.pin_dir)?;
            report(&maps, &cli.pin_dir, id, json)?;
        }
        Cmd::Reset => {
            if enforcer::reset(&cli.pin_dir)? {
                println!("removed {}", cli.pin_dir.display());
            } else {
                println!("nothing pinned at {}", cli.pin_dir.display());
            }
        }
        Cmd::Events { follow, json, cgroup, pod, namespace, container, count, timeout } => {
            let filter = match cgroup {
                Some(p) => Some(cgroup::cgroup_id(&cgroup_path(&p)?)?),
                None => None,
            };
            let args = cli_control::EventArgs {
                follow,
                json,
                filter: warden::control::EventFilter { follow, namespace, pod, container, cgroup_id: filter },
                count,
                timeout: timeout.map(Duration::from_secs_f64),
            };
            if cli_control::events_from_daemon(&cli.socket, &cli.pin_dir, &args)? {
                return Ok(());
            }
            cli_control::check_direct(&cli.socket, &args.filter)?;
            let mut seen = 0usize;
            events::read(&cli.pin_dir, follow, timeout.map(Duration::from_secs_f64), |ev| {
                if filter.is_some_and(|f| f != ev.root_cgroup) {
                    return true;
                }
                if json {
                    println!("{}", json_inert(&serde_json::to_string(&ev).unwrap_or_default()));
                } else {
                    println!(
                        "{} pid={} comm={} cgroup={} profile={} mode={}: {}",
                        ev.verdict,
                        ev.pid,
                        Esc(&ev.comm),
                        ev.cgroup_id,
                        Esc(&ev.profile),
                        ev.mode,
                        Esc(&ev.detail)
                    );
                }
                seen += 1;
                count.is_none_or(|c| seen < c)
            })?;
        }
    }
    Ok(())
}

/// `warden report`: counts are exact (per-CPU counters); the items are what the kernel's
/// deduplicating record holds (complain and learn modes only), with its truncation marker.
fn report(maps: &Maps, pin_dir: &std::path::Path, id: u64, json: bool) -> Result<()> {
    let learned = warden::learn::Learned::read(maps, pin_dir, id)?;
    let c = maps.counters_of(id);
    let mode = learned.mode.map(|m| m.as_str()).unwrap_or("?");
    let mut groups: std::collections::BTreeMap<&'static str, Vec<String>> = std::collections::BTreeMap::new();
    let recorded = matches!(learned.mode, Some(Mode::Complain | Mode::Learn));
    if recorded {
        let sc = learned.syscall_names();
        if !sc.is_empty() {
            groups.insert("syscall", sc);
        }
        for k in &learned.items {
            groups.entry(enforcer::kind_name(k.kind)).or_default().push(warden::learn::item_text(k));
        }
        // Paths the workload chose: escaped for the terminal and the JSON alike.
        for (path, u) in learned.files.iter().flatten() {
            if u.exec != 0 {
                groups.entry("exec").or_default().push(escape(path).into_owned());
            }
            if u.read != 0 || u.write != 0 {
                let how = warden::profile::files::use_letters(u.read != 0, u.write != 0, false);
                groups.entry("file").or_default().push(format!("{} ({how})", Esc(path)));
            }
        }
    }
    let counts: std::collections::BTreeMap<&'static str, u64> = (0..warden_common::kind::COUNT as u8)
        .map(|k| (enforcer::kind_name(k), c.violations[k as usize]))
        .filter(|(_, v)| *v > 0)
        .collect();
    if json {
        let v = serde_json::json!({
            "cgroup_id": id,
            "profile": learned.profile,
            "mode": mode,
            "would_deny_counts": counts,
            "items": groups,
            "items_recorded": recorded,
            "truncated": learned.info.truncated + learned.info.file_truncated,
            "events_sent": c.events_sent,
            "events_dropped": c.events_dropped,
        });
        println!("{}", json_inert(&serde_json::to_string_pretty(&v)?));
        return Ok(());
    }
    let what = if mode == "learn" { "learned (learn mode: nothing is denied)" } else { "enforce would have denied" };
    println!("cgroup {id}, profile {}, mode {mode}: {what}", Esc(&learned.profile));
    if mode != "learn" {
        let total: u64 = counts.values().sum();
        println!("attempts (exact counts): {total}{}", if total == 0 { " -- nothing" } else { "" });
        for (k, n) in &counts {
            println!("  {k}: {n}");
        }
    }
    if !recorded {
        println!(
            "items: not recorded in {mode} mode (only complain and learn record them); see the daemon's log for events"
        );
        return Ok(());
    }
    println!("distinct items:");
    if groups.is_empty() {
        println!("  none");
    }
    for (k, items) in &groups {
        println!("  {k} ({}):", items.len());
        for i in items {
            println!("    {i}");
        }
    }
    if learned.info.file_truncated > 0 {
        println!(
            "TRUNCATED: {} file or exec use(s) of a new path were not recorded (bound {} paths per container): the list is incomplete",
            learned.info.file_truncated,
            warden_common::LEARN_FILES_PER_CGROUP
        );
    }
    if learned.info.truncated > 0 {
        println!(
            "TRUNCATED: {} attempt(s) with a new item were not recorded (bound {} items per container): the list is incomplete",
            learned.info.truncated,
            warden_common::LEARN_ITEMS_PER_CGROUP
        );
    }
    if c.events_dropped > 0 {
        println!("({} event(s) were rate limited; counts and items above are not affected)", c.events_dropped);
    }
    if mode == "complain" {
        println!(
            "to allow all of it: warden profile generate --cgroup-id {id} --extends {} -o NEW.json",
            learned.profile
        );
    }
    Ok(())
}
