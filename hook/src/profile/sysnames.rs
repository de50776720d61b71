//! Syscall names: the tables of the `syscalls` crate for the architectures a profile may be
//! written for (x86_64, aarch64), and the host's table, whose numbers the kernel bitmap uses.
//!
//! A profile is meant to be portable: a name that exists on one supported architecture but not
//! on the host (`open` on aarch64) is skipped with a note, not an error; only a name no table
//! knows is an error.
use std::str::FromStr as _;

/// The host architecture, as Rust names it (`x86_64`, `aarch64`).
pub const HOST_ARCH: &str = std::env::consts::ARCH;

/// Architectures whose names a profile may use.
pub const ARCHES: &[&str] = &["x86_64", "aarch64"];

/// Number of `name` on `arch` (one of [`ARCHES`], or the host's).
pub fn number_on(arch: &str, name: &str) -> Option<usize> {
    if arch == HOST_ARCH {
        return host_number(name);
    }
    match arch {
        "x86_64" => syscalls::x86_64::Sysno::from_str(name).ok().map(|s| s.id() as usize),
        "aarch64" => syscalls::aarch64::Sysno::from_str(name).ok().map(|s| s.id() as usize),
        _ => None,
    }
}

/// Number of `name` on the host.
pub fn host_number(name: &str) -> Option<usize> {
    syscalls::Sysno::from_str(name).ok().map(|s| s.id() as usize)
}

/// Name of host syscall number `n`.
pub fn host_name(n: usize) -> Option<&'static str> {
    syscalls::Sysno::new(n).map(|s| s.name())
}

/// Every name of `arch`'s table (one of [`ARCHES`] or the host's).
pub fn names_on(arch: &str) -> Vec<&'static str> {
    if arch == HOST_ARCH {
        return syscalls::Sysno::iter().map(|s| s.name()).collect();
    }
    match arch {
        "x86_64" => syscalls::x86_64::Sysno::iter().map(|s| s.name()).collect(),
        "aarch64" => syscalls::aarch64::Sysno::iter().map(|s| s.name()).collect(),
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The host's number.
    Host(usize),
    /// Not a host syscall, but one of these supported architectures has it.
    OtherArch(Vec<&'static str>),
    /// No table knows it; close names, best first.
    Unknown(Vec<&'static str>),
}

pub fn lookup(name: &str) -> Lookup {
    if let Some(n) = host_number(name) {
        return Lookup::Host(n);
    }
    let others: Vec<&'static str> = ARCHES.iter().copied().filter(|a| number_on(a, name).is_some()).collect();
    if !others.is_empty() {
        return Lookup::OtherArch(others);
    }
    Lookup::Unknown(suggestions(name))
}

/// Every name of the host's and [`ARCHES`]' tables, sorted, once, with its length in chars.
fn all_names() -> &'static [(&'static str, usize)] {
    static ALL: std::sync::OnceLock<Vec<(&'static str, usize)>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<&'static str> = names_on(HOST_ARCH);
        for a in ARCHES {
            all.extend(names_on(a));
        }
        all.sort_unstable();
        all.dedup();
        all.into_iter().map(|s| (s, s.chars().count())).collect()
    })
}

/// Up to three known names within edit distance 2 of `name`.
pub fn suggestions(name: &str) -> Vec<&'static str> {
    let len = name.chars().count();
    // The edit distance is at least the difference in length: only names within 2 of it can
    // be close, and the distance is computed for those only.
    let mut close: Vec<(usize, &'static str)> = all_names()
        .iter()
        .filter(|(_, l)| l.abs_diff(len) <= 2)
        .map(|(s, _)| (strsim::levenshtein(name, s), *s))
        .filter(|(d, _)| *d <= 2)
        .collect();
    close.sort();
    close.into_iter().take(3).map(|(_, s)| s).collect()
}

/// "unknown syscall `x` (did you mean ...?)"
pub fn unknown_message(name: &str, close: &[&str]) -> String {
    let hint = if close.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", close.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
    };
    format!("unknown syscall `{name}`: not in the {} tables{hint}", ARCHES.join(" or "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_differ_per_arch() {
        assert!(number_on("x86_64", "open").is_some());
        assert!(number_on("aarch64", "open").is_none());
        assert_eq!(number_on("x86_64", "read"), Some(0));
        assert_eq!(number_on("aarch64", "read"), Some(63));
    }

    /// The suggestions before the table was kept and filtered by length, as the reference.
    fn suggestions_reference(name: &str) -> Vec<&'static str> {
        let mut all: Vec<&'static str> = names_on(HOST_ARCH);
        for a in ARCHES {
            all.extend(names_on(a));
        }
        all.sort_unstable();
        all.dedup();
        let mut close: Vec<(usize, &'static str)> =
            all.into_iter().map(|s| (strsim::levenshtein(name, s), s)).filter(|(d, _)| *d <= 2).collect();
        close.sort();
        close.into_iter().take(3).map(|(_, s)| s).collect()
    }

    #[test]
    fn suggestions_match_the_reference() {
        let mut tried = 0;
        for known in all_names().iter().map(|(s, _)| *s).step_by(7) {
            // Deletions, insertions, substitutions and a non-ASCII letter near real names.
            let variants = [
                known[1..].to_string(),
                format!("{known}x"),
                format!("x{known}y"),
                known.replacen('e', "é", 1),
                known.chars().rev().collect(),
                String::new(),
                "opnat".to_string(),
            ];
            for v in variants {
                assert_eq!(suggestions(&v), suggestions_reference(&v), "{v}");
                tried += 1;
            }
        }
        assert!(tried > 200);
    }

    #[test]
    fn lookup_classifies() {
        assert!(matches!(lookup("read"), Lookup::Host(_)));
        assert!(matches!(lookup("chown32"), Lookup::Unknown(_)));
        match lookup("opnat") {
            Lookup::Unknown(s) => assert!(s.contains(&"openat"), "{s:?}"),
            other => panic!("{other:?}"),
        }
        #[cfg(target_arch = "aarch64")]
        assert_eq!(lookup("open"), Lookup::OtherArch(vec!["x86_64"]));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(lookup("renameat"), Lookup::Host(264));
    }
}
