//! Support for warden's end-to-end tests: real kernel, real cgroups, the real `warden` binary.
//!
//! Every resource is an RAII guard that cleans up on drop, including when a test panics:
//! - [`Warden`]: a private pin folder under /sys/fs/bpf (removed with `warden reset`),
//! - [`TestCgroup`]: cgroup2 directories (removed deepest first),
//! - [`Attempt`]: a `warden-attempt serve` process (killed by pid, only ours),
//! - [`EventFollower`]: a `warden events --follow` process.
//!
//! - [`containerd`]: a private containerd with NRI and a CRI client.
//!
//! - [`scenarios`]: the static `warden-attempt` in busybox containers, the learn-mode scenario.
//!
//! Tests call [`skip_unless`] first with what they [`Need`]: outside CI a missing prerequisite
//! skips the test with a reason; with `CI=true` it fails the test, because a kernel test that
//! did not run proves nothing.
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod containerd;
pub mod corpus;
pub mod gate;
pub mod profile_builder;
pub mod scenarios;

pub use gate::{skip_unless, Need, CONTAINERD, KERNEL};
pub use profile_builder::ProfileBuilder;

pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split_whitespace().next() != Some("cgroup2") {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// A binary of this workspace: beside this executable (a bin in target/debug) or one level up
/// (a test in target/debug/deps).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let here = exe.parent().expect("exe folder");
    let cands = [here.join(name), here.parent().map(|p| p.join(name)).unwrap_or_default()];
    cands.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| cands[1].clone())
}

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("warden-test-{}-{}-{tag}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

// ---- warden ----------------------------------------------------------------------------------

/// A warden instance with its own pin folder, so tests never touch a real installation or
/// each other.
pub struct Warden {
    pub pin_dir: PathBuf,
    /// Private scratch folder (profiles, configs, logs), removed on drop.
    pub tmp: PathBuf,
}

impl Warden {
    pub fn new() -> Warden {
        let name = unique("pins");
        let tmp = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&tmp).unwrap();
        Warden { pin_dir: Path::new("/sys/fs/bpf").join(name), tmp }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("warden"));
        // The control socket is private too: the CLI talks to this instance's daemon if one
        // runs (WardenDaemon), and reads the pins directly otherwise.
        c.args(args).env("WARDEN_PIN_DIR", &self.pin_dir).env("WARDEN_SOCKET", self.socket()).env("WARDEN_LOG", "warn");
        c
    }

    /// The control socket a `WardenDaemon` of this instance serves.
    pub fn socket(&self) -> PathBuf {
        self.tmp.join("warden.sock")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running warden")
    }

    /// Runs warden and returns stdout; panics with stderr on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "warden {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes `json` to a profile file and returns its path.
    pub fn profile_file(&self, json: &str) -> PathBuf {
        let v: Value = serde_json::from_str(json).expect("test profile is JSON");
        let p = self.tmp.join(format!("{}.json", v["name"].as_str().unwrap()));
        std::fs::write(&p, json).unwrap();
        p
    }

    pub fn confine(&self, cg: &Path, profile_json: &str, mode: &str) -> String {
        let f = self.profile_file(profile_json);
        self.ok(&["confine", "--cgroup", cg.to_str().unwrap(), "--profile", f.to_str().unwrap(), "--mode", mode])
    }

    pub fn release(&self, cg: &Path) -> String {
        self.ok(&["release", "--cgroup", cg.to_str().unwrap()])
    }

    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status --json")
    }

    /// The status entry of the confined cgroup `cg`.
    pub fn confined(&self, cg: &Path) -> Option<Value> {
        let id = cgroup_id(cg);
        self.status()["confined"].as_array().unwrap().iter().find(|c| c["cgroup_id"] == id).cloned()
    }

    pub fn follow_events(&self) -> EventFollower {
        self.follow_events_with(&[])
    }

    /// `warden events --follow --json` plus `extra` arguments (filters).
    pub fn follow_events_with(&self, extra: &[&str]) -> EventFollower {
        let mut args = vec!["events", "--follow", "--json"];
        args.extend_from_slice(extra);
        let mut child = self
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("warden events --follow");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        EventFollower { child, rx, seen: Vec::new() }
    }

    /// Whether a link of this instance is pinned (e.g. `sys_enter`).
    pub fn link_pinned(&self, name: &str) -> bool {
        self.pin_dir.join("links").join(name).exists()
    }

    pub fn cgroup_links(&self, cg: &Path) -> usize {
        std::fs::read_dir(self.pin_dir.join("cgroups").join(cgroup_id(cg).to_string())).map(|d| d.count()).unwrap_or(0)
    }
}

impl Default for Warden {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        let _ = self.run(&["reset"]);
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

pub struct EventFollower {
    child: Child,
    rx: mpsc::Receiver<Value>,
    /// Every event received so far.
    pub seen: Vec<Value>,
}

impl EventFollower {
    /// Waits for an event matching `pred` (also among those already received).
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return Some(v.clone());
        }
        let end = Instant::now() + timeout;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return Some(v);
                    }
                }
                Err(_) => break,
            }
        }
        None
    }

    /// Collects events until none arrives for `quiet`.
    /// Collects events for `total`, however many come (a source that never goes quiet, like a
    /// looping container, would keep [`EventFollower::drain`] waiting forever).
    pub fn drain_for(&mut self, total: Duration) -> usize {
        let end = Instant::now() + total;
        let mut n = 0;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        n
    }

    pub fn drain(&mut self, quiet: Duration) -> usize {
        let mut n = 0;
        while let Ok(v) = self.rx.recv_timeout(quiet) {
            self.seen.push(v);
            n += 1;
        }
        n
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EventFollower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- cgroups ---------------------------------------------------------------------------------

pub fn cgroup_id(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display())).ino()
}

/// A cgroup2 directory made for one test, and any sub-cgroups made through it.
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    pub fn new(tag: &str) -> TestCgroup {
        let path = cgroup2_mount().expect("cgroup2").join(unique(tag));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TestCgroup { path }
    }

    /// Makes a sub-cgroup (removed with this one).
    pub fn child(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    pub fn id(&self) -> u64 {
        cgroup_id(&self.path)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Deepest first. Our processes are killed by their own guards; give the kernel a moment
        // to empty the cgroup after the last exit.
        let mut dirs = vec![self.path.clone()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(rd) = std::fs::read_dir(&dirs[i]) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        dirs.push(e.path());
                    }
                }
            }
            i += 1;
        }
        for d in dirs.iter().rev() {
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

// ---- sysctls ----------------------------------------------------------------------------------

/// `net.ipv4.ping_group_range` opened to every group for as long as the guard lives (containerd
/// 2.x opens it in every pod; Debian keeps it closed, `1 0`), restored on drop, also after a
/// failed assertion. Tests that open it are serialised by the guard (a second one waits), so
/// that two of them cannot save each other's value and leave it open.
pub struct PingGroupRange {
    saved: String,
    _lock: std::sync::MutexGuard<'static, ()>,
}

static PING_RANGE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

impl PingGroupRange {
    pub fn open() -> PingGroupRange {
        let lock = PING_RANGE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let saved = std::fs::read_to_string(PING_GROUP_RANGE)
            .unwrap_or_else(|e| panic!("reading {PING_GROUP_RANGE}: {e}"))
            .trim()
            .to_string();
        std::fs::write(PING_GROUP_RANGE, "0 2147483647").unwrap_or_else(|e| panic!("opening {PING_GROUP_RANGE}: {e}"));
        PingGroupRange { saved, _lock: lock }
    }
}

impl Drop for PingGroupRange {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(PING_GROUP_RANGE, &self.saved) {
            eprintln!("restoring {PING_GROUP_RANGE} to `{}`: {e}", self.saved);
        }
    }
}

// ---- the attempt helper ----------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The helper answered (`ok`, `errno=EPERM`, ...).
    Reply(String),
    /// The helper died from this signal.
    Killed(i32),
    Exited(i32),
}

impl Outcome {
    pub fn ok() -> Outcome {
        Outcome::Reply("ok".into())
    }
    pub fn errno(name: &str) -> Outcome {
        Outcome::Reply(format!("errno={name}"))
    }
}

pub const SIGKILL: i32 = 9;

/// A `warden-attempt serve` process: send it attempts, read what happened.
pub struct Attempt {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Attempt {
    pub fn spawn() -> Attempt {
        let mut child = Command::new(bin("warden-attempt"))
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning warden-attempt");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Attempt { child, stdin, stdout }
    }

    /// Spawns the helper and moves it into cgroup `cg` before it does anything.
    pub fn spawn_in(cg: &Path) -> Attempt {
        let a = Attempt::spawn();
        a.enter(cg);
        a
    }

    /// Spawns the helper so that its exec happens inside cgroup `cg` (it joins the cgroup
    /// between fork and exec), as a container's entrypoint does.
    pub fn exec_in(cg: &Path) -> Attempt {
        use std::os::unix::{ffi::OsStringExt as _, process::CommandExt as _};
        let procs = std::ffi::CString::new(cg.join("cgroup.procs").into_os_string().into_vec()).unwrap();
        let mut cmd = Command::new(bin("warden-attempt"));
        cmd.arg("serve").stdin(Stdio::piped()).stdout(Stdio::piped());
        // SAFETY: only async-signal-safe calls between fork and exec (open, write, close).
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let r = libc::write(fd, b"0".as_ptr() as *const libc::c_void, 1);
                libc::close(fd);
                if r != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawning warden-attempt in the cgroup");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Attempt { child, stdin, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn enter(&self, cg: &Path) {
        std::fs::write(cg.join("cgroup.procs"), self.pid().to_string())
            .unwrap_or_else(|e| panic!("moving {} into {}: {e}", self.pid(), cg.display()));
    }

    /// Sends one attempt and returns what happened.
    pub fn attempt(&mut self, line: &str) -> Outcome {
        if let Some(stdin) = self.stdin.as_mut() {
            if writeln!(stdin, "{line}").and_then(|_| stdin.flush()).is_err() {
                return self.exit_outcome();
            }
        }
        let mut reply = String::new();
        match self.stdout.read_line(&mut reply) {
            Ok(n) if n > 0 => Outcome::Reply(reply.trim().to_string()),
            _ => self.exit_outcome(),
        }
    }

    fn exit_outcome(&mut self) -> Outcome {
        self.stdin = None;
        let st = self.child.wait().expect("wait");
        match st.signal() {
            Some(s) => Outcome::Killed(s),
            None => Outcome::Exited(st.code().unwrap_or(-1)),
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ---- profiles --------------------------------------------------------------------------------

/// A profile allowing every syscall of the host table except `deny`.
pub fn all_syscalls_except(name: &str, deny: &[&str]) -> String {
    ProfileBuilder::new(name).syscalls_all_except(deny).json()
}

/// Waits until `f` returns Some, or panics after `timeout` with `what`. Inside a TCG VM
/// (WARDEN_VM, set by tests/vm/run) the wait is ten times longer: everything there runs one to
/// two orders of magnitude slower, and these are waits for an outcome, not speed assertions.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let timeout = if std::env::var_os("WARDEN_VM").is_some() { timeout * 10 } else { timeout };
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- the daemon ------------------------------------------------------------------------------

/// A `warden run` process against a private containerd, with its own config, pin folder and
/// profile folder. Killed by pid and its pins removed on drop.
pub struct WardenDaemon {
    child: Option<Child>,
    /// false: `[nri] enabled = false` (control socket only, for the OCI hook).
    nri: bool,
    pub warden: Warden,
    pub config: PathBuf,
    pub profiles: PathBuf,
    pub log: PathBuf,
    /// Extra environment of `warden run` (test knobs such as WARDEN_TEST_START_DELAY_MS).
    pub env: Vec<(String, String)>,
}

impl WardenDaemon {
    /// Writes the config (`extra` is appended TOML) and the profiles (name, JSON).
    pub fn configure(nri_socket: &Path, profiles: &[(&str, String)], extra: &str) -> WardenDaemon {
        Self::configure_with(Some(nri_socket), profiles, extra)
    }

    /// A daemon without NRI: containers reach it only through the control socket (OCI hook).
    pub fn configure_without_nri(profiles: &[(&str, String)], extra: &str) -> WardenDaemon {
        Self::configure_with(None, profiles, extra)
    }

    fn configure_with(nri_socket: Option<&Path>, profiles: &[(&str, String)], extra: &str) -> WardenDaemon {
        let warden = Warden::new();
        let dir = warden.tmp.clone();
        let pdir = dir.join("profiles");
        std::fs::create_dir_all(&pdir).unwrap();
        for (name, json) in profiles {
            std::fs::write(pdir.join(format!("{name}.json")), json).unwrap();
        }
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "pin_dir = {:?}\nprofile_dirs = [{:?}]\ncontrol_socket = {:?}\n{extra}\n[nri]\n{}",
                warden.pin_dir.display().to_string(),
                pdir.display().to_string(),
                warden.socket().display().to_string(),
                match nri_socket {
                    Some(s) => format!("socket_path = {:?}\nplugin_index = \"10\"\n", s.display().to_string()),
                    None => "enabled = false\n".to_string(),
                }
            ),
        )
        .unwrap();
        let log = dir.join("warden.log");
        WardenDaemon { child: None, nri: nri_socket.is_some(), warden, config, profiles: pdir, log, env: Vec::new() }
    }

    /// Starts `warden run` and waits until it is registered with the runtime (without NRI:
    /// until its control socket listens).
    pub fn start(&mut self) {
        self.start_wrapped(&[]);
    }

    /// [`start`](Self::start) with `warden run` as the command of `wrapper` (e.g. `unshare
    /// --pid --fork --kill-child`: a daemon in its own pid namespace, as in the DaemonSet).
    /// [`pid`](Self::pid) is then the wrapper's; it must end the daemon when it is killed.
    pub fn start_wrapped(&mut self, wrapper: &[&str]) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin("warden"));
                c
            }
            None => Command::new(bin("warden")),
        };
        let child = cmd
            .args(["run", "--config", self.config.to_str().unwrap()])
            .env("WARDEN_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning warden run");
        self.child = Some(child);
        let before = self.registrations();
        let listening = self.log_text().matches("control socket listening").count();
        // In a TCG VM (tests/vm/run sets WARDEN_VM) loading and verifying the programs takes
        // tens of seconds.
        let wait = if std::env::var_os("WARDEN_VM").is_some() { 120 } else { 15 };
        if !self.nri {
            eventually(Duration::from_secs(wait), "warden's control socket", || {
                (self.log_text().matches("control socket listening").count() > listening).then_some(())
            });
            return;
        }
        // A daemon that exited, or one still not registered at the deadline, fails the test
        // with its own log: in a VM that log exists nowhere else.
        let end = std::time::Instant::now() + Duration::from_secs(wait);
        while self.registrations() <= before {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("warden run exited ({st}) before registering with containerd; its log:\n{}", self.log_text());
            }
            if std::time::Instant::now() > end {
                panic!(
                    "timed out after {wait} s waiting for warden to register with containerd; its log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn registrations(&self) -> usize {
        self.log_text().matches("registered with the runtime").count()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// Cgroup ids of the confined (root) entries in the pinned state.
    pub fn confined_ids(&self) -> Vec<u64> {
        if !self.warden.pin_dir.join("maps").exists() {
            return Vec::new();
        }
        self.warden.status()["confined"].as_array().unwrap().iter().map(|c| c["cgroup_id"].as_u64().unwrap()).collect()
    }
}

impl Drop for WardenDaemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // A failing test shows what the daemon saw (the end of its log).
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- warden daemon log (last {} lines) ---", tail.len());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        let out = self.warden.run(&["reset"]);
        if self.warden.pin_dir.exists() {
            eprintln!(
                "warden reset left {} behind: {}{}\n--- daemon log ---\n{}",
                self.warden.pin_dir.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_text()
            );
        }
    }
}

/// The static build of `warden-attempt` (scripts/test.sh builds it), for containers.
pub fn static_attempt() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let host = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let rel = Path::new(&host).join("release").join("warden-attempt");
    // The target folder is an ancestor of this executable (target/debug[/deps]/exe).
    let p = exe
        .ancestors()
        .map(|a| a.join(&rel))
        .find(|p| p.is_file())
        .unwrap_or_else(|| exe.ancestors().nth(3).unwrap().join(&rel));
    if !p.exists() {
        let why = format!("{} missing (scripts/test.sh builds it with crt-static)", p.display());
        if in_ci() {
            panic!("{why}");
        }
        eprintln!("{why}");
    }
    p
}
