//! `warden profile ...`: check, show, import and compare profiles before they reach a node.
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use warden::escape::{json_inert, Esc};
use warden::learn;
use warden::profile::{
    self, compile::port_rules_text, diff, resolve, seccomp, CompiledProfile, Diagnostic, Invalid, Loaded, Profile,
    SearchPath, Severity, Syscalls, SyscallsSpec,
};
use warden_common::profile_flags as pf;

#[derive(Args)]
pub struct ProfileCmd {
    /// Directory where profile names and `extends` are looked up as NAME.json (repeatable,
    /// first match wins; a profile file's own directory is always searched first). Default:
    /// ./profiles, /etc/warden/profiles, /usr/share/warden/profiles.
    #[arg(long = "profile-path", value_name = "DIR", global = true)]
    profile_path: Vec<PathBuf>,
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(Subcommand)]
enum Sub {
    /// Check profile files: errors and warnings; exit status 1 if any has an error.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Summarize a profile (a NAME in the search path, or a FILE), `extends` resolved.
    Show {
        profile: String,
        /// Print the compiled view (what the kernel maps hold) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert an OCI/Docker seccomp profile to a warden profile, with a report of what was
    /// mapped how (on stderr).
    ImportSeccomp {
        file: PathBuf,
        /// Write the profile here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Capabilities the container holds, for `includes`/`excludes` caps conditions
        /// (comma separated, `CAP_` optional; `none` for none). Default: Docker's default set.
        #[arg(long, value_delimiter = ',')]
        caps: Option<Vec<String>>,
        /// Kernel version for `minKernel` conditions. Default: the running kernel.
        #[arg(long)]
        kernel: Option<String>,
        /// Name of the new profile. Default: the file name without `.json`.
        #[arg(long)]
        name: Option<String>,
    },
    /// Write a profile's syscall allow-list as an OCI seccomp profile (JSON), for the
    /// runtime's own seccomp (`securityContext.seccompProfile: Localhost`); notes on stderr.
    ExportSeccomp {
        /// A NAME in the search path, or a FILE (`extends` resolved).
        profile: String,
        /// Write the seccomp profile here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// A call outside the list kills the process (default: it fails with EPERM, which
        /// programs can handle; the runtime's default profiles do the same).
        #[arg(long)]
        kill: bool,
    },
    /// What B allows that A does not, and the reverse (compiled forms compared).
    Diff { a: String, b: String },
    /// Write a profile from what a cgroup in learn mode did (read from the pinned maps),
    /// with a report of what was generalised (on stderr, and in the profile's description).
    Generate {
        #[command(flatten)]
        target: CgroupTarget,
        /// Write the profile here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Name of the profile. Default: `learned-<cgroup id>`.
        #[arg(long)]
        name: Option<String>,
        /// Base profile(s) the generated one extends (repeatable).
        #[arg(long)]
        extends: Vec<String>,
        /// A directory with more than this many distinct entries used becomes one prefix rule.
        #[arg(long, default_value_t = learn::COLLAPSE_DIR_FILES)]
        collapse_dir_files: usize,
        /// The profile of the earlier learning runs of the same workload (a file this command
        /// or `merge` wrote): the result is their union, and the report says what this run
        /// added and whether the record is stable (the last runs added nothing). May be the
        /// `--output` file itself.
        #[arg(long, value_name = "FILE")]
        previous: Option<PathBuf>,
    },
    /// Union of profiles (files or names, as written): everything any of them allows.
    /// Idempotent and order-independent. Given learning runs oldest first, the report says
    /// what each run added to the ones before it and whether the record is stable.
    Merge {
        #[arg(required = true)]
        profiles: Vec<String>,
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Name of the result. Default: the inputs' common name.
        #[arg(long)]
        name: Option<String>,
    },
}

/// Which confined cgroup a command reads: by cgroup directory, cgroup id, or container
/// (`profile generate`, `report`).
#[derive(clap::Args)]
pub struct CgroupTarget {
    /// The confined cgroup (cgroup2 directory, absolute or relative to the mount).
    #[arg(long, conflicts_with_all = ["cgroup_id", "container"], required_unless_present_any = ["cgroup_id", "container"])]
    cgroup: Option<PathBuf>,
    /// For a cgroup whose directory is gone (still confined).
    #[arg(long, conflicts_with = "container")]
    cgroup_id: Option<u64>,
    /// A container the daemon confined: id or unique id prefix (asks the daemon).
    #[arg(long)]
    container: Option<String>,
}

impl CgroupTarget {
    /// The cgroup id, and how to name it in reports.
    pub fn resolve(self, socket: &Path) -> Result<(u64, String)> {
        Ok(match (self.cgroup, self.cgroup_id, self.container) {
            (_, Some(id), _) => (id, format!("cgroup id {id}")),
            (None, None, Some(c)) => {
                let (id, i) = warden::control::container_cgroup(socket, &c)?;
                let who = if i.pod.is_empty() {
                    format!("container {}", i.id)
                } else {
                    format!("container {} of pod {}/{}", i.container, i.namespace, i.pod)
                };
                (id, who)
            }
            (Some(p), None, _) => {
                let p = crate::cgroup_path(&p)?;
                (warden::cgroup::cgroup_id(&p)?, format!("cgroup {}", p.display()))
            }
            _ => unreachable!("clap requires one"),
        })
    }
}

pub fn run(cmd: ProfileCmd, pin_dir: &Path, socket: &Path) -> Result<()> {
    let search = SearchPath::new(cmd.profile_path);
    match cmd.cmd {
        Sub::Validate { files } => validate(&files, &search),
        Sub::Show { profile, json } => show(&profile, json, &search),
        Sub::ImportSeccomp { file, output, caps, kernel, name } => import(&file, output.as_deref(), caps, kernel, name),
        Sub::ExportSeccomp { profile, output, kill } => export_seccomp(&profile, output.as_deref(), kill, &search),
        Sub::Diff { a, b } => diff_cmd(&a, &b, &search),
        Sub::Generate { target, output, name, extends, collapse_dir_files, previous } => {
            let (id, source) = target.resolve(socket)?;
            let maps = warden::enforcer::Maps::open(pin_dir)?;
            let learned = learn::Learned::read(&maps, pin_dir, id)?;
            let name = name.unwrap_or_else(|| format!("learned-{id}"));
            let mut g =
                learn::generate(&learned, &learn::GenerateOptions { name, extends, source, collapse_dir_files });
            match previous {
                Some(prev) => {
                    let prev = Profile::parse_file(&prev)?;
                    let (merged, notes) = learn::stability::fold_into(prev, g.profile)?;
                    g.profile = merged;
                    g.notes.extend(notes);
                }
                None => {
                    g.profile = learn::stability::with_verdict(g.profile, learn::stability::ONE_RUN);
                    g.notes.push(learn::stability::ONE_RUN.to_string());
                }
            }
            write_generated(&g, output.as_deref(), &search)
        }
        Sub::Merge { profiles, output, name } => merge_cmd(&profiles, output.as_deref(), name.as_deref(), &search),
    }
}

/// `profile export-seccomp`: the profile is loaded and compiled first (an invalid profile is
/// refused as everywhere else), then its syscall section is written as OCI seccomp JSON.
fn export_seccomp(spec: &str, output: Option<&Path>, kill: bool, search: &SearchPath) -> Result<()> {
    let (loaded, _) = load_compiled(spec, search, true)?;
    let (sp, notes) = seccomp::export(&loaded.profile, kill).map_err(anyhow::Error::msg)?;
    for n in &notes {
        eprintln!("note: {n}");
    }
    let text = serde_json::to_string_pretty(&sp)? + "\n";
    match output {
        Some(o) => std::fs::write(o, text).with_context(|| format!("writing {}", o.display()))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(())
}

/// Checks a generated profile like `validate` would, prints the report, writes it.
pub fn write_generated(g: &learn::Generated, output: Option<&Path>, search: &SearchPath) -> Result<()> {
    let p = &g.profile;
    let mut diags = profile::check(p);
    if !p.extends.is_empty() {
        let loaded = resolve::resolve(
            p.clone(),
            output,
            &match output.and_then(Path::parent) {
                Some(d) if !d.as_os_str().is_empty() => search.with_first(d),
                _ => search.clone(),
            },
        );
        diags = loaded.diagnostics.clone();
        if loaded.errors().next().is_none() {
            if let Err(e) = profile::compile(&loaded.profile) {
                diags.push(Diagnostic::error("", format!("{e:#} (after merging `extends`)")));
            }
        }
    } else if let Err(e) = profile::compile(p) {
        diags.push(Diagnostic::error("", format!("{e:#}")));
    }
    let errors: Vec<Diagnostic> = diags.iter().filter(|d| d.is_error()).cloned().collect();
    if !errors.is_empty() {
        return Err(Invalid { profile: Some(p.name.clone()), errors }.into());
    }
    eprintln!("Generated profile `{}`:", Esc(&p.name));
    // Notes quote learned paths, which the workload chose.
    for n in &g.notes {
        eprintln!("  {}", Esc(n));
    }
    if g.truncated > 0 {
        eprintln!("warning: the record is TRUNCATED ({} item(s) not recorded): review before enforcing", g.truncated);
    }
    let json = json_inert(&serde_json::to_string_pretty(p)?).into_owned() + "\n";
    match output {
        Some(o) => {
            std::fs::write(o, json).with_context(|| format!("writing {}", o.display()))?;
            eprintln!("wrote {}", o.display());
        }
        None => std::io::stdout().write_all(json.as_bytes())?,
    }
    Ok(())
}

fn merge_cmd(specs: &[String], output: Option<&Path>, name: Option<&str>, search: &SearchPath) -> Result<()> {
    let mut ps = Vec::new();
    for s in specs {
        let p = Path::new(s);
        let file = if s.contains('/') || s.ends_with(".json") || p.is_file() {
            p.to_path_buf()
        } else {
            search.find(s).map_err(anyhow::Error::msg)?
        };
        ps.push(Profile::parse_file(&file)?);
    }
    let merged = warden::profile::merge::union(&ps, name)?;
    let mut notes = vec![format!("union of {} profile(s)", ps.len())];
    // Learning runs, oldest first: what each added to the ones before it (issue 23: people
    // must see when the record is still growing), in the report only: the result stays
    // order-independent and idempotent. Profiles with `extends` are not compared.
    let merged = if ps.iter().all(|p| p.extends.is_empty()) {
        let per_run = learn::stability::added_per_run(&ps)?;
        for (i, (s, r)) in specs.iter().zip(&per_run).enumerate().skip(1) {
            notes.push(if r.added.is_empty() {
                format!("run {} ({s}) added nothing new", i + 1)
            } else {
                format!("run {} ({s}) added {}: {}", i + 1, r.added.len(), r.added.join("; "))
            });
        }
        notes.push(learn::stability::verdict(&ps, &per_run));
        learn::stability::without_verdict(merged)
    } else {
        merged
    };
    let g = learn::Generated { profile: merged, notes, truncated: 0 };
    write_generated(&g, output, search)
}

/// Loads a NAME or FILE with its extends; Ok even with errors (they are in the diagnostics),
/// except when the top file itself cannot be read or parsed, which becomes one error.
fn load(spec: &str, search: &SearchPath) -> Result<Loaded, Vec<Diagnostic>> {
    resolve::load_spec(spec, search).map_err(|e| match e.downcast::<Invalid>() {
        Ok(inv) => inv.errors,
        Err(e) => vec![Diagnostic::error("", format!("{e:#}"))],
    })
}

/// Loads and compiles, printing warnings to stderr; errors make it fail.
fn load_compiled(spec: &str, search: &SearchPath, quiet_notes: bool) -> Result<(Loaded, CompiledProfile)> {
    let loaded = match load(spec, search) {
        Ok(l) => l,
        Err(errors) => return Err(Invalid { profile: None, errors }.into()),
    };
    for d in &loaded.diagnostics {
        if !(d.is_error() || (quiet_notes && d.severity == Severity::Note)) {
            eprintln!("{}: {d}", sev(d.severity));
        }
    }
    let errors: Vec<Diagnostic> = loaded.errors().cloned().collect();
    if !errors.is_empty() {
        return Err(Invalid { profile: Some(loaded.own.name.clone()), errors }.into());
    }
    let compiled = profile::compile(&loaded.profile)?;
    Ok((loaded, compiled))
}

fn sev(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

fn validate(files: &[PathBuf], search: &SearchPath) -> Result<()> {
    let mut failed = 0;
    for f in files {
        let mut diags = match resolve::load_file(f, search) {
            Ok(l) => {
                let mut d = l.diagnostics.clone();
                // Limits that only the merged profile can exceed (more rules after extends).
                if l.errors().next().is_none() {
                    if let Err(e) = profile::compile(&l.profile) {
                        match e.downcast::<Invalid>() {
                            Ok(inv) => d.extend(inv.errors.into_iter().map(|e| Diagnostic {
                                message: format!("{} (after merging `extends`)", e.message),
                                ..e.in_file(Some(f))
                            })),
                            Err(e) => d.push(Diagnostic::error("", format!("{e:#}")).in_file(Some(f))),
                        }
                    }
                }
                d
            }
            Err(e) => match e.downcast::<Invalid>() {
                Ok(inv) => inv.errors,
                Err(e) => vec![Diagnostic::error("", format!("{e:#}"))],
            },
        };
        diags.sort_by_key(|a| a.severity);
        let errors = diags.iter().filter(|d| d.is_error()).count();
        let warnings = diags.iter().filter(|d| d.severity == Severity::Warning).count();
        for d in &diags {
            println!("{}: {d}", sev(d.severity));
        }
        if errors > 0 {
            failed += 1;
            println!("{}: INVALID ({errors} error(s), {warnings} warning(s))", f.display());
        } else {
            println!("{}: ok ({warnings} warning(s))", f.display());
        }
    }
    if failed > 0 {
        bail!("{failed} of {} profile(s) invalid", files.len());
    }
    Ok(())
}

fn show(spec: &str, json: bool, search: &SearchPath) -> Result<()> {
    let (loaded, c) = load_compiled(spec, search, json)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&c.to_json())?);
        return Ok(());
    }
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(out, "profile {} (version {})", c.name, c.version());
    if let Some(f) = &loaded.file {
        let _ = writeln!(out, "  file: {}", f.display());
    }
    if let Some(d) = &loaded.profile.description {
        let _ = writeln!(out, "  description: {d}");
    }
    if !loaded.chain.is_empty() {
        let chain: Vec<String> = loaded.chain.iter().map(|(n, f)| format!("{n} ({})", f.display())).collect();
        let _ = writeln!(out, "  extends (merged, bases first): {}", chain.join(", "));
    }
    if c.restricts(pf::SYSCALLS) {
        let names = c.allowed_syscalls();
        let default = if c.restricts(pf::SYSCALLS_LOG_ONLY) { "logged" } else { "killed" };
        let _ = writeln!(
            out,
            "  syscalls: {} allowed ({}), all others {default}:",
            names.len(),
            profile::sysnames::HOST_ARCH
        );
        for line in wrap(&names, 88) {
            let _ = writeln!(out, "    {line}");
        }
    } else {
        let _ = writeln!(out, "  syscalls: not restricted");
    }
    match &c.files {
        None => {
            let _ = writeln!(out, "  files: not restricted");
        }
        Some(f) if f.is_empty() => {
            let _ = writeln!(out, "  files: nothing allowed");
        }
        Some(f) => {
            let _ = writeln!(
                out,
                "  files: {} rule(s) (validated; kernel enforcement comes with the BPF-LSM layer)",
                f.len()
            );
            for r in f {
                let _ = writeln!(
                    out,
                    "    {:<3} {}{}",
                    r.access.to_string(),
                    r.path,
                    if r.prefix { "  (and everything below)" } else { "" }
                );
            }
        }
    }
    if c.restricts(pf::FAMILIES) {
        let _ = writeln!(out, "  network:");
        let _ = writeln!(
            out,
            "    socket families: {}; raw inet sockets: {}; protocols besides tcp and udp: {}",
            c.families().join(", "),
            if c.restricts(pf::RAW_SOCKETS) { "yes" } else { "no" },
            match c.protocols().into_iter().filter(|p| *p != "raw").collect::<Vec<_>>() {
                v if v.is_empty() => "none".to_string(),
                v => v.join(", "),
            }
        );
        if c.restricts(pf::CONNECT) {
            let rules = c.connect_rules();
            if rules.is_empty() {
                let _ = writeln!(out, "    connect: nowhere");
            }
            for (net, r) in rules {
                let _ = writeln!(out, "    connect: {net} {}", port_rules_text(&r));
            }
        } else {
            let _ = writeln!(out, "    connect: not restricted");
        }
        match &c.bind {
            Some(b) => {
                let _ = writeln!(out, "    bind: {}", port_rules_text(b));
            }
            None => {
                let _ = writeln!(out, "    bind: not restricted");
            }
        }
    } else {
        let _ = writeln!(out, "  network: not restricted");
    }
    print!("{out}");
    Ok(())
}

fn wrap(words: &[&str], width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for w in words {
        let cur = lines.last_mut().expect("one line");
        if !cur.is_empty() && cur.len() + w.len() + 1 > width {
            lines.push(w.to_string());
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(w);
        }
    }
    lines
}

fn import(
    file: &Path,
    output: Option<&Path>,
    caps: Option<Vec<String>>,
    kernel: Option<String>,
    name: Option<String>,
) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let sp: seccomp::SeccompProfile = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        anyhow::anyhow!("{}: {path}: {}", file.display(), e.into_inner())
    })?;
    let mut opts = seccomp::ImportOptions::host();
    if let Some(c) = caps {
        opts = opts.with_caps(&c);
    }
    if let Some(k) = kernel {
        opts.kernel = Some(
            seccomp::KernelVersion::parse(&k).with_context(|| format!("--kernel `{k}` is not a version like 6.1"))?,
        );
        opts.kernel_source = "the kernel given with --kernel".into();
    }
    let imported = seccomp::convert(&sp, &opts);
    let name = match name {
        Some(n) => n,
        None => file.file_stem().and_then(|s| s.to_str()).unwrap_or("imported").to_string(),
    };
    let p = Profile {
        name: name.clone(),
        description: Some(format!(
            "Imported from {} for {} (capabilities: {}) by `warden profile import-seccomp`",
            file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            opts.arch,
            opts.caps_source
        )),
        extends: Vec::new(),
        syscalls: Some(SyscallsSpec::Allow(Syscalls {
            default: imported.syscalls.default,
            allow: imported.syscalls.allow,
        })),
        files: None,
        network: None,
    };
    // Refuse to write something that would not compile (e.g. a bad --name).
    let diags = profile::check(&p);
    let errors: Vec<Diagnostic> = diags.iter().filter(|d| d.is_error()).cloned().collect();
    if !errors.is_empty() {
        return Err(Invalid { profile: Some(name), errors }.into());
    }
    let json = serde_json::to_string_pretty(&p)? + "\n";
    eprintln!("Import of {}:", file.display());
    eprint!("{}", imported.report);
    for d in diags.iter().filter(|d| d.severity == Severity::Warning) {
        eprintln!("warning: {d}");
    }
    match output {
        Some(o) => {
            std::fs::write(o, json).with_context(|| format!("writing {}", o.display()))?;
            eprintln!("wrote profile `{name}` to {}", o.display());
        }
        None => std::io::stdout().write_all(json.as_bytes())?,
    }
    Ok(())
}

fn diff_cmd(a: &str, b: &str, search: &SearchPath) -> Result<()> {
    let (_, ca) = load_compiled(a, search, true)?;
    let (_, cb) = load_compiled(b, search, true)?;
    for (x, y, cx, cy) in [(a, b, &ca, &cb), (b, a, &cb, &ca)] {
        let lines = diff::allowed_by_b_not_a(cx, cy);
        println!("{y} allows, {x} does not:");
        if lines.is_empty() {
            println!("  nothing");
        }
        for l in lines {
            println!("  + {l}");
        }
    }
    if ca.hash == cb.hash {
        println!("identical kernel state (version {})", ca.version());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> SearchPath {
        SearchPath::new(vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles")])
    }

    /// A path in a fresh temporary folder (removed when the guard drops).
    fn tmp(name: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::Builder::new().prefix("warden-cli-test-").tempdir().unwrap();
        let p = d.path().join(name);
        (d, p)
    }

    #[test]
    fn validate_exit_status() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let files: Vec<PathBuf> =
            ["runtime-default", "busybox-httpd", "readonly"].iter().map(|n| dir.join(format!("{n}.json"))).collect();
        validate(&files, &builtin()).unwrap();
        let (_tmp, bad) = tmp("bad.json");
        std::fs::write(&bad, r#"{"name":"bad","files":[{"path":"rel","access":"r"}]}"#).unwrap();
        let e = validate(&[files[0].clone(), bad], &builtin()).unwrap_err().to_string();
        assert_eq!(e, "1 of 2 profile(s) invalid");
        let (_tmp2, missing) = tmp("missing.json");
        assert!(validate(&[missing], &builtin()).is_err());
    }

    #[test]
    fn show_and_diff_builtins() {
        show("busybox-httpd", false, &builtin()).unwrap();
        show("client-one-address", true, &builtin()).unwrap();
        diff_cmd("busybox-httpd", "client-one-address", &builtin()).unwrap();
        assert!(show("no-such-profile", false, &builtin()).is_err());
    }

    #[test]
    fn import_docker_default_writes_a_valid_profile() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/seccomp/docker-default.json");
        if !src.exists() {
            eprintln!("skipped: {} not present", src.display());
            return;
        }
        let (_tmp, out) = tmp("docker.json");
        import(&src, Some(&out), None, Some("6.1".into()), None).unwrap();
        let p = Profile::parse_file(&out).unwrap();
        assert_eq!(p.name, "docker-default");
        let c = profile::compile(&p).unwrap();
        assert!(c.allowed_syscalls().contains(&"execve"));
        // A stated capability set changes what is allowed.
        import(&src, Some(&out), Some(vec!["CAP_SYS_ADMIN".into()]), Some("6.1".into()), Some("admin".into())).unwrap();
        let c = profile::compile(&Profile::parse_file(&out).unwrap()).unwrap();
        assert!(c.allowed_syscalls().contains(&"mount"));
        assert!(import(&src, Some(&out), None, Some("new".into()), None).is_err(), "bad --kernel");
        assert!(import(&src, Some(&out), None, None, Some("bad/name".into())).is_err(), "bad --name");
    }
}
