//! OCI/Docker seccomp profiles: their format, and their conversion to warden's allow-list with
//! a report of what was mapped how.
//!
//! Seccomp can say things warden cannot (return an errno, filter on arguments, depend on
//! capabilities or the kernel version). Every such part is handled deliberately and appears in
//! the [`Report`]; nothing is dropped silently:
//! - `defaultAction`: errno/kill/trap/trace/notify become `kill` (warden denies by killing);
//!   log becomes `log`; allow (a deny-list profile) becomes "every host syscall except those the
//!   rules deny".
//! - per-rule actions: only allow and log add names to the allow-list; the others are listed,
//!   except an errno-ENOSYS rule whose fallback call the profile allows ([`FALLBACKS`]: clone3
//!   falls back to clone): it is allowed, since warden could only kill where seccomp says
//!   "does not exist here", and that killed every threaded glibc program.
//! - `includes`/`excludes`: arches are evaluated for the host, caps against a stated capability
//!   set (Docker's default unless told), `minKernel` against the running kernel.
//! - `args` filters are widened to "allow the syscall", with a warning naming it.
//! - names the host table does not know (`chown32`) are skipped and listed.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{sysnames, DefaultAction, Syscalls};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "SCMP_ACT_KILL")]
    Kill,
    #[serde(rename = "SCMP_ACT_KILL_PROCESS")]
    KillProcess,
    #[serde(rename = "SCMP_ACT_KILL_THREAD")]
    KillThread,
    #[serde(rename = "SCMP_ACT_TRAP")]
    Trap,
    #[serde(rename = "SCMP_ACT_ERRNO")]
    Errno,
    #[serde(rename = "SCMP_ACT_TRACE")]
    Trace,
    #[serde(rename = "SCMP_ACT_ALLOW")]
    Allow,
    #[serde(rename = "SCMP_ACT_LOG")]
    Log,
    #[serde(rename = "SCMP_ACT_NOTIFY")]
    Notify,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Kill => "SCMP_ACT_KILL",
            Action::KillProcess => "SCMP_ACT_KILL_PROCESS",
            Action::KillThread => "SCMP_ACT_KILL_THREAD",
            Action::Trap => "SCMP_ACT_TRAP",
            Action::Errno => "SCMP_ACT_ERRNO",
            Action::Trace => "SCMP_ACT_TRACE",
            Action::Allow => "SCMP_ACT_ALLOW",
            Action::Log => "SCMP_ACT_LOG",
            Action::Notify => "SCMP_ACT_NOTIFY",
        }
    }
    /// Whether the call goes ahead under this action.
    pub fn allows(self) -> bool {
        matches!(self, Action::Allow | Action::Log)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchMap {
    pub architecture: String,
    #[serde(
        rename = "subArchitectures",
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sub_architectures: Vec<String>,
}

/// A seccomp profile (the OCI runtime spec's `linux.seccomp`, plus Docker's extensions:
/// `archMap`, and per-rule `includes`/`excludes`/`comment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompProfile {
    #[serde(rename = "defaultAction")]
    pub default_action: Action,
    #[serde(rename = "defaultErrnoRet", default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(rename = "archMap", default, skip_serializing_if = "Option::is_none")]
    pub arch_map: Option<Vec<ArchMap>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    #[serde(rename = "listenerPath", default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(rename = "listenerMetadata", default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub syscalls: Vec<Rule>,
    /// Fields this version does not know, kept to be reported (only a standalone file can have
    /// them; inside a warden profile unknown fields are errors).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Pre-OCI Docker profiles had one `name` per rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: Action,
    #[serde(rename = "errnoRet", default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Filter>,
}

impl Rule {
    pub fn all_names(&self) -> Vec<&str> {
        self.names.iter().map(String::as_str).chain(self.name.as_deref()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(rename = "valueTwo", default, skip_serializing_if = "is_zero")]
    pub value_two: u64,
    pub op: String,
}

/// Go's encoding/json writes a nil slice as `null`; seccomp files made by Go tools have them.
fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op.as_str() {
            "SCMP_CMP_NE" => "!=",
            "SCMP_CMP_LT" => "<",
            "SCMP_CMP_LE" => "<=",
            "SCMP_CMP_EQ" => "==",
            "SCMP_CMP_GE" => ">=",
            "SCMP_CMP_GT" => ">",
            "SCMP_CMP_MASKED_EQ" => return write!(f, "arg{} & {:#x} == {:#x}", self.index, self.value, self.value_two),
            other => other,
        };
        write!(f, "arg{} {op} {}", self.index, self.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(default, deserialize_with = "null_as_empty", skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    #[serde(rename = "minKernel", default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

/// Docker's default capability set (moby `oci/caps/defaults.go`): what a `docker run` container
/// has unless `--cap-add`/`--cap-drop` change it.
pub const DOCKER_DEFAULT_CAPS: &[&str] = &[
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// A kernel version `major.minor[.patch]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u32, pub u32, pub u32);

impl KernelVersion {
    /// Parses the leading `a.b[.c]` of strings like `6.1.0-18-amd64` or `4.8`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let patch = parts.next().and_then(|p| p.ok()).unwrap_or(0);
        Some(KernelVersion(major, minor, patch))
    }

    /// The running kernel's version (uname release).
    pub fn running() -> Option<Self> {
        // SAFETY: uname fills a caller-provided struct; zeroed is a valid initial value.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        if unsafe { libc::uname(&mut u) } != 0 {
            return None;
        }
        // SAFETY: the kernel NUL-terminates release.
        let rel = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) };
        Self::parse(&rel.to_string_lossy())
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What a seccomp profile is evaluated against.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Architecture whose table gives the names (Rust name: `x86_64`, `aarch64`).
    pub arch: String,
    /// Capabilities the container is assumed to hold (`CAP_*`).
    pub caps: BTreeSet<String>,
    /// Where `caps` came from, for the report.
    pub caps_source: String,
    /// Kernel `minKernel` conditions are compared with; None = unknown.
    pub kernel: Option<KernelVersion>,
    /// Where `kernel` came from, for the report.
    pub kernel_source: String,
}

impl ImportOptions {
    /// Host architecture, Docker's default capabilities, the running kernel.
    pub fn host() -> Self {
        Self {
            arch: sysnames::HOST_ARCH.to_string(),
            caps: DOCKER_DEFAULT_CAPS.iter().map(|c| c.to_string()).collect(),
            caps_source: "Docker's default capability set".into(),
            kernel: KernelVersion::running(),
            kernel_source: "the running kernel".into(),
        }
    }

    /// Replaces the capability set (names with or without `CAP_`, any case; `none` = empty).
    pub fn with_caps(mut self, caps: &[String]) -> Self {
        self.caps = caps.iter().filter(|c| !c.eq_ignore_ascii_case("none")).map(|c| normalize_cap(c)).collect();
        self.caps_source = "the capabilities given with --caps".into();
        self
    }
}

pub fn normalize_cap(c: &str) -> String {
    let c = c.trim().to_ascii_uppercase();
    if c.starts_with("CAP_") {
        c
    } else {
        format!("CAP_{c}")
    }
}

/// Go/Docker architecture names of a Rust arch (`includes.arches` uses Docker's names).
fn docker_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Whether an `arches` entry (Docker name like `amd64`, or libseccomp's `SCMP_ARCH_X86_64`)
/// means `rust_arch`.
fn arch_matches(entry: &str, rust_arch: &str) -> bool {
    let e = entry.to_ascii_lowercase();
    let e = e.strip_prefix("scmp_arch_").unwrap_or(&e);
    e == rust_arch || e == docker_arch(rust_arch)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// How a setting was mapped.
    Setting,
    /// A rule that applies on this host, and why if it had conditions.
    Applied,
    /// A rule whose conditions do not hold here.
    Skipped,
    /// An argument filter widened to "allow the syscall".
    Widened,
    /// An ENOSYS rule whose fallback call is allowed: allowed (see [`FALLBACKS`]).
    Fallback,
    /// A deny-like rule: listed, with what warden does instead.
    Denied,
    /// Names the host table does not know.
    UnknownName,
    /// A field with no warden equivalent.
    Ignored,
}

impl Kind {
    fn heading(self) -> &'static str {
        match self {
            Kind::Setting => "Settings",
            Kind::Applied => "Rules applied",
            Kind::Skipped => "Rules skipped (their conditions do not hold here)",
            Kind::Widened => "WARNING: argument filters widened (the syscall is allowed with any arguments)",
            Kind::Fallback => "ENOSYS rules allowed (their callers would fall back to a call this profile allows; warden cannot return ENOSYS, only kill)",
            Kind::Denied => "Deny rules (warden cannot return an errno: a denied call kills the process)",
            Kind::UnknownName => "Names skipped (not syscalls of this architecture's table)",
            Kind::Ignored => "Ignored (no warden equivalent)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportLine {
    pub kind: Kind,
    pub text: String,
}

/// What a conversion did, for a person to read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub lines: Vec<ReportLine>,
    /// Number of syscalls in the resulting allow-list.
    pub allowed: usize,
}

impl Report {
    fn push(&mut self, kind: Kind, text: impl Into<String>) {
        self.lines.push(ReportLine { kind, text: text.into() });
    }
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &ReportLine> {
        self.lines.iter().filter(move |l| l.kind == kind)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: BTreeSet<Kind> = self.lines.iter().map(|l| l.kind).collect();
        for k in kinds {
            writeln!(f, "{}:", k.heading())?;
            for l in self.of(k) {
                writeln!(f, "  - {}", l.text)?;
            }
        }
        writeln!(f, "Result: {} syscalls allowed.", self.allowed)
    }
}

/// The result of a conversion.
#[derive(Debug, Clone)]
pub struct Imported {
    pub syscalls: Syscalls,
    pub report: Report,
}

fn list(names: &[&str], max: usize) -> String {
    let mut s = names.iter().take(max).map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
    if names.len() > max {
        s.push_str(&format!(", … ({} in all)", names.len()));
    }
    s
}

fn errno_text(e: Option<u32>) -> String {
    match e {
        None => "EPERM (default)".into(),
        Some(n) => {
            // SAFETY: strerror returns a pointer to a static or thread-local string.
            let s = unsafe { std::ffi::CStr::from_ptr(libc::strerror(n as i32)) };
            format!("errno {n} ({})", s.to_string_lossy())
        }
    }
}

/// Evaluates a rule's `includes`/`excludes` for `opts`: Ok(reasons it applies) or Err(why not).
/// Semantics follow Docker's loader: every included cap must be held, any excluded cap held
/// skips the rule; an arch list matches if it names the host; `minKernel` is the lowest kernel
/// the rule applies to (and for `excludes`, the lowest kernel it no longer applies to).
fn evaluate(rule: &Rule, opts: &ImportOptions) -> Result<Vec<String>, String> {
    let mut why = Vec::new();
    let host = format!("{} ({})", opts.arch, docker_arch(&opts.arch));
    if let Some(inc) = &rule.includes {
        if !inc.arches.is_empty() {
            if !inc.arches.iter().any(|a| arch_matches(a, &opts.arch)) {
                return Err(format!("only for arches {} (host is {host})", inc.arches.join(", ")));
            }
            why.push(format!("arches {} include the host", inc.arches.join(", ")));
        }
        if !inc.caps.is_empty() {
            let missing: Vec<&str> =
                inc.caps.iter().filter(|c| !opts.caps.contains(&normalize_cap(c))).map(String::as_str).collect();
            if !missing.is_empty() {
                return Err(format!("needs {} (not in {})", missing.join(", "), opts.caps_source));
            }
            why.push(format!("{} held", inc.caps.join(", ")));
        }
        if let Some(mk) = &inc.min_kernel {
            match (KernelVersion::parse(mk), opts.kernel) {
                (None, _) => return Err(format!("minKernel `{mk}` is not a kernel version")),
                (Some(_), None) => {
                    why.push(format!("minKernel {mk}: {} is unknown, assumed new enough", opts.kernel_source))
                }
                (Some(min), Some(k)) if k < min => {
                    return Err(format!("needs kernel {mk}, {} is {k}", opts.kernel_source))
                }
                (Some(_), Some(k)) => why.push(format!("minKernel {mk} <= {} {k}", opts.kernel_source)),
            }
        }
    }
    if let Some(exc) = &rule.excludes {
        if let Some(a) = exc.arches.iter().find(|a| arch_matches(a, &opts.arch)) {
            return Err(format!("excluded on arch {a} (host is {host})"));
        }
        if !exc.arches.is_empty() {
            why.push(format!("host not among excluded arches {}", exc.arches.join(", ")));
        }
        if let Some(c) = exc.caps.iter().find(|c| opts.caps.contains(&normalize_cap(c))) {
            return Err(format!("excluded when {c} is held (it is, in {})", opts.caps_source));
        }
        if !exc.caps.is_empty() {
            why.push(format!("{} not held", exc.caps.join(", ")));
        }
        if let Some(mk) = &exc.min_kernel {
            match (KernelVersion::parse(mk), opts.kernel) {
                (None, _) => return Err(format!("excludes.minKernel `{mk}` is not a kernel version")),
                (Some(_), None) => {
                    why.push(format!("excludes.minKernel {mk}: {} is unknown, assumed older", opts.kernel_source))
                }
                (Some(min), Some(k)) if k >= min => {
                    return Err(format!("excluded from kernel {mk} on; {} is {k}", opts.kernel_source))
                }
                (Some(_), Some(k)) => {
                    why.push(format!("{} {k} is older than excludes.minKernel {mk}", opts.kernel_source))
                }
            }
        }
    }
    Ok(why)
}

/// Calls that seccomp profiles answer with ENOSYS so that callers use an older call instead:
/// (newer call, the call its callers fall back to).
pub const FALLBACKS: &[(&str, &str)] = &[
    ("clone3", "clone"),
    ("openat2", "openat"),
    ("faccessat2", "faccessat"),
    ("fchmodat2", "fchmodat"),
    ("epoll_pwait2", "epoll_pwait"),
    ("close_range", "close"),
];

/// Converts a seccomp profile into warden's allow-list form for `opts`.
pub fn convert(sp: &SeccompProfile, opts: &ImportOptions) -> Imported {
    let mut report = Report::default();
    report.push(
        Kind::Setting,
        format!(
            "evaluated for architecture {}, capabilities = {} ({}), kernel = {}",
            opts.arch,
            opts.caps_source,
            if opts.caps.is_empty() {
                "none".to_string()
            } else {
                opts.caps.iter().cloned().collect::<Vec<_>>().join(", ")
            },
            match opts.kernel {
                Some(k) => format!("{k} ({})", opts.kernel_source),
                None => format!("unknown ({}); minKernel conditions assumed met", opts.kernel_source),
            }
        ),
    );

    let default = match sp.default_action {
        Action::Allow => {
            report.push(Kind::Setting, "defaultAction SCMP_ACT_ALLOW: this seccomp profile is a deny-list; warden profiles are allow-lists, so every syscall of the table is allowed except those its rules deny, and the rest (numbers outside the table) is killed");
            DefaultAction::Kill
        }
        Action::Log => {
            report.push(
                Kind::Setting,
                "defaultAction SCMP_ACT_LOG -> default `log`: calls outside the allow-list run and are reported",
            );
            DefaultAction::Log
        }
        a => {
            let what = match a {
                Action::Errno => format!("returns {}", errno_text(sp.default_errno_ret)),
                Action::Trace => "hands the call to a ptrace tracer (ENOSYS without one)".into(),
                Action::Notify => "asks a user-space agent".into(),
                Action::Trap => "sends SIGSYS".into(),
                _ => "kills".into(),
            };
            report.push(Kind::Setting, format!("defaultAction {} (seccomp {what}) -> default `kill`: warden denies calls outside the allow-list by killing the process", a.name()));
            DefaultAction::Kill
        }
    };

    // Names allowed and denied by applicable rules, with the first rule index that said so.
    let mut allowed: BTreeMap<String, usize> = BTreeMap::new();
    let mut denied: BTreeMap<String, usize> = BTreeMap::new();
    // ENOSYS rules, decided after every rule is read: (name, rule index, label, conditions).
    let mut fallback_candidates: Vec<(String, usize, String, String)> = Vec::new();
    let mut unknown: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let table: BTreeSet<&str> = sysnames::names_on(&opts.arch).into_iter().collect();

    for (i, rule) in sp.syscalls.iter().enumerate() {
        let names = rule.all_names();
        let label = format!("syscalls[{i}] ({})", list(&names, 4));
        if names.is_empty() {
            report.push(Kind::Ignored, format!("syscalls[{i}]: a rule without names"));
            continue;
        }
        let why = match evaluate(rule, opts) {
            Ok(why) => why,
            Err(reason) => {
                report.push(Kind::Skipped, format!("{label} {}: {reason}", rule.action.name()));
                continue;
            }
        };
        let (known, missing): (Vec<&str>, Vec<&str>) = names.iter().partition(|n| table.contains(*n));
        for n in &missing {
            unknown.entry(n.to_string()).or_default().push(i);
        }
        if known.is_empty() {
            report.push(
                Kind::Applied,
                format!("{label} {}: no name exists on {}; nothing to do", rule.action.name(), opts.arch),
            );
            continue;
        }
        let cond = if why.is_empty() { String::new() } else { format!(" [{}]", why.join("; ")) };
        if rule.action.allows() {
            if rule.action == Action::Log {
                report.push(
                    Kind::Setting,
                    format!("{label}: SCMP_ACT_LOG -> allowed (warden does not log allowed calls)"),
                );
            }
            report.push(Kind::Applied, format!("{label}: {} name(s) allowed{cond}", known.len()));
            if !rule.args.is_empty() {
                let filt = rule.args.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" && ");
                for n in &known {
                    report.push(Kind::Widened, format!("`{n}` (syscalls[{i}]): seccomp allows it only when {filt}; warden allows it with any arguments"));
                }
            }
            for n in known {
                allowed.entry(n.to_string()).or_insert(i);
            }
        } else {
            let what = match rule.action {
                Action::Errno => format!("returns {}", errno_text(rule.errno_ret)),
                Action::Trace => "hands the call to a tracer".into(),
                Action::Notify => "asks a user-space agent".into(),
                Action::Trap => "sends SIGSYS".into(),
                _ => "kills".into(),
            };
            let enosys = rule.action == Action::Errno && rule.errno_ret == Some(libc::ENOSYS as u32);
            if enosys {
                // Decided below, once every rule's allow-list is known.
                for n in &known {
                    fallback_candidates.push((n.to_string(), i, label.clone(), cond.clone()));
                }
                continue;
            }
            let mut text = format!("{label}: seccomp {what}{cond}; warden denies (kills)");
            if !rule.args.is_empty() {
                text.push_str(&format!(
                    " (its argument filter {} is not applied: the whole call is denied)",
                    rule.args.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" && ")
                ));
            }
            report.push(Kind::Denied, text);
            for n in known {
                denied.entry(n.to_string()).or_insert(i);
            }
        }
    }

    // ENOSYS rules: "this call does not exist here", so that the caller falls back to an older
    // call (glibc: clone3 -> clone for every new thread). warden cannot return ENOSYS (sys_enter
    // can only kill), and killing there kills every threaded glibc program. So the call is
    // allowed when its fallback is allowed: the caller could do the same through the fallback.
    // What Docker's clone3 rule guards (clone3's flags are in memory, where a seccomp filter
    // cannot look) is the namespace flags its `clone` rule filters; that filter is widened by
    // this import anyway (see the warnings), so allowing clone3 adds nothing `clone` does not
    // already allow. Without an allowed fallback the call is denied (kills), as any deny rule.
    for (n, i, label, cond) in fallback_candidates {
        match FALLBACKS.iter().find(|(new, _)| *new == n).map(|(_, old)| *old) {
            Some(old) if allowed.contains_key(old) => {
                report.push(
                    Kind::Fallback,
                    format!("`{n}` ({label}: seccomp returns ENOSYS{cond}): allowed, because its callers fall back to `{old}`, which this profile allows"),
                );
                allowed.entry(n).or_insert(i);
            }
            fb => {
                report.push(
                    Kind::Denied,
                    format!(
                        "{label}: seccomp returns ENOSYS for `{n}`{cond}; warden denies (kills){}",
                        match fb {
                            Some(old) => format!(": its fallback `{old}` is not allowed either"),
                            None => ": no known fallback call (callers that do not fall back die instead of failing)".into(),
                        }
                    ),
                );
                denied.entry(n).or_insert(i);
            }
        }
    }

    // A name both allowed and denied: seccomp decides per arguments or conditions; warden has
    // only the name, and allowing is what keeps the workload running.
    for (n, di) in &denied {
        if let Some(ai) = allowed.get(n) {
            report.push(Kind::Denied, format!("`{n}`: denied by syscalls[{di}] but allowed by syscalls[{ai}]; warden allows it (no per-argument or per-condition rules)"));
        }
    }

    let allow: Vec<String> = if sp.default_action == Action::Allow {
        table.iter().filter(|n| !denied.contains_key(**n) || allowed.contains_key(**n)).map(|n| n.to_string()).collect()
    } else {
        allowed.keys().cloned().collect()
    };

    if !unknown.is_empty() {
        let names: Vec<String> = unknown.keys().cloned().collect();
        report.push(
            Kind::UnknownName,
            format!(
                "{} name(s) not in the {} table (32-bit or other-architecture calls): {}",
                names.len(),
                opts.arch,
                names.join(", ")
            ),
        );
    }
    if sp.architectures.is_some() || sp.arch_map.is_some() {
        let arches: Vec<String> = sp
            .architectures
            .iter()
            .flatten()
            .cloned()
            .chain(sp.arch_map.iter().flatten().map(|m| m.architecture.clone()))
            .collect();
        report.push(
            Kind::Ignored,
            format!("architectures/archMap ({}): warden checks native {} calls only; 32-bit compat calls are always denied to confined processes", arches.join(", "), opts.arch),
        );
    }
    if let Some(f) = &sp.flags {
        report.push(Kind::Ignored, format!("flags {}: seccomp filter flags have no meaning for warden", f.join(", ")));
    }
    if sp.listener_path.is_some() || sp.listener_metadata.is_some() {
        report.push(Kind::Ignored, "listenerPath/listenerMetadata: warden has no user-space notification agent");
    }
    for k in sp.extra.keys() {
        report.push(Kind::Ignored, format!("unknown top-level field `{k}`"));
    }
    for (i, r) in sp.syscalls.iter().enumerate() {
        if let Some(c) = &r.comment {
            // Comments are kept out of the profile but shown: they often explain a condition.
            report.push(Kind::Ignored, format!("syscalls[{i}].comment: \"{c}\""));
        }
    }
    report.allowed = allow.len();
    Imported { syscalls: Syscalls { default, allow }, report }
}

/// The other way: a warden profile's syscall allow-list as an OCI seccomp profile, for a team
/// that wants the runtime's own seccomp (`securityContext.seccompProfile: Localhost`, the
/// Security Profiles Operator) to apply the syscall list. Only the syscall layer goes over:
/// files, execs, network and learn mode stay warden's. Returns the profile and notes (what was
/// added or left out, and why).
pub fn export(p: &super::Profile, kill: bool) -> Result<(SeccompProfile, Vec<String>), String> {
    let Some(spec) = &p.syscalls else {
        return Err(format!(
            "profile {:?} has no `syscalls` section: it restricts no syscalls, so there is no seccomp \
             allow-list to export",
            p.name
        ));
    };
    let (sys, _) = spec.to_allow();
    let mut notes = Vec::new();
    let (default_action, default_errno_ret) = match sys.default {
        DefaultAction::Log => {
            notes.push("the profile's default is `log`: exported as SCMP_ACT_LOG (nothing is refused)".to_string());
            (Action::Log, None)
        }
        DefaultAction::Kill if kill => (Action::KillProcess, None),
        DefaultAction::Kill => (Action::Errno, Some(libc::EPERM as u32)),
    };
    let mut names: BTreeSet<&str> = BTreeSet::new();
    let mut other_arch = Vec::new();
    for n in &sys.allow {
        match sysnames::lookup(n) {
            sysnames::Lookup::Host(_) => {
                names.insert(n.as_str());
            }
            _ => other_arch.push(n.as_str()),
        }
    }
    if !other_arch.is_empty() {
        notes.push(format!(
            "not syscalls of this architecture ({}), left out: {}",
            sysnames::HOST_ARCH,
            other_arch.join(", ")
        ));
    }
    // runc installs the filter and then execs the entrypoint: without execve the container
    // could not start (warden judges a container from its entrypoint on, after that exec).
    if default_action != Action::Log && !names.contains("execve") {
        names.insert("execve");
        notes.push("added execve: the runtime execs the entrypoint after installing the filter".to_string());
    }
    let arch = match sysnames::HOST_ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        other => return Err(format!("no seccomp architecture name for {other}")),
    };
    // Only the native architecture: a call through another (32-bit compat) entry fails the
    // architecture check, as under warden, which refuses every compat syscall.
    notes.push(format!(
        "{} syscalls allowed; everything else {}; architectures: {arch} only (32-bit compat calls refused, as warden does)",
        names.len(),
        match default_action {
            Action::Errno => "fails with EPERM",
            Action::KillProcess => "kills the process",
            _ => "is logged",
        }
    ));
    let sp = SeccompProfile {
        default_action,
        default_errno_ret,
        architectures: Some(vec![arch.to_string()]),
        arch_map: None,
        flags: None,
        listener_path: None,
        listener_metadata: None,
        syscalls: vec![Rule {
            names: names.into_iter().map(str::to_string).collect(),
            name: None,
            action: Action::Allow,
            errno_ret: None,
            args: Vec::new(),
            comment: Some(format!("exported from warden profile {}", p.name)),
            includes: None,
            excludes: None,
        }],
        extra: BTreeMap::new(),
    };
    Ok((sp, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ImportOptions {
        ImportOptions {
            arch: "x86_64".into(),
            caps: DOCKER_DEFAULT_CAPS.iter().map(|c| c.to_string()).collect(),
            caps_source: "Docker's default capability set".into(),
            kernel: Some(KernelVersion(6, 1, 0)),
            kernel_source: "test kernel".into(),
        }
    }

    fn parse(j: &str) -> SeccompProfile {
        serde_json::from_str(j).unwrap()
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(KernelVersion::parse("6.1.0-18-amd64"), Some(KernelVersion(6, 1, 0)));
        assert_eq!(KernelVersion::parse("4.8"), Some(KernelVersion(4, 8, 0)));
        assert_eq!(KernelVersion::parse("x"), None);
        assert!(KernelVersion::running().is_some());
    }

    #[test]
    fn conditions_are_evaluated_and_reported() {
        let sp = parse(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
              {"names":["read","chown32"],"action":"SCMP_ACT_ALLOW"},
              {"names":["arch_prctl"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64"]}},
              {"names":["swapcontext"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["ppc64le"]}},
              {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
              {"names":["chroot"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_CHROOT"]}},
              {"names":["ptrace"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"9.0"}},
              {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
              {"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38,"excludes":{"caps":["CAP_SYS_ADMIN"]}}
            ]}"#,
        );
        let imp = convert(&sp, &opts());
        assert_eq!(imp.syscalls.default, DefaultAction::Kill);
        assert_eq!(imp.syscalls.allow, vec!["arch_prctl", "chroot", "personality", "read"]);
        let r = imp.report.to_string();
        assert!(r.contains("chown32"), "{r}");
        assert!(r.contains("ppc64le"), "{r}");
        assert!(r.contains("needs CAP_SYS_ADMIN"), "{r}");
        assert!(r.contains("needs kernel 9.0"), "{r}");
        assert!(r.contains("`personality` (syscalls[6]): seccomp allows it only when arg0 == 8"), "{r}");
        assert!(r.contains("clone3") && r.contains("ENOSYS"), "{r}");
        // With CAP_SYS_ADMIN, mount is allowed and the clone3 deny rule no longer applies.
        let imp = convert(&sp, &opts().with_caps(&["sys_admin".into()]));
        assert!(imp.syscalls.allow.contains(&"mount".to_string()));
        assert!(!imp.syscalls.allow.contains(&"chroot".to_string()));
        assert_eq!(imp.report.of(Kind::Denied).count(), 0);
    }

    #[test]
    fn allow_default_becomes_table_minus_denied() {
        let sp = parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mount","umount2"],"action":"SCMP_ACT_KILL"}]}"#,
        );
        let imp = convert(&sp, &opts());
        assert!(!imp.syscalls.allow.contains(&"mount".to_string()));
        assert!(imp.syscalls.allow.contains(&"read".to_string()));
        assert_eq!(imp.syscalls.allow.len(), sysnames::names_on("x86_64").len() - 2);
    }

    #[test]
    fn log_default_maps_to_log() {
        let sp = parse(r#"{"defaultAction":"SCMP_ACT_LOG","flags":["SECCOMP_FILTER_FLAG_LOG"],"syscalls":[]}"#);
        let imp = convert(&sp, &opts());
        assert_eq!(imp.syscalls.default, DefaultAction::Log);
        assert!(imp.report.to_string().contains("SECCOMP_FILTER_FLAG_LOG"));
    }

    #[test]
    fn docker_default_imports() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/seccomp/docker-default.json");
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("skipped: {path} not present");
            return;
        };
        let sp: SeccompProfile = serde_json::from_str(&text).unwrap();
        let imp = convert(&sp, &opts());
        let allow = &imp.syscalls.allow;
        for must in [
            "read",
            "execve",
            "clone",
            "wait4",
            "rt_sigaction",
            "arch_prctl",
            "socket",
            "personality",
            "chroot",
            "ptrace",
        ] {
            assert!(allow.contains(&must.to_string()), "{must} missing");
        }
        for never in ["mount", "bpf", "init_module", "kexec_load", "reboot", "unshare"] {
            assert!(!allow.contains(&never.to_string()), "{never} allowed");
        }
        // Docker answers clone3 with ENOSYS so that glibc falls back to clone: allowed, said so.
        assert!(allow.contains(&"clone3".to_string()), "clone3 (threads) must run");
        let r = imp.report.to_string();
        assert!(r.contains("`clone3`") && r.contains("fall back to `clone`, which this profile allows"), "{r}");
        for expect in [
            "chown32",
            "`socket`",
            "`personality`",
            "`clone`",
            "needs CAP_SYS_ADMIN",
            "minKernel 4.8",
            "ENOSYS",
            "archMap",
        ] {
            assert!(r.contains(expect), "report lacks {expect}:\n{r}");
        }
    }

    #[test]
    fn export_round_trips_the_allow_list() {
        let p: super::super::Profile = serde_json::from_str(
            r#"{"name":"web","syscalls":{"default":"kill","allow":["read","write","exit_group","open"]}}"#,
        )
        .unwrap();
        let (sp, notes) = export(&p, false).unwrap();
        assert_eq!((sp.default_action, sp.default_errno_ret), (Action::Errno, Some(libc::EPERM as u32)));
        let names = &sp.syscalls[0].names;
        assert!(names.iter().any(|n| n == "execve"), "{names:?}");
        assert!(notes.iter().any(|n| n.contains("added execve")), "{notes:?}");
        // Imported back: the same allow-list (plus execve).
        let back = convert(&sp, &ImportOptions::host());
        for n in ["read", "write", "exit_group", "execve"] {
            assert!(back.syscalls.allow.iter().any(|a| a == n), "{n}: {:?}", back.syscalls.allow);
        }
        let (sp, _) = export(&p, true).unwrap();
        assert_eq!(sp.default_action, Action::KillProcess);
        let none: super::super::Profile = serde_json::from_str(r#"{"name":"n"}"#).unwrap();
        assert!(export(&none, false).unwrap_err().contains("no `syscalls` section"));
    }
}
