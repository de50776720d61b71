//! The learn corpus (issue 23): learned profiles that hold on real software. Each program of the corpus (Debian's
//! own binaries: python3, curl, wget, openssl, git, busybox, sqlite3, perl) runs a scripted
//! workload that nobody here wrote the behaviour of (kernel-chosen ports, threads, temp names,
//! child processes). For each: learn over `LEARN_RUNS` runs (each in a fresh cgroup, folded into
//! the record with `profile generate --previous`), then enforce the learned profile over
//! `ENFORCED_RUNS` fresh runs, every one of which must pass; then a scripted new behaviour (a
//! new syscall, a new destination), seen to work unconfined, must be refused under the profile.
//! Natively this proves the syscall and network sections; where BPF-LSM works (the VMs, where
//! lsm.rs runs this corpus too) the generated `files` section is enforced as well.
//!
//! The table it prints is the README's learn-mode table. Used by tests/learn_corpus.rs
//! (natively) and tests/lsm.rs (inside the VMs, files and execs included).
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::*;
use serde_json::Value;
use warden::enforcer::{Enforcer, Mode};

fn compile(json: &str) -> warden::profile::CompiledProfile {
    warden::profile::compile(&warden::profile::Profile::from_json(json).expect("profile JSON")).expect("compiling")
}

const LEARN_RUNS: usize = 3;
const DEBIAN_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// The programs the corpus runs (scripts/setup.sh installs their packages).
pub const TOOLS: &[&str] = &["python3", "curl", "wget", "openssl", "git", "busybox", "sqlite3", "perl"];

/// Which of [`TOOLS`] is missing from Debian's folders, if any.
pub fn missing_tool() -> Option<&'static str> {
    TOOLS.iter().copied().find(|t| !std::env::split_paths(DEBIAN_PATH).any(|d| d.join(t).is_file()))
}

/// With files and execs (BPF-LSM): behaviours new to every program of the corpus, beside its
/// own (a shell redirection writes a file no run wrote; a program no run executed).
const NOVEL_WITH_FILES: &[(&str, &str)] = &[
    ("a new file (written outside every path the runs used)", r#"echo x > /srv/warden-corpus-novel"#),
    ("a new exec (a program no run executed)", r#"/usr/bin/env true"#),
];
const ENFORCED_RUNS: usize = 10;
const LEARNING: &str = r#"{"name":"learning"}"#;

/// One program of the corpus: its workload (a `sh` script) and a new behaviour (a `sh`
/// script that works unconfined and that the learned profile must refuse).
struct Program {
    name: &'static str,
    /// What it exercises, for the table.
    covers: &'static str,
    workload: &'static str,
    /// The new behaviour and what is new about it.
    novel: (&'static str, &'static str),
    /// The line the workload prints when it did its job.
    done: &'static str,
}

/// Scripts see: FIXT (fixtures: web root, TLS key and certificate), PORT (an HTTP server of
/// the test's, outside the cgroup), OTHER (another HTTP server of the test's on 127.0.0.2, never
/// used while learning), BBPORT (a port busybox httpd serves on: a configured port, like a real service).
const CORPUS: &[Program] = &[
    Program {
        name: "python3",
        covers:
            "http.server on a kernel-chosen port in a thread, urllib, sqlite3 in mkdtemp, hashlib, subprocess /bin/ls",
        workload: r#"python3 - <<'EOF'
import hashlib, http.server, os, shutil, sqlite3, subprocess, tempfile, threading, urllib.request
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: H(*a, directory=os.environ["FIXT"] + "/www"))
threading.Thread(target=srv.serve_forever, daemon=True).start()
body = urllib.request.urlopen("http://127.0.0.1:%d/index.html" % srv.server_address[1]).read()
d = tempfile.mkdtemp()
db = sqlite3.connect(os.path.join(d, "t.db"))
db.execute("create table t(h)")
db.execute("insert into t values (?)", (hashlib.sha256(body).hexdigest(),))
db.commit(); db.close()
subprocess.run(["/bin/ls", d], check=True, stdout=subprocess.DEVNULL)
shutil.rmtree(d)
srv.shutdown()
print("python3 ok")
EOF"#,
        novel: ("a new syscall (setsid)", r#"python3 -c 'import os; os.setsid(); print("setsid ok")'"#),
        done: "python3 ok",
    },
    Program {
        name: "curl",
        covers: "HTTP client against a local server (GET, HEAD, output to a temp file)",
        workload: r#"T=$(mktemp -d) && curl -sSf -o "$T/page" "http://127.0.0.1:$PORT/index.html" && curl -sSfI "http://127.0.0.1:$PORT/" >/dev/null && sha256sum "$T/page" >/dev/null && rm -rf "$T" && echo "curl ok""#,
        novel: ("a new destination (another address)", r#"curl -sSf -o /dev/null "http://127.0.0.2:$OTHER/""#),
        done: "curl ok",
    },
    Program {
        name: "wget",
        covers: "GNU wget against a local server, into a temp folder",
        workload: r#"T=$(mktemp -d) && wget -q -P "$T" "http://127.0.0.1:$PORT/index.html" && test -s "$T/index.html" && rm -rf "$T" && echo "wget ok""#,
        novel: ("a new destination (another address)", r#"wget -q -O /dev/null -t 1 "http://127.0.0.2:$OTHER/""#),
        done: "wget ok",
    },
    Program {
        name: "openssl",
        covers: "s_server on a kernel-chosen port (dual-stack) and s_client over TLS",
        workload: r#"T=$(mktemp -d)
openssl s_server -accept 0 -naccept 1 -www -cert "$FIXT/cert.pem" -key "$FIXT/key.pem" >"$T/srv" 2>&1 &
for i in $(seq 100); do grep -q '^ACCEPT' "$T/srv" && break; sleep 0.05; done
port=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' "$T/srv")
printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client -connect "127.0.0.1:$port" -quiet -verify_quiet 2>/dev/null | grep -q '^HTTP/1.0 200' && wait && rm -rf "$T" && echo "openssl ok""#,
        novel: (
            "a new destination (another address)",
            r#"openssl s_client -connect "127.0.0.2:$OTHER" </dev/null 2>&1 | grep -q CONNECTED"#,
        ),
        done: "openssl ok",
    },
    Program {
        name: "git",
        covers: "init, commit, clone and log of a local repository in a temp folder",
        workload: r#"T=$(mktemp -d) && export HOME="$T" GIT_CONFIG_NOSYSTEM=1 && cd "$T" && git init -q src && cd src && git config user.email t@example.org && git config user.name t && echo hi > f && git add f && git commit -qm one && cd .. && git clone -q src dst && git -C dst log --oneline | grep -q one && cd / && rm -rf "$T" && echo "git ok""#,
        novel: (
            "http to another address (a new program: git-remote-http)",
            r#"GIT_CONFIG_NOSYSTEM=1 git ls-remote "http://127.0.0.2:$OTHER/x" 2>&1 | grep -q 'not valid'"#,
        ),
        done: "git ok",
    },
    Program {
        name: "busybox",
        covers: "busybox sh script: httpd on a configured port, busybox wget, a temp web root",
        workload: r#"busybox sh -c 'T=$(busybox mktemp -d) && echo hello > "$T/index.html" && { busybox httpd -f -p "127.0.0.1:$BBPORT" -h "$T" & pid=$!; } && ok= && for i in $(busybox seq 100); do busybox wget -q -O - "http://127.0.0.1:$BBPORT/index.html" 2>/dev/null | busybox grep -q hello && ok=1 && break; busybox usleep 50000; done; busybox kill $pid; wait; busybox rm -rf "$T"; test -n "$ok" && echo "busybox ok"'"#,
        novel: ("a new destination (nc, another address)", r#"echo x | busybox nc 127.0.0.2 "$OTHER""#),
        done: "busybox ok",
    },
    Program {
        name: "sqlite3",
        covers: "sqlite3 CLI: create, insert, index, query, dump in a temp folder",
        workload: r#"T=$(mktemp -d) && sqlite3 "$T/db" "create table t(a,b); insert into t values (1,'x'),(2,'y'); create index i on t(a);" && test "$(sqlite3 "$T/db" 'select count(*) from t')" = 2 && sqlite3 "$T/db" .dump > "$T/dump.sql" && rm -rf "$T" && echo "sqlite3 ok""#,
        novel: ("a new syscall (a shell spawned by .system: clone3)", r#"sqlite3 :memory: '.system true'"#),
        done: "sqlite3 ok",
    },
    Program {
        name: "perl",
        covers: "IO::Socket listener on a kernel-chosen port, a forked client, accept",
        workload: r#"perl -MIO::Socket::INET -e '
my $l = IO::Socket::INET->new(Listen => 5, LocalAddr => "127.0.0.1", LocalPort => 0, Proto => "tcp") or die "listen: $!";
my $port = $l->sockport;
my $pid = fork() // die "fork: $!";
if ($pid == 0) { my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Proto => "tcp") or die "connect: $!"; print $c "ping\n"; close $c; exit 0 }
my $s = $l->accept or die "accept: $!"; my $line = <$s>; waitpid($pid, 0);
die "got $line" unless $line eq "ping\n" && $? == 0; print "perl ok\n";'"#,
        novel: (
            "a new destination (another address)",
            r#"perl -MIO::Socket::INET -e 'IO::Socket::INET->new(PeerAddr => "127.0.0.2", PeerPort => $ENV{OTHER}, Proto => "tcp") or die "connect: $!"'"#,
        ),
        done: "perl ok",
    },
];

/// A minimal HTTP server of the test's (outside every cgroup): answers each connection with
/// a small page, until the test ends.
fn serve_http(addr: &str) -> u16 {
    let l = TcpListener::bind((addr, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let body = "<html>hello</html>\n";
            let _ =
                write!(s, "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    port
}

struct Env {
    fixt: PathBuf,
    vars: Vec<(&'static str, String)>,
}

fn fixtures() -> Env {
    let fixt = std::env::temp_dir().join(format!("warden-corpus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fixt);
    std::fs::create_dir_all(fixt.join("www")).unwrap();
    std::fs::write(fixt.join("www/index.html"), "<html>hello</html>\n").unwrap();
    let st = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(fixt.join("key.pem"))
        .arg("-out")
        .arg(fixt.join("cert.pem"))
        .output()
        .expect("openssl req");
    assert!(st.status.success(), "making the TLS fixture: {}", String::from_utf8_lossy(&st.stderr));
    let bb = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let vars = vec![
        ("FIXT", fixt.display().to_string()),
        ("PORT", serve_http("127.0.0.1").to_string()),
        // On another loopback address: a learned profile may follow the kernel's port choices
        // on the workload's own loopback address (openssl, perl), never to another address.
        ("OTHER", serve_http("127.0.0.2").to_string()),
        ("BBPORT", bb.to_string()),
    ];
    Env { fixt, vars }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.fixt);
    }
}

/// Runs `script` with `sh` as a process that enters cgroup `cg` before it execs, as a
/// container's entrypoint starts inside its cgroup. `timeout` (outside the cgroup) ends a run
/// that hangs.
fn run_in(env: &Env, cg: &Path, script: &str) -> Output {
    Command::new("timeout")
        .args(["-s", "KILL", "120", "sh", "-c"])
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec sh -c "$1""#)
        .arg(cg)
        .arg(script)
        .envs(env.vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env("TMPDIR", "/tmp")
        // Debian's own binaries (this machine has a second git under /usr/local, and pyenv).
        .env("PATH", DEBIAN_PATH)
        .current_dir("/")
        .output()
        .expect("running sh")
}

fn show(o: &Output) -> String {
    format!(
        "status {:?} (signal {:?})\nstdout:\n{}stderr:\n{}",
        o.status.code(),
        o.status.signal(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One row of the table.
struct Row {
    name: &'static str,
    syscalls: usize,
    connect: usize,
    bind: usize,
    files: Option<usize>,
    passed: usize,
    refused: bool,
    stability: String,
    generalised: Vec<String>,
}

fn learn_and_enforce(w: &Warden, enf: &mut Enforcer, env: &Env, p: &Program, files: bool) -> Row {
    let out_file = w.tmp.join(format!("corpus-{}.json", p.name));
    let name = format!("corpus-{}", p.name);
    for run in 0..LEARN_RUNS {
        let cg = TestCgroup::new(&format!("learn-{}", p.name));
        let id = enf.apply(&cg.path, &compile(LEARNING), Mode::Learn).expect("confining in learn mode");
        let o = run_in(env, &cg.path, p.workload);
        assert!(o.status.success(), "{}: learning run {run} failed: {}", p.name, show(&o));
        let mut args = vec!["profile", "generate", "--cgroup", cg.path.to_str().unwrap(), "--name", &name, "-o"];
        let out = out_file.to_str().unwrap().to_string();
        args.push(&out);
        if run > 0 {
            args.extend(["--previous", out.as_str()]);
        }
        let g = w.run(&args);
        assert!(g.status.success(), "{}: generate: {}", p.name, String::from_utf8_lossy(&g.stderr));
        enf.release(id).unwrap();
    }
    let json = std::fs::read_to_string(&out_file).unwrap();
    let v: Value = serde_json::from_str(&json).unwrap();
    let desc = v["description"].as_str().unwrap_or("").to_string();
    let stability = desc.lines().find(|l| l.starts_with("Learn runs:")).unwrap_or("").to_string();
    assert!(stability.starts_with(&format!("Learn runs: {LEARN_RUNS};")), "{}: {desc}", p.name);
    let generalised: Vec<String> = desc
        .lines()
        .filter(|l| l.contains("kernel's choice") || l.contains("generated name") || l.contains("/proc/<pid>"))
        .map(str::to_string)
        .collect();

    let learned = compile(&json);
    let mut passed = 0;
    for run in 0..ENFORCED_RUNS {
        let cg = TestCgroup::new(&format!("enforce-{}", p.name));
        let id = enf.apply(&cg.path, &learned, Mode::Enforce).expect("enforcing the learned profile");
        let o = run_in(env, &cg.path, p.workload);
        let ok = o.status.success() && String::from_utf8_lossy(&o.stdout).contains(p.done);
        assert!(
            ok,
            "{}: enforced run {run} failed under the learned profile:\n{}\nprofile:\n{json}\nevents:\n{}",
            p.name,
            show(&o),
            String::from_utf8_lossy(&w.run(&["events", "--json"]).stdout)
        );
        passed += 1;
        enf.release(id).unwrap();
    }

    let mut novel = vec![p.novel];
    if files {
        novel.extend(NOVEL_WITH_FILES.iter().copied());
    }
    for (what, script) in &novel {
        // The new behaviour works unconfined (so a refusal is the profile's, not the machine's)...
        let free = TestCgroup::new(&format!("free-{}", p.name));
        let o = run_in(env, &free.path, script);
        assert!(o.status.success(), "{}: the new behaviour `{what}` must work unconfined: {}", p.name, show(&o));
        // ...and is refused under the learned profile.
        let cg = TestCgroup::new(&format!("novel-{}", p.name));
        let id = enf.apply(&cg.path, &learned, Mode::Enforce).unwrap();
        let o = run_in(env, &cg.path, script);
        assert!(!o.status.success(), "{}: {what} was not refused under the learned profile: {}", p.name, show(&o));
        enf.release(id).unwrap();
    }
    let _ = std::fs::remove_file("/srv/warden-corpus-novel");

    let count = |a: &Value| a.as_array().map(|x| x.len()).unwrap_or(0);
    Row {
        name: p.name,
        syscalls: count(&v["syscalls"]["allow"]),
        connect: count(&v["network"]["connect"]),
        bind: count(&v["network"]["bind"]),
        files: v.get("files").map(count),
        passed,
        refused: true,
        stability,
        generalised,
    }
}

/// Which programs of the corpus a run takes: all, or share `k` of `n` (the programs whose
/// index is `k` modulo `n`). lsm.rs boots each VM kernel twice (BPF-LSM through `lsm/`, then
/// through `fmod_ret`) and gives each boot half: every program runs on every kernel, each
/// path judges real programs, and the corpus's ~10 min per bookworm boot under TCG is paid
/// once per kernel, not twice.
#[derive(Clone, Copy, Debug)]
pub enum Share {
    All,
    Part { k: usize, n: usize },
}

/// The programs of `share`; WARDEN_CORPUS=python3,curl (debugging; never in CI) narrows them.
fn selected(share: Share) -> Vec<&'static Program> {
    let only = std::env::var("WARDEN_CORPUS").ok();
    if only.is_some() {
        assert!(!in_ci(), "CI runs the whole corpus");
    }
    CORPUS
        .iter()
        .enumerate()
        .filter(|(i, _)| match share {
            Share::All => true,
            Share::Part { k, n } => i % n == k,
        })
        .map(|(_, p)| p)
        .filter(|p| only.as_deref().is_none_or(|o| o.split(',').any(|n| n == p.name)))
        .collect()
}

/// The corpus (the programs of `share`): learned, enforced `ENFORCED_RUNS` times, new behaviours
/// refused. `files`: BPF-LSM works here, so the learned profiles have files and execs, and new
/// files and execs must be refused too. Returns the table (also printed).
pub fn corpus(files: bool, share: Share) -> String {
    let env = fixtures();
    // Confine and release in process: the CLI loads the eBPF object for every command (~2 s in
    // a debug build), ~400 times here. Generating goes through the CLI (it only reads the maps).
    let w = Warden::new();
    let mut enf = Enforcer::open(&w.pin_dir).expect("opening the enforcer");
    let mut rows = Vec::new();
    let programs = selected(share);
    assert!(!programs.is_empty(), "no corpus program selected ({share:?})");
    for p in &programs {
        let t0 = std::time::Instant::now();
        let r = learn_and_enforce(&w, &mut enf, &env, p, files);
        eprintln!("corpus {}: done in {:.1}s", p.name, t0.elapsed().as_secs_f64());
        if files {
            assert!(r.files.is_some(), "{}: BPF-LSM works here: the learned profile has a files section", p.name);
        }
        rows.push(r);
    }
    let mut t = String::new();
    t += &format!(
        "| program | covers | runs learned | rules generated (syscalls / connect / bind{}) | enforced runs passed | new behaviour refused |\n",
        if files { " / files" } else { "" }
    );
    t += "|---|---|---|---|---|---|\n";
    for (r, p) in rows.iter().zip(&programs) {
        let files_col = match (files, r.files) {
            (true, Some(n)) => format!(" / {n}"),
            _ => String::new(),
        };
        t += &format!(
            "| {} | {} | {LEARN_RUNS} | {} / {} / {}{files_col} | {}/{ENFORCED_RUNS} | {}{}: {} |\n",
            r.name,
            p.covers,
            r.syscalls,
            r.connect,
            r.bind,
            r.passed,
            p.novel.0,
            if files { "; a new file; a new exec" } else { "" },
            if r.refused { "refused" } else { "NOT refused" }
        );
    }
    for r in &rows {
        t += &format!("- {}: {}\n", r.name, r.stability);
        for g in &r.generalised {
            t += &format!("  - {g}\n");
        }
    }
    eprintln!("{t}");
    t
}

/// Whether warden's probe says the BPF-LSM layer works on this kernel (then the corpus learns
/// and enforces files and execs too).
pub fn bpf_lsm_works() -> bool {
    let out = Command::new(bin("warden")).args(["probe", "--json"]).output().expect("warden probe");
    let v: Value = serde_json::from_slice(&out.stdout).expect("probe JSON");
    v["layers"].as_array().is_some_and(|l| l.iter().any(|l| l["name"] == "bpf-lsm" && l["available"] == true))
}
