//! `files` rules: path and access validation.
//!
//! Paths are compared as written by the kernel side (no symlink resolution here), so only
//! plain absolute paths are accepted: a relative path, a `..` or `.` component or an empty one
//! (`//`) would make a rule mean something other than what it says.
use super::compile::Access;

/// Longest path a rule may have, in bytes: the kernel path table's key holds
/// `FILE_PATH_MAX` bytes and an exact rule stores its path plus a NUL.
pub const MAX_PATH_LEN: usize = warden_common::FILE_PATH_MAX - 1;
/// Most file rules one profile (after `extends`) may have.
pub const MAX_FILE_RULES: usize = 1024;

/// Checks a rule's path; Err(reason).
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    if !path.starts_with('/') {
        return Err(format!("`{path}` is relative: paths must be absolute"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!("path is {} bytes long; the limit is {MAX_PATH_LEN}", path.len()));
    }
    // Components between slashes; a trailing `/` (directory prefix) leaves one empty last part.
    let inner = path[1..].strip_suffix('/').unwrap_or(&path[1..]);
    if inner.is_empty() {
        return Ok(()); // `/`
    }
    for comp in inner.split('/') {
        match comp {
            "" => return Err(format!("`{path}` has an empty component (`//`)")),
            ".." => return Err(format!("`{path}` has a `..` component")),
            "." => return Err(format!("`{path}` has a `.` component")),
            _ => {}
        }
    }
    Ok(())
}

/// Parses an access string (`r`, `rw`, `rx`, ...); Err(reason).
pub fn parse_access(s: &str) -> Result<Access, String> {
    if s.is_empty() {
        return Err("empty access: use any of r, w, x (omit the rule to allow nothing)".into());
    }
    let mut a = Access::default();
    for c in s.chars() {
        let bit = match c {
            'r' => Access::READ,
            'w' => Access::WRITE,
            'x' => Access::EXEC,
            other => return Err(format!("`{other}` is not an access letter (use r, w, x)")),
        };
        if a.0 & bit != 0 {
            return Err(format!("`{c}` appears twice in `{s}`"));
        }
        a.0 |= bit;
    }
    Ok(a)
}

/// Access letters of a use, in the profile format's order.
pub fn use_letters(read: bool, write: bool, exec: bool) -> String {
    let mut s = String::new();
    if read {
        s.push('r');
    }
    if write {
        s.push('w');
    }
    if exec {
        s.push('x');
    }
    s
}

pub(crate) const R: u8 = 1;
pub(crate) const W: u8 = 2;
pub(crate) const X: u8 = 4;

pub(crate) fn bits_letters(b: u8) -> String {
    use_letters(b & R != 0, b & W != 0, b & X != 0)
}

pub(crate) fn letters_bits(s: &str) -> u8 {
    s.chars().fold(0, |b, c| {
        b | match c {
            'r' => R,
            'w' => W,
            'x' => X,
            _ => 0,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in ["/", "/etc/", "/etc/passwd", "/var/cache/web/", "/a..b/c"] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        let bad = |p: &str, why: &str| {
            let e = check_path(p).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        };
        bad("", "empty path");
        bad("etc/passwd", "relative");
        bad("/etc/../root", "`..`");
        bad("/etc/..", "`..`");
        bad("/etc/./x", "`.` component");
        bad("/etc//x", "empty component");
        bad("/etc/\0", "NUL");
        bad(&format!("/{}", "a".repeat(251)), "252 bytes");
        assert!(check_path(&format!("/{}", "a".repeat(250))).is_ok(), "251 bytes fit the kernel key");
    }

    #[test]
    fn access() {
        assert_eq!(parse_access("rwx").unwrap().0, Access::READ | Access::WRITE | Access::EXEC);
        assert_eq!(parse_access("xr").unwrap().0, Access::READ | Access::EXEC);
        assert!(parse_access("").unwrap_err().contains("empty"));
        assert!(parse_access("rq").unwrap_err().contains("`q`"));
        assert!(parse_access("rr").unwrap_err().contains("twice"));
        assert!(parse_access("R").unwrap_err().contains("`R`"));
    }
}
