//! ttrpc framing, as used by containerd: a 10-byte header
//! `length (u32 BE) | stream id (u32 BE) | type (u8) | flags (u8)` then `length` bytes of
//! protobuf: a [`Request`] (type 1) or a [`Response`] (type 2). Client-initiated stream ids
//! are odd and strictly increasing. Messages above [`MAX_MESSAGE`] are refused.
//! Over NRI a ttrpc connection is a byte stream inside the multiplexer, so a message may span
//! several multiplexer frames, or one frame may hold several messages: [`Decoder`] reassembles.
use bytes::{Buf as _, BytesMut};

pub const HEADER_LEN: usize = 10;
/// ttrpc's message size limit (4 MiB).
pub const MAX_MESSAGE: usize = 4 << 20;

pub const TYPE_REQUEST: u8 = 1;
pub const TYPE_RESPONSE: u8 = 2;
pub const TYPE_DATA: u8 = 3;
/// Set on unary requests: the client sends nothing more on this stream.
pub const FLAG_REMOTE_CLOSED: u8 = 0x1;

/// gRPC status codes used here.
pub mod code {
    pub const OK: i32 = 0;
    pub const UNKNOWN: i32 = 2;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNIMPLEMENTED: i32 = 12;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub length: u32,
    pub stream_id: u32,
    pub kind: u8,
    pub flags: u8,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&self.length.to_be_bytes());
        h[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        h[8] = self.kind;
        h[9] = self.flags;
        h
    }
    pub fn decode(b: &[u8; HEADER_LEN]) -> Self {
        Header {
            length: u32::from_be_bytes(b[0..4].try_into().expect("4 bytes")),
            stream_id: u32::from_be_bytes(b[4..8].try_into().expect("4 bytes")),
            kind: b[8],
            flags: b[9],
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(string, tag = "1")]
    pub service: String,
    #[prost(string, tag = "2")]
    pub method: String,
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    #[prost(int64, tag = "4")]
    pub timeout_nano: i64,
    #[prost(message, repeated, tag = "5")]
    pub metadata: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
}

/// google.rpc.Status without `details` (skipped on decode).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

impl Status {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Status { code, message: message.into() }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("ttrpc message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    Oversized(usize),
}

/// One whole ttrpc message: header plus body.
pub fn encode_message(stream_id: u32, kind: u8, flags: u8, body: &[u8]) -> Result<Vec<u8>, EncodeError> {
    if body.len() > MAX_MESSAGE {
        return Err(EncodeError::Oversized(body.len()));
    }
    let h = Header { length: body.len() as u32, stream_id, kind, flags };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(body);
    Ok(out)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Message {
        header: Header,
        body: Vec<u8>,
    },
    /// A message larger than [`MAX_MESSAGE`]: its body is skipped without being buffered,
    /// the caller answers the stream with RESOURCE_EXHAUSTED (as ttrpc does).
    Oversized(Header),
}

/// Reassembles ttrpc messages from arbitrary chunks of one byte stream.
#[derive(Default)]
pub struct Decoder {
    buf: BytesMut,
    /// Bytes of an oversized body still to drop.
    skip: usize,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        let mut data = data;
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if the buffered bytes hold one.
    pub fn next_message(&mut self) -> Option<Decoded> {
        if self.skip > 0 {
            let n = self.skip.min(self.buf.len());
            self.buf.advance(n);
            self.skip -= n;
            if self.skip > 0 {
                return None;
            }
        }
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let header = Header::decode(self.buf[..HEADER_LEN].try_into().expect("header length"));
        let len = header.length as usize;
        if len > MAX_MESSAGE {
            self.buf.advance(HEADER_LEN);
            self.skip = len;
            let n = self.skip.min(self.buf.len());
            self.buf.advance(n);
            self.skip -= n;
            return Some(Decoded::Oversized(header));
        }
        if self.buf.len() < HEADER_LEN + len {
            return None;
        }
        self.buf.advance(HEADER_LEN);
        let body = self.buf.split_to(len).to_vec();
        Some(Decoded::Message { header, body })
    }

    /// Bytes buffered but not yet returned (a partial message).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn request(id: u32, method: &str) -> Vec<u8> {
        let req =
            Request { service: "svc".into(), method: method.into(), payload: vec![1, 2, 3], ..Default::default() };
        encode_message(id, TYPE_REQUEST, FLAG_REMOTE_CLOSED, &req.encode_to_vec()).unwrap()
    }

    #[test]
    fn header_layout() {
        let h = Header { length: 0x0102_0304, stream_id: 5, kind: TYPE_RESPONSE, flags: 0 };
        assert_eq!(h.encode(), [1, 2, 3, 4, 0, 0, 0, 5, 2, 0]);
        assert_eq!(Header::decode(&h.encode()), h);
    }

    #[test]
    fn reassembles_across_any_split() {
        let mut wire = request(1, "Configure");
        wire.extend(request(3, "Synchronize"));
        for step in [1, 2, 7, 10, 11, wire.len()] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for chunk in wire.chunks(step) {
                d.push(chunk);
                while let Some(m) = d.next_message() {
                    got.push(m);
                }
            }
            assert_eq!(got.len(), 2, "step {step}");
            assert_eq!(d.pending(), 0);
            let Decoded::Message { header, body } = &got[1] else { panic!("not a message") };
            assert_eq!(header.stream_id, 3);
            assert_eq!(header.flags, FLAG_REMOTE_CLOSED);
            assert_eq!(Request::decode(body.as_slice()).unwrap().method, "Synchronize");
        }
    }

    #[test]
    fn oversized_message_is_skipped_and_stream_recovers() {
        let mut wire =
            Header { length: (MAX_MESSAGE + 5) as u32, stream_id: 1, kind: TYPE_REQUEST, flags: 0 }.encode().to_vec();
        wire.extend(std::iter::repeat_n(0xAA, MAX_MESSAGE + 5));
        wire.extend(request(3, "After"));
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for chunk in wire.chunks(64 * 1024) {
            d.push(chunk);
            while let Some(m) = d.next_message() {
                got.push(m);
            }
            assert!(d.pending() < 128 * 1024, "oversized body must not be buffered");
        }
        assert!(matches!(got[0], Decoded::Oversized(Header { stream_id: 1, .. })));
        let Decoded::Message { header, .. } = &got[1] else { panic!("stream did not recover") };
        assert_eq!(header.stream_id, 3);
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn oversized_message_is_not_sent() {
        assert_eq!(
            encode_message(1, TYPE_REQUEST, 0, &vec![0; MAX_MESSAGE + 1]),
            Err(EncodeError::Oversized(MAX_MESSAGE + 1))
        );
    }

    #[test]
    fn status_tolerates_details() {
        // google.rpc.Status with a `details` Any (field 3) that this subset leaves out.
        let mut buf = Status::new(code::UNKNOWN, "boom").encode_to_vec();
        prost::encoding::bytes::encode(3, &vec![0x0a, 0x01, b'x'], &mut buf);
        let resp = Response { status: None, payload: vec![] };
        let mut rbuf = resp.encode_to_vec();
        prost::encoding::bytes::encode(1, &buf, &mut rbuf);
        let back = Response::decode(rbuf.as_slice()).unwrap();
        assert_eq!(back.status, Some(Status::new(code::UNKNOWN, "boom")));
    }
}
