//! NRI's connection multiplexer: several logical byte streams over the one unix-socket
//! connection between runtime and plugin. Every frame is
//! `conn id (u32, big endian) | payload length (u32, big endian) | payload`.
//! Connection 1 carries the Plugin service (runtime = ttrpc client), connection 2 the Runtime
//! service (plugin = ttrpc client). Id 0 is reserved. Opening a connection is implicit.
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

pub const HEADER_LEN: usize = 8;
/// Largest payload the multiplexer accepts in one frame (as the reference implementation).
pub const MAX_PAYLOAD: usize = 1 << 24;
/// Payload chunk size for frames we send. The Go side reads each logical connection through a
/// 4 KiB buffered reader and refuses (ENOMEM) a frame larger than the buffer it reads into, so
/// frames never exceed this; a ttrpc message larger than this spans several frames.
pub const WRITE_CHUNK: usize = 4096;

/// Logical connection ids.
pub const PLUGIN_SERVICE_CONN: u32 = 1;
pub const RUNTIME_SERVICE_CONN: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("multiplexed frame for connection {conn} announces {len} bytes, more than the {MAX_PAYLOAD}-byte limit")]
    Oversized { conn: u32, len: usize },
    #[error("multiplexer trunk closed in the middle of a frame")]
    Truncated,
    #[error("multiplexer trunk I/O: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub conn: u32,
    pub payload: Vec<u8>,
}

/// Appends `payload` for `conn` to `out` as one or more frames of at most [`WRITE_CHUNK`] bytes.
pub fn encode(conn: u32, payload: &[u8], out: &mut Vec<u8>) {
    for chunk in payload.chunks(WRITE_CHUNK) {
        out.extend_from_slice(&conn.to_be_bytes());
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

/// Reads one frame. `Ok(None)` on a clean end of stream at a frame boundary; a frame whose
/// announced length exceeds [`MAX_PAYLOAD`] is refused before anything is allocated for it
/// (the stream cannot be trusted after that, so the caller drops the connection).
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, MuxError> {
    let mut hdr = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut hdr[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(MuxError::Truncated) };
        }
        got += n;
    }
    let conn = u32::from_be_bytes(hdr[0..4].try_into().expect("4 bytes"));
    let len = u32::from_be_bytes(hdr[4..8].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Err(MuxError::Oversized { conn, len });
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => MuxError::Truncated,
        _ => MuxError::Io(e),
    })?;
    Ok(Some(Frame { conn, payload }))
}

/// Writes `payload` for `conn` (chunked, see [`encode`]) and flushes.
pub async fn write_frames<W: AsyncWrite + Unpin>(w: &mut W, conn: u32, payload: &[u8]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(payload.len() + HEADER_LEN * (1 + payload.len() / WRITE_CHUNK));
    encode(conn, payload, &mut buf);
    w.write_all(&buf).await?;
    w.flush().await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// An AsyncRead that hands out at most `step` bytes per read: every partial-read path.
    pub(crate) struct Trickle {
        pub data: Vec<u8>,
        pub pos: usize,
        pub step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = self.step.min(buf.remaining()).min(self.data.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.data[start..start + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_round_trip_through_one_byte_reads() {
        let mut wire = Vec::new();
        encode(1, b"hello", &mut wire);
        encode(2, b"", &mut wire); // nothing to send: no frame
        wire.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0]); // an empty frame is still valid input
        encode(2, b"world", &mut wire);
        assert_eq!(&wire[..8], &[0, 0, 0, 1, 0, 0, 0, 5]);
        let mut r = Trickle { data: wire, pos: 0, step: 1 };
        assert_eq!(read_frame(&mut r).await.unwrap(), Some(Frame { conn: 1, payload: b"hello".to_vec() }));
        assert_eq!(read_frame(&mut r).await.unwrap(), Some(Frame { conn: 2, payload: vec![] }));
        assert_eq!(read_frame(&mut r).await.unwrap(), Some(Frame { conn: 2, payload: b"world".to_vec() }));
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
    }

    #[test]
    fn large_payloads_are_chunked() {
        let payload = vec![7u8; WRITE_CHUNK * 2 + 10];
        let mut wire = Vec::new();
        encode(2, &payload, &mut wire);
        assert_eq!(wire.len(), payload.len() + 3 * HEADER_LEN);
        let lens: Vec<u32> = [0, WRITE_CHUNK + 8, 2 * (WRITE_CHUNK + 8)]
            .iter()
            .map(|&o| u32::from_be_bytes(wire[o + 4..o + 8].try_into().unwrap()))
            .collect();
        assert_eq!(lens, vec![WRITE_CHUNK as u32, WRITE_CHUNK as u32, 10]);
    }

    #[tokio::test]
    async fn oversized_frame_is_refused() {
        let mut wire = vec![0, 0, 0, 1];
        wire.extend_from_slice(&((MAX_PAYLOAD + 1) as u32).to_be_bytes());
        let mut r = Trickle { data: wire, pos: 0, step: 64 };
        match read_frame(&mut r).await {
            Err(MuxError::Oversized { conn: 1, len }) => assert_eq!(len, MAX_PAYLOAD + 1),
            other => panic!("expected Oversized, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn truncated_frames_are_errors() {
        let mut wire = Vec::new();
        encode(1, b"hello", &mut wire);
        for cut in [3, 8, 10] {
            let mut r = Trickle { data: wire[..cut].to_vec(), pos: 0, step: 2 };
            assert!(matches!(read_frame(&mut r).await, Err(MuxError::Truncated)), "cut at {cut}");
        }
    }
}
