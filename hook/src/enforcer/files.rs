//! Files rules in kernel form: one LPM-trie entry per rule, keyed by (profile id, path bytes),
//! valued by access bits (r=1, w=2, x=4).
//!
//! - A directory rule ends with `/` and is stored as exactly those bytes (`/etc/`: prefix
//!   length 32 + 5*8 bits), so it covers `/etc/passwd` and `/etc/ssl/x`, never `/etcx`.
//! - An exact rule is the path plus its terminating NUL, so it matches that path only.
//! - Every directory rule's access is folded into each longer rule it contains, so the kernel's
//!   single longest-prefix lookup gives the complete answer: cost per judged operation is one
//!   trie lookup (O(key bits)), independent of the number of rules.
//! - Limits: a rule path is at most 251 bytes (LPM key data is 256 bytes, 4 hold the profile
//!   id, exact rules need their NUL); the trie holds 65,536 rules over all profile versions.
//!   Paths longer than 252 bytes at run time can only be allowed by a directory rule (their
//!   first 252 bytes are looked up), which is exact.
//! - Rules match the path the kernel resolved (symlinks followed, `..` gone), relative to the
//!   process's root (a container sees its own `/`). Folding means a longer rule can add
//!   access, never remove it.
use anyhow::{bail, Result};
use warden_common::{access, FileKey, FILE_PATH_MAX};

/// One trie entry: the key's path bytes (a directory rule's bytes, or an exact path + NUL) and
/// the access granted (folded).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileEntry {
    pub key: Vec<u8>,
    pub access: u8,
}

impl FileEntry {
    /// LPM prefix length in bits, counting the 32 bits of the profile id.
    pub fn prefix_len(&self) -> u32 {
        32 + 8 * self.key.len() as u32
    }

    pub fn file_key(&self, profile_id: u32) -> FileKey {
        let mut k = FileKey { profile_id_be: profile_id.to_be_bytes(), ..Default::default() };
        k.path[..self.key.len()].copy_from_slice(&self.key);
        k
    }

    pub fn is_dir(&self) -> bool {
        self.key.last() == Some(&b'/')
    }

    /// The rule as written (`/etc/`, `/usr/bin/env`).
    pub fn path(&self) -> String {
        let b = self.key.strip_suffix(&[0]).unwrap_or(&self.key);
        String::from_utf8_lossy(b).into_owned()
    }
}

/// Access bits from `r`, `w`, `x` letters (any order, e.g. `rx`).
pub fn parse_access(s: &str) -> Result<u8> {
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => access::READ,
            'w' => access::WRITE,
            'x' => access::EXEC,
            _ => bail!("access `{s}`: only the letters r, w and x are allowed"),
        };
    }
    if bits == 0 {
        bail!("access is empty: give at least one of r, w, x");
    }
    Ok(bits)
}

pub fn access_string(bits: u8) -> String {
    let mut s = String::new();
    for (b, c) in [(access::READ, 'r'), (access::WRITE, 'w'), (access::EXEC, 'x')] {
        if bits & b != 0 {
            s.push(c);
        }
    }
    s
}

/// Checks one rule path: absolute, no `.`/`..`/empty components, no NUL, fits the key.
pub fn validate_path(path: &str) -> Result<()> {
    if !path.starts_with('/') {
        bail!("`{path}` is not absolute");
    }
    if path.contains('\0') {
        bail!("`{}` contains a NUL byte", path.escape_debug());
    }
    let body = path.strip_suffix('/').unwrap_or(path);
    if !body.is_empty() {
        for comp in body[1..].split('/') {
            match comp {
                "" => bail!("`{path}` has an empty component (`//`): the kernel never reports such paths"),
                "." | ".." => bail!(
                    "`{path}` has a `{comp}` component: rules match the path the kernel resolved, write it without `.`/`..`"
                ),
                _ => {}
            }
        }
    }
    if path.len() > FILE_PATH_MAX - 1 {
        bail!("`{path}` is {} bytes; a files rule holds at most {} bytes", path.len(), FILE_PATH_MAX - 1);
    }
    Ok(())
}

/// Compiles files rules (path, access bits) into trie entries: validated, duplicates merged,
/// directory rules folded into every longer rule they contain. Errors list every bad rule.
pub fn compile_files(rules: &[(String, u8)]) -> Result<Vec<FileEntry>> {
    let mut errors = Vec::new();
    let mut merged: std::collections::BTreeMap<Vec<u8>, u8> = Default::default();
    for (i, (path, bits)) in rules.iter().enumerate() {
        if let Err(e) = validate_path(path) {
            errors.push(format!("files[{i}]: {e}"));
            continue;
        }
        if *bits == 0 || *bits & !(access::READ | access::WRITE | access::EXEC) != 0 {
            errors.push(format!("files[{i}]: `{path}`: access bits {bits:#x} (want a non-empty mix of r=1, w=2, x=4)"));
            continue;
        }
        let mut key = path.as_bytes().to_vec();
        if !path.ends_with('/') {
            key.push(0);
        }
        *merged.entry(key).or_default() |= bits;
    }
    if !errors.is_empty() {
        bail!("invalid files rules:\n  {}", errors.join("\n  "));
    }
    Ok(fold(merged))
}

/// Folds every directory key's access into each longer key it is a prefix of, in one pass:
/// in byte order every key is directly followed by the keys it is a prefix of, so a stack
/// holds the directories containing the current key, each with its folded access (its own
/// and every containing directory's).
fn fold(merged: std::collections::BTreeMap<Vec<u8>, u8>) -> Vec<FileEntry> {
    let mut out = Vec::with_capacity(merged.len());
    let mut dirs: Vec<(Vec<u8>, u8)> = Vec::new();
    for (key, own) in merged {
        while dirs.last().is_some_and(|(d, _)| !key.starts_with(d)) {
            dirs.pop();
        }
        let access = own | dirs.last().map_or(0, |(_, a)| *a);
        if key.last() == Some(&b'/') {
            dirs.push((key.clone(), access));
        }
        out.push(FileEntry { key, access });
    }
    out
}

/// What the kernel would answer for `path` (as the kernel reports it) needing `need`: the
/// longest entry that is a prefix of the path bytes + NUL. The userspace twin of the eBPF
/// lookup, for tests and `warden` diagnostics.
pub fn allows(entries: &[FileEntry], path: &str, need: u8) -> bool {
    let mut bytes = path.as_bytes().to_vec();
    bytes.push(0);
    bytes.truncate(FILE_PATH_MAX);
    entries
        .iter()
        .filter(|e| bytes.starts_with(&e.key))
        .max_by_key(|e| e.key.len())
        .is_some_and(|e| e.access & need == need)
}

/// The trie entries of a compiled profile's `files` rules (the profile module validates and
/// merges them; this adds the kernel's limits and the folding).
pub fn entries(rules: &[crate::profile::FileRule]) -> Result<Vec<FileEntry>> {
    let pairs: Vec<(String, u8)> = rules.iter().map(|r| (r.path.clone(), r.access.0)).collect();
    compile_files(&pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(r: &[(&str, &str)]) -> Vec<(String, u8)> {
        r.iter().map(|(p, a)| (p.to_string(), parse_access(a).unwrap())).collect()
    }

    #[test]
    fn directory_and_exact_keys() {
        let e = compile_files(&rules(&[("/etc/", "r"), ("/usr/bin/env", "rx")])).unwrap();
        assert_eq!(e[0].key, b"/etc/");
        assert_eq!(e[0].prefix_len(), 32 + 40);
        assert_eq!(e[1].key, b"/usr/bin/env\0");
        assert_eq!(e[1].path(), "/usr/bin/env");
        assert!(e[0].is_dir() && !e[1].is_dir());
    }

    #[test]
    fn prefix_boundaries() {
        let e = compile_files(&rules(&[("/etc/", "r"), ("/bin/sh", "rx")])).unwrap();
        assert!(allows(&e, "/etc/passwd", access::READ));
        assert!(allows(&e, "/etc/ssl/certs/x", access::READ));
        assert!(!allows(&e, "/etcx/passwd", access::READ));
        assert!(!allows(&e, "/etc", access::READ), "the directory rule covers what is below /etc/");
        assert!(!allows(&e, "/etc/passwd", access::WRITE));
        assert!(allows(&e, "/bin/sh", access::EXEC));
        assert!(!allows(&e, "/bin/sh2", access::READ), "an exact rule is not a prefix");
        assert!(!allows(&e, "/bin/s", access::READ));
    }

    #[test]
    fn directory_access_is_folded_into_longer_rules() {
        let e = compile_files(&rules(&[("/", "r"), ("/var/", "w"), ("/var/log/app.log", "x"), ("/var/cache/", "r")]))
            .unwrap();
        let get = |k: &[u8]| e.iter().find(|x| x.key == k).unwrap().access;
        assert_eq!(get(b"/"), access::READ);
        assert_eq!(get(b"/var/"), access::READ | access::WRITE);
        assert_eq!(get(b"/var/log/app.log\0"), access::READ | access::WRITE | access::EXEC);
        assert_eq!(get(b"/var/cache/"), access::READ | access::WRITE);
        assert!(allows(&e, "/var/cache/x", access::READ | access::WRITE));
        assert!(allows(&e, "/usr/bin/ls", access::READ));
        assert!(!allows(&e, "/usr/bin/ls", access::EXEC));
    }

    #[test]
    fn duplicates_merge() {
        let e = compile_files(&rules(&[("/data/", "r"), ("/data/", "w")])).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].access, access::READ | access::WRITE);
    }

    #[test]
    fn bad_rules_are_errors() {
        for (p, why) in [
            ("etc/", "not absolute"),
            ("/etc/../root", "`..`"),
            ("/etc/./x", "`.`"),
            ("/etc//x", "empty component"),
            ("/a\0b", "NUL"),
        ] {
            let err = compile_files(&[(p.to_string(), 1)]).unwrap_err().to_string();
            assert!(err.contains(why), "{p}: {err}");
        }
        let long = format!("/{}", "a".repeat(FILE_PATH_MAX - 1));
        assert!(compile_files(&[(long, 1)]).unwrap_err().to_string().contains("at most 251"));
        let ok = format!("/{}", "a".repeat(FILE_PATH_MAX - 2));
        assert_eq!(compile_files(&[(ok, 1)]).unwrap()[0].key.len(), FILE_PATH_MAX);
        assert!(compile_files(&[("/x".into(), 0)]).is_err());
        assert!(compile_files(&[("/x".into(), 8)]).is_err());
        assert!(parse_access("rq").is_err());
        assert_eq!(parse_access("xr").unwrap(), access::READ | access::EXEC);
        assert_eq!(access_string(7), "rwx");
    }

    #[test]
    fn long_paths_are_judged_by_directory_rules_only() {
        let e = compile_files(&rules(&[("/deep/", "r")])).unwrap();
        let long = format!("/deep/{}", "x".repeat(400));
        assert!(allows(&e, &long, access::READ));
        assert!(!allows(&e, &format!("/other/{}", "x".repeat(400)), access::READ));
    }

    /// The folding before it was made a one-pass stack walk (every key against every
    /// directory), kept as the reference.
    fn fold_reference(merged: &std::collections::BTreeMap<Vec<u8>, u8>) -> Vec<FileEntry> {
        let dirs: Vec<(Vec<u8>, u8)> =
            merged.iter().filter(|(k, _)| k.last() == Some(&b'/')).map(|(k, v)| (k.clone(), *v)).collect();
        merged
            .iter()
            .map(|(k, v)| {
                let folded = dirs.iter().filter(|(d, _)| k.starts_with(d)).fold(*v, |acc, (_, a)| acc | a);
                FileEntry { key: k.clone(), access: folded }
            })
            .collect()
    }

    #[test]
    fn folding_matches_the_quadratic_reference() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut below = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        // Short components from a tiny alphabet: many shared prefixes, `/a/` vs `/a-/` vs `/ab`.
        let comps = ["a", "b", "ab", "a-", "a0", "b.c"];
        for _ in 0..3000 {
            let mut merged = std::collections::BTreeMap::new();
            for _ in 0..below(30) {
                let mut key = b"/".to_vec();
                for _ in 0..below(4) {
                    key.extend_from_slice(comps[below(comps.len() as u64) as usize].as_bytes());
                    key.push(b'/');
                }
                if below(2) == 0 && key.len() > 1 {
                    // An exact rule: drop the trailing `/`, add the NUL.
                    key.pop();
                    key.push(0);
                }
                *merged.entry(key).or_insert(0) |= 1 << below(3);
            }
            assert_eq!(fold(merged.clone()), fold_reference(&merged), "{merged:?}");
        }
    }

    #[test]
    fn root_rule_covers_everything() {
        let e = compile_files(&rules(&[("/", "rwx")])).unwrap();
        assert!(allows(&e, "/", access::READ));
        assert!(allows(&e, "/anything/at/all", access::WRITE | access::EXEC));
    }
}
