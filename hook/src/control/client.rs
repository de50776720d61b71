//! The client side of the control socket: the CLI (`status`, `events`, `--container`
//! look-ups) and `warden oci-hook`.
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};

use super::protocol::{ContainerInfo, Request};

pub struct Client {
    reader: BufReader<UnixStream>,
    /// A line begun before a read timed out, completed by the next `next`.
    partial: String,
    pub path: PathBuf,
}

impl Client {
    /// `Ok(None)` when no daemon listens at `path` (no socket file, or a stale one).
    pub fn connect(path: &Path) -> Result<Option<Client>> {
        match UnixStream::connect(path) {
            Ok(s) => Ok(Some(Client { reader: BufReader::new(s), partial: String::new(), path: path.to_path_buf() })),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(e).with_context(|| {
                format!("connecting to the warden daemon at {} (the control socket is root-only)", path.display())
            }),
            Err(e) => Err(e).with_context(|| format!("connecting to the warden daemon at {}", path.display())),
        }
    }

    /// Sends `req` and returns the first answer line; an `ok: false` answer is an error.
    pub fn request(&mut self, req: &Request, timeout: Duration) -> Result<Value> {
        let s = self.reader.get_mut();
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        // A refused peer is answered and hung up on before its request is read: the write can
        // fail (EPIPE) while the refusal waits to be read.
        let sent = s.write_all(&line);
        let v = match (self.next_line(), sent) {
            (Ok(Some(v)), _) => v,
            (_, Err(e)) => return Err(e).context("sending the request"),
            (Ok(None), Ok(())) => bail!("the daemon closed the connection without an answer"),
            (Err(e), Ok(())) => return Err(e),
        };
        if v["ok"] != json!(true) {
            return Err(super::protocol::Refusal {
                message: v["error"].as_str().unwrap_or("the daemon refused the request").to_string(),
                violation: v["violation"] == json!(true),
            }
            .into());
        }
        Ok(v)
    }

    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<()> {
        Ok(self.reader.get_mut().set_read_timeout(t)?)
    }

    /// The next answer line; `None` at end of stream. A read timeout is an error whose source
    /// is the io::Error (WouldBlock/TimedOut); what was read of the line so far is kept.
    pub fn next_line(&mut self) -> Result<Option<Value>> {
        let n = self.reader.read_line(&mut self.partial).context("reading from the warden daemon")?;
        if n == 0 && self.partial.is_empty() {
            return Ok(None);
        }
        let line = std::mem::take(&mut self.partial);
        Ok(Some(serde_json::from_str(line.trim()).context("the daemon's answer is not JSON")?))
    }
}

/// One request to the daemon at `socket`; an error if none is running.
pub fn call(socket: &Path, req: &Request) -> Result<Value> {
    let mut c = Client::connect(socket)?
        .ok_or_else(|| anyhow!("the warden daemon is not running (no control socket at {})", socket.display()))?;
    c.request(req, Duration::from_secs(30))
}

/// The cgroup id of a confined container, by id or unique id prefix, from the daemon.
pub fn container_cgroup(socket: &Path, id: &str) -> Result<(u64, ContainerInfo)> {
    let v = call(socket, &Request::Container { id: id.to_string() })
        .with_context(|| format!("looking up container {id}"))?;
    let info: ContainerInfo =
        serde_json::from_value(v["container"].clone()).context("the daemon's container answer")?;
    Ok((info.cgroup_id, info))
}
