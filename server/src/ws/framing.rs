//! WebSocket framing (RFC 6455 §5) as the server speaks it: the client's frames read straight
//! from the socket, and the server's own frames encoded. A socket holds no buffer while nothing
//! is half-read: most sockets are idle watchers, and memory per socket is what limits how many
//! one node holds.

use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;

/// Opcodes (RFC 6455 §5.2).
const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Close codes (RFC 6455 §7.4.1) the server sends.
pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID_TEXT: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_LARGE: u16 = 1009;
    pub const RESTART: u16 = 1012;
}

/// A server frame of `opcode` carrying `payload`: unmasked, its length in the shortest form.
pub fn encode(opcode: u8, payload: &[u8]) -> BytesMut {
    let len = payload.len();
    let mut frame = BytesMut::with_capacity(len + 10);
    frame.put_u8(0x80 | opcode);
    match len {
        0..126 => frame.put_u8(len as u8),
        126..65_536 => {
            frame.put_u8(126);
            frame.put_u16(len as u16);
        }
        _ => {
            frame.put_u8(127);
            frame.put_u64(len as u64);
        }
    }
    frame.put_slice(payload);
    frame
}

/// The answer to a ping carrying `payload`.
pub fn pong(payload: &[u8]) -> Bytes {
    encode(PONG, payload).freeze()
}

/// A close frame with its code and reason.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    encode(CLOSE, &payload).freeze()
}

/// What the client sent: a whole message, or a control frame.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Text(String),
    Binary,
    Ping(Vec<u8>),
    Pong,
    Close,
}

/// Why the client's frames can be read no further.
#[derive(Debug, PartialEq)]
pub enum Broken {
    /// The connection ended or failed.
    Gone,
    /// A frame or message larger than the server accepts.
    TooLarge,
    /// Text that is not UTF-8.
    InvalidText,
    /// Not the protocol; says what was wrong.
    Protocol(&'static str),
}

/// Reads the client's frames and gathers fragmented messages.
pub struct Reader {
    /// Bytes read that are not yet a whole frame: empty, holding no allocation, while idle.
    unread: Vec<u8>,
    /// A fragmented message so far: whether it is text, and its payload.
    message: Option<(bool, Vec<u8>)>,
    /// Largest frame, and message, accepted.
    max: usize,
}

/// One frame, unmasked.
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
    /// Its bytes on the wire.
    len: usize,
}

impl Reader {
    /// A reader starting with the bytes the client sent along with its handshake.
    pub fn new(read_ahead: Vec<u8>, max: usize) -> Self {
        Self {
            unread: read_ahead,
            message: None,
            max,
        }
    }

    /// The client's next message or control frame. Cancel-safe: what was read stays.
    pub async fn next(&mut self, tcp: &TcpStream) -> Result<Incoming, Broken> {
        loop {
            if let Some(incoming) = self.take()? {
                return Ok(incoming);
            }
            self.fill(tcp).await?;
        }
    }

    /// Drops what was read and not yet taken.
    pub fn forget(&mut self) {
        self.unread = Vec::new();
        self.message = None;
    }

    /// Reads what the socket has, waiting until it has something.
    async fn fill(&mut self, tcp: &TcpStream) -> Result<(), Broken> {
        loop {
            tcp.readable().await.map_err(|_| Broken::Gone)?;
            // On the stack between awaits, so not kept in the connection's future.
            let mut chunk = [0u8; 4096];
            match tcp.try_read(&mut chunk) {
                Ok(0) => return Err(Broken::Gone),
                Ok(read) => {
                    self.unread.extend_from_slice(&chunk[..read]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return Err(Broken::Gone),
            }
        }
    }

    /// The next message or control frame among the bytes read, if they hold one whole.
    fn take(&mut self) -> Result<Option<Incoming>, Broken> {
        while let Some(frame) = split(&self.unread, self.max)? {
            if frame.len == self.unread.len() {
                self.unread = Vec::new();
            } else {
                self.unread.drain(..frame.len);
            }
            if let Some(incoming) = self.gather(frame)? {
                return Ok(Some(incoming));
            }
        }
        Ok(None)
    }

    fn gather(&mut self, frame: Frame) -> Result<Option<Incoming>, Broken> {
        if frame.opcode & 0x8 != 0 {
            if !frame.fin || frame.payload.len() > 125 {
                return Err(Broken::Protocol(
                    "control frames come whole, with at most 125 bytes",
                ));
            }
            return match frame.opcode {
                CLOSE => Ok(Some(Incoming::Close)),
                PING => Ok(Some(Incoming::Ping(frame.payload))),
                PONG => Ok(Some(Incoming::Pong)),
                _ => Err(Broken::Protocol("unknown opcode")),
            };
        }
        let (text, payload) = match (frame.opcode, self.message.take()) {
            (TEXT | BINARY, None) => (frame.opcode == TEXT, frame.payload),
            (CONTINUATION, Some((text, mut so_far))) => {
                if so_far.len() + frame.payload.len() > self.max {
                    return Err(Broken::TooLarge);
                }
                so_far.extend_from_slice(&frame.payload);
                (text, so_far)
            }
            (TEXT | BINARY, Some(_)) => {
                return Err(Broken::Protocol(
                    "a new message began before the last ended",
                ));
            }
            (CONTINUATION, None) => {
                return Err(Broken::Protocol("a continuation frame with no message"));
            }
            _ => return Err(Broken::Protocol("unknown opcode")),
        };
        if !frame.fin {
            self.message = Some((text, payload));
            return Ok(None);
        }
        match text {
            true => String::from_utf8(payload)
                .map(|text| Some(Incoming::Text(text)))
                .map_err(|_| Broken::InvalidText),
            false => Ok(Some(Incoming::Binary)),
        }
    }
}

/// The whole frame `bytes` start with, or none while it is not all there. Refuses at its header
/// a frame larger than `max`, without waiting for its payload.
fn split(bytes: &[u8], max: usize) -> Result<Option<Frame>, Broken> {
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(Broken::Protocol(
            "reserved bits set: no extension was agreed",
        ));
    }
    if second & 0x80 == 0 {
        return Err(Broken::Protocol("a client's frames must be masked"));
    }
    let (len, at) = match second & 0x7F {
        126 => match bytes.get(2..4) {
            Some(len) => (u64::from(u16::from_be_bytes([len[0], len[1]])), 4),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(len) => (u64::from_be_bytes(len.try_into().expect("8 bytes")), 10),
            None => return Ok(None),
        },
        len => (u64::from(len), 2),
    };
    if len > max as u64 {
        return Err(Broken::TooLarge);
    }
    let end = at + 4 + len as usize;
    let (Some(mask), Some(payload)) = (bytes.get(at..at + 4), bytes.get(at + 4..end)) else {
        return Ok(None);
    };
    Ok(Some(Frame {
        fin: first & 0x80 != 0,
        opcode: first & 0x0F,
        payload: payload
            .iter()
            .zip(mask.iter().cycle())
            .map(|(byte, mask)| byte ^ mask)
            .collect(),
        len: end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client's frame: masked, as RFC 6455 requires of clients.
    fn client(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = encode(first & 0x0F, payload).to_vec();
        frame[0] = first;
        let at = frame.len() - payload.len();
        frame[1] |= 0x80;
        frame.splice(at..at, MASK);
        for (i, byte) in frame[at + 4..].iter_mut().enumerate() {
            *byte ^= MASK[i % 4];
        }
        frame
    }

    fn read_all(bytes: Vec<u8>, max: usize) -> Vec<Result<Incoming, Broken>> {
        let mut reader = Reader::new(bytes, max);
        let mut read = Vec::new();
        loop {
            match reader.take() {
                Ok(Some(incoming)) => read.push(Ok(incoming)),
                Ok(None) => return read,
                Err(broken) => {
                    read.push(Err(broken));
                    return read;
                }
            }
        }
    }

    #[test]
    fn whole_and_fragmented_messages_are_read_with_control_frames_between() {
        let long = "x".repeat(70_000);
        let bytes = [
            client(0x81, b"{\"type\":\"ping\"}"),
            client(0x01, "héllo ".as_bytes()),
            client(0x89, b"are you there"),
            client(0x80, "wörld".as_bytes()),
            client(0x81, long.as_bytes()),
            client(0x82, &[0, 1, 2]),
            client(0x8A, b""),
            client(0x88, &1000u16.to_be_bytes()),
        ]
        .concat();
        let read = read_all(bytes, 100_000);
        assert_eq!(
            read,
            [
                Ok(Incoming::Text("{\"type\":\"ping\"}".into())),
                Ok(Incoming::Ping(b"are you there".to_vec())),
                Ok(Incoming::Text("héllo wörld".into())),
                Ok(Incoming::Text(long)),
                Ok(Incoming::Binary),
                Ok(Incoming::Pong),
                Ok(Incoming::Close),
            ]
        );
    }

    #[test]
    fn a_frame_arriving_in_pieces_is_read_once_whole_and_nothing_is_kept_after() {
        let frame = client(0x81, b"{\"type\":\"ping\"}");
        let mut reader = Reader::new(Vec::new(), 1024);
        for (i, byte) in frame.iter().enumerate() {
            reader.unread.push(*byte);
            let taken = reader.take().unwrap();
            assert_eq!(
                taken.is_some(),
                i == frame.len() - 1,
                "after {} bytes",
                i + 1
            );
        }
        assert_eq!(
            reader.unread.capacity(),
            0,
            "an idle reader holds no buffer"
        );
    }

    #[test]
    fn too_large_frames_and_messages_are_refused_at_their_headers() {
        let header_only = client(0x81, &[b'a'; 2000])[..8].to_vec();
        assert_eq!(read_all(header_only, 1024), [Err(Broken::TooLarge)]);
        let pieces = [client(0x01, &[b'a'; 600]), client(0x80, &[b'a'; 600])].concat();
        assert_eq!(read_all(pieces, 1024), [Err(Broken::TooLarge)]);
    }

    #[test]
    fn frames_outside_the_protocol_are_refused_saying_why() {
        let unmasked = encode(TEXT, b"hi").to_vec();
        let refusals = [
            (unmasked, "masked"),
            (client(0xC1, b"hi"), "reserved bits"),
            (client(0x09, b"hi"), "control frames"),
            (client(0x80, b"hi"), "continuation"),
            (
                [client(0x01, b"a"), client(0x81, b"b")].concat(),
                "new message",
            ),
            (client(0x83, b"hi"), "unknown opcode"),
        ];
        for (bytes, why) in refusals {
            match read_all(bytes, 1024).pop() {
                Some(Err(Broken::Protocol(reason))) => assert!(reason.contains(why), "{reason}"),
                other => panic!("{why}: got {other:?}"),
            }
        }
        assert_eq!(
            read_all(client(0x81, &[0xff, 0xfe]), 1024),
            [Err(Broken::InvalidText)]
        );
    }

    #[test]
    fn server_frames_use_the_shortest_length_form() {
        assert_eq!(&encode(TEXT, b"hi")[..], b"\x81\x02hi");
        assert_eq!(encode(TEXT, &[0; 126])[..4], [0x81, 126, 0, 126]);
        assert_eq!(
            encode(TEXT, &[0; 65_536])[..10],
            [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(&close(1000, "bye")[..], b"\x88\x05\x03\xe8bye");
        assert_eq!(&pong(b"x")[..], b"\x8a\x01x");
    }
}
