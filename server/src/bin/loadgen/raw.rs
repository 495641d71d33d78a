//! Subscribers that read as cheaply as the floor's reader (`socket_floor`): after the WebSocket
//! handshake each is a plain socket, and one epoll thread reads them all, finding each event
//! frame's stamp without parsing the rest. With a task and a full WebSocket client per
//! subscriber, the generator's own reading (on the same two cores) would be timed with the
//! server.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::Duration,
};

use app::protocol::{ClientFrame, RoomName};
use mio::{Events, Interest, Poll, Token, net::TcpStream as MioStream};

use crate::{Shared, stamp};

/// Opens `count` sockets to `addrs` in turn, each subscribed to `room`.
pub fn connect(addrs: &[SocketAddr], token: &str, room: &RoomName, count: usize) -> Vec<MioStream> {
    let subscribe = serde_json::to_string(&ClientFrame::Subscribe {
        room: room.clone(),
        since: None,
        epoch: None,
    })
    .expect("frames serialise");
    (0..count)
        .map(|i| open(addrs[i % addrs.len()], token, &subscribe))
        .collect()
}

fn open(addr: SocketAddr, token: &str, subscribe: &str) -> MioStream {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    write!(
        tcp,
        "GET /ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("upgrade request");
    // The answer's head, a byte at a time: what follows it is the server's first frame, which
    // the reader must see whole.
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).expect("upgrade answer");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "upgrade refused: {}",
        String::from_utf8_lossy(&head)
    );
    tcp.write_all(&masked(subscribe)).expect("subscribe");
    tcp.set_nonblocking(true).expect("nonblocking");
    MioStream::from_std(tcp)
}

/// A client's text frame (clients must mask; a zero key leaves the bytes as they are).
fn masked(text: &str) -> Vec<u8> {
    let len = text.len();
    let mut frame = vec![0x81];
    match len {
        0..126 => frame.push(0x80 | len as u8),
        _ => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// Reads every socket on a thread of its own, counting and timing each event while
/// `shared.measuring`, until `shared.stopped`.
pub fn read(mut sockets: Vec<MioStream>, shared: Arc<Shared>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut poll = Poll::new().expect("epoll");
        for (i, socket) in sockets.iter_mut().enumerate() {
            poll.registry()
                .register(socket, Token(i), Interest::READABLE)
                .expect("register");
        }
        let mut pending: Vec<Vec<u8>> = vec![Vec::new(); sockets.len()];
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0; 64 * 1024];
        let pong = masked(&serde_json::to_string(&ClientFrame::Pong).expect("frames serialise"));
        while !shared.stopped.load(Ordering::Relaxed) {
            poll.poll(&mut events, Some(Duration::from_millis(50)))
                .expect("epoll wait");
            for event in &events {
                let i = event.token().0;
                loop {
                    let read = match sockets[i].read(&mut buf) {
                        Ok(0) => break,
                        Ok(read) => read,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("loopback read: {e}"),
                    };
                    let bytes = &mut pending[i];
                    bytes.extend_from_slice(&buf[..read]);
                    let (taken, pinged) = frames(bytes, |text| on_event(text, &shared));
                    bytes.drain(..taken);
                    if pinged {
                        // Small: the socket takes it whole.
                        let _ = sockets[i].write_all(&pong);
                    }
                }
            }
        }
    })
}

fn on_event(text: &[u8], shared: &Shared) {
    if !shared.measuring.load(Ordering::Relaxed) {
        return;
    }
    shared.deliveries.fetch_add(1, Ordering::Relaxed);
    if let Some(t) = std::str::from_utf8(text).ok().and_then(stamp) {
        let now = shared.start.elapsed().as_micros() as u64;
        shared.latencies.record(now.saturating_sub(t));
    }
}

/// Hands each whole event frame at the front of `bytes` to `on_event`; returns how many bytes
/// were whole frames, and whether the server asked for a pong.
fn frames(bytes: &[u8], mut on_event: impl FnMut(&[u8])) -> (usize, bool) {
    let (mut at, mut pinged) = (0, false);
    while let [_, length, ..] = bytes[at..] {
        // A server's frames are not masked: the length's top bit is clear.
        let (header, len) = match length {
            126 if bytes.len() >= at + 4 => (
                4,
                u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
            ),
            127 if bytes.len() >= at + 10 => {
                let len: [u8; 8] = bytes[at + 2..at + 10].try_into().expect("eight bytes");
                (10, u64::from_be_bytes(len) as usize)
            }
            126 | 127 => break,
            len => (2, len as usize),
        };
        if bytes.len() < at + header + len {
            break;
        }
        let payload = &bytes[at + header..at + header + len];
        if payload.starts_with(br#"{"type":"event""#) {
            on_event(payload);
        } else if payload.starts_with(br#"{"type":"ping""#) {
            pinged = true;
        }
        at += header + len;
    }
    (at, pinged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(text: &str) -> Vec<u8> {
        let mut frame = vec![0x81];
        match text.len() {
            len @ 0..126 => frame.push(len as u8),
            len => {
                frame.push(126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(text.as_bytes());
        frame
    }

    #[test]
    fn whole_event_frames_are_handed_on_and_a_partial_one_waits() {
        let long = format!(r#"{{"type":"event","data":"{}"}}"#, "x".repeat(300));
        let mut bytes = server_frame(r#"{"type":"event","t":1}"#);
        bytes.extend(server_frame(r#"{"type":"ping"}"#));
        bytes.extend(server_frame(&long));
        let whole = bytes.len();
        bytes.extend(&server_frame(r#"{"type":"event","t":2}"#)[..5]);
        let mut seen = Vec::new();
        let (taken, pinged) = frames(&bytes, |text| seen.push(text.len()));
        assert_eq!(taken, whole);
        assert!(pinged);
        assert_eq!(seen, [r#"{"type":"event","t":1}"#.len(), long.len()]);
    }
}
