//! Workload strings made inert before warden writes them anywhere (issue 15, item 9).
//!
//! A confined process chooses its `comm` (prctl PR_SET_NAME), the paths it touches and, through
//! its pod spec or OCI annotations, the names warden logs. Written raw, a newline forges a log
//! line, an ESC or C1 sequence rewrites the operator's terminal, a bidi override makes a line
//! read differently from what it says. So every such string goes through [`Esc`] (or
//! [`escape_bytes`] for kernel bytes) on its way to a log, a terminal or a report:
//!
//! - C0 controls, DEL and C1 controls: `\n`, `\r`, `\t`, else `\xNN` (`\u{NN}` for C1, which are
//!   characters, not bytes);
//! - the bidi embedding, override and isolate characters U+202A-U+202E and U+2066-U+2069, and
//!   the line and paragraph separators U+2028/U+2029: `\u{202e}`;
//! - bytes that are not UTF-8 (kernel strings are bytes): `\xNN`.
//!
//! A backslash is left alone, so escaping is idempotent: a string escaped at the source (the
//! event's `comm` and `path`) and again at a sink reads the same. The price: a name that holds a
//! literal `\n` reads like an escaped newline. That cannot forge a line or move the cursor, which
//! is what this is for.
//!
//! JSON: serde_json escapes C0 controls, `"` and `\` but writes DEL, C1 and bidi characters raw.
//! [`json_inert`] writes those as `\uXXXX` too: the JSON value is unchanged for a parser, and the
//! bytes are inert on a terminal or in a log viewer.
use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Whether `c` must not reach a log or terminal raw: controls, bidi controls, and the line and
/// paragraph separators U+2028/U+2029 (some log viewers start a new line at them).
pub fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// The bidi embedding/override (U+202A-U+202E) and isolate (U+2066-U+2069) characters.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn write_escaped_char(f: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        c if (c as u32) < 0x80 => write!(f, "\\x{:02x}", c as u32),
        c => write!(f, "\\u{{{:x}}}", c as u32),
    }
}

/// Display wrapper: `format!("{}", Esc(name))` writes `name` with its control and bidi
/// characters escaped.
#[derive(Clone, Copy)]
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(needs_escape) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().expect("find returned a char boundary");
            write_escaped_char(f, c)?;
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

impl fmt::Debug for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// `s` escaped; borrowed when nothing needed escaping (the common case).
pub fn escape(s: &str) -> Cow<'_, str> {
    if s.contains(needs_escape) {
        Cow::Owned(Esc(s).to_string())
    } else {
        Cow::Borrowed(s)
    }
}

/// Kernel bytes (a comm, a path) as an escaped string: valid UTF-8 runs as [`Esc`] writes them,
/// each byte that is not UTF-8 as `\xNN` (not U+FFFD: the bytes stay readable).
pub fn escape_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        let _ = write!(out, "{}", Esc(chunk.valid()));
        for x in chunk.invalid() {
            let _ = write!(out, "\\x{x:02x}");
        }
    }
    out
}

/// JSON text (serde_json's output) with DEL, C1 and bidi characters written as `\uXXXX`
/// escapes. Those characters can only occur inside JSON strings, where `\uXXXX` means the same
/// character, so the value a parser reads is unchanged.
pub fn json_inert(json: &str) -> Cow<'_, str> {
    let bad = |c: char| c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c) || is_bidi_control(c);
    if !json.contains(bad) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if bad(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One formatted log record (a tracing-subscriber text line) made inert: every character that
/// needs escaping is escaped, except the record's final newline, and ESC when `ansi` (the
/// formatter's own colours: tracing-subscriber already escapes ESC inside field values, so with
/// colours on an ESC that reaches here is its own).
pub fn log_line_inert(line: &str, ansi: bool) -> Cow<'_, str> {
    let (body, nl) = match line.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (line, ""),
    };
    let bad = |c: char| needs_escape(c) && !(ansi && c == '\x1b');
    if !body.contains(bad) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in body.chars() {
        if bad(c) {
            let _ = write_escaped_char(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out.push_str(nl);
    Cow::Owned(out)
}

/// A tracing `MakeWriter` that makes each record inert before it reaches `W` (stderr): the one
/// place every log line passes, whatever field a future log call adds. tracing-subscriber's fmt
/// layer formats a record into one buffer and writes it with one `write_all`.
pub struct InertLogs<W> {
    inner: W,
    json: bool,
    ansi: bool,
}

impl<W> InertLogs<W> {
    /// `json`: records are JSON lines ([`json_inert`]); else text lines ([`log_line_inert`]).
    pub fn new(inner: W, json: bool, ansi: bool) -> Self {
        InertLogs { inner, json, ansi }
    }
}

pub struct InertWriter<W> {
    inner: W,
    json: bool,
    ansi: bool,
}

impl<W: std::io::Write> std::io::Write for InertWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = if self.json { json_inert(&text) } else { log_line_inert(&text, self.ansi) };
        self.inner.write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<'a, W> tracing_subscriber::fmt::MakeWriter<'a> for InertLogs<W>
where
    W: tracing_subscriber::fmt::MakeWriter<'a>,
{
    type Writer = InertWriter<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        InertWriter { inner: self.inner.make_writer(), json: self.json, ansi: self.ansi }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_newlines_esc_and_bidi_are_escaped() {
        assert_eq!(Esc("web-1").to_string(), "web-1");
        assert!(matches!(escape("web-1"), Cow::Borrowed(_)));
        assert_eq!(
            Esc("a\nwarden: INFO released\r\t\x1b[2J\x07\x7f\u{9b}31m\u{202e}gnp.exe\u{2066}x\u{2069}").to_string(),
            r"a\nwarden: INFO released\r\t\x1b[2J\x07\x7f\u{9b}31m\u{202e}gnp.exe\u{2066}x\u{2069}"
        );
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}'] {
            assert!(!escape(&c.to_string()).contains(c), "{c:?}");
        }
        // Printable non-ASCII (and the neighbours of the bidi ranges) stays as it is.
        assert_eq!(escape("café \u{2065}\u{206a}\u{200b} ü"), "café \u{2065}\u{206a}\u{200b} ü");
        assert_eq!(escape("a\u{2028}b\u{2029}"), r"a\u{2028}b\u{2029}");
        assert_eq!(format!("{:?}", Esc("a\nb")), r#""a\nb""#);
    }

    #[test]
    fn escaping_is_idempotent() {
        for s in ["a\nb\x1b[0m\u{202e}", r"already \n escaped", "plain"] {
            let once = escape(s).into_owned();
            assert_eq!(escape(&once), once);
        }
    }

    #[test]
    fn kernel_bytes_keep_invalid_utf8_readable() {
        assert_eq!(escape_bytes(b"ok"), "ok");
        assert_eq!(escape_bytes(b"a\xff\xfeb\n"), r"a\xff\xfeb\n");
        // A comm cut by the kernel inside a multi-byte character.
        assert_eq!(escape_bytes(b"caf\xc3"), r"caf\xc3");
        assert_eq!(escape_bytes("é\u{202e}".as_bytes()), r"é\u{202e}");
    }

    #[test]
    fn json_keeps_its_value_and_loses_raw_bidi_and_c1() {
        let v = serde_json::json!({"comm": "x\u{202e}y\u{7f}\u{85}\n\x1b"});
        let raw = serde_json::to_string(&v).unwrap();
        assert!(raw.contains('\u{202e}'), "serde_json writes bidi raw: {raw}");
        let inert = json_inert(&raw);
        assert!(!inert.chars().any(|c| c.is_control() || is_bidi_control(c)), "{inert}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&inert).unwrap(), v);
    }

    #[test]
    fn log_lines_keep_their_end_and_the_formatters_colours() {
        let line = "2026 WARN denied comm=a\nFORGED\u{202e}\n";
        assert_eq!(log_line_inert(line, false), "2026 WARN denied comm=a\\nFORGED\\u{202e}\n");
        let coloured = "\x1b[33mWARN\x1b[0m pod=x\ny\n";
        assert_eq!(log_line_inert(coloured, true), "\x1b[33mWARN\x1b[0m pod=x\\ny\n");
        assert_eq!(log_line_inert(coloured, false), "\\x1b[33mWARN\\x1b[0m pod=x\\ny\n");
        assert!(matches!(log_line_inert("clean\n", false), Cow::Borrowed(_)));
    }

    #[test]
    fn inert_writer_escapes_each_record() {
        use std::io::Write as _;
        let mut out = Vec::new();
        {
            let mut w = InertWriter { inner: &mut out, json: false, ansi: false };
            w.write_all(b"a comm=x\ny\n").unwrap();
            w.write_all(b"b\n").unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "a comm=x\\ny\nb\n");
    }
}
