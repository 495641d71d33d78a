//! The sending side of one socket, shared by its connection and the fan-out. A frame is written
//! at once when nothing waits before it and the socket takes it; what the socket does not take
//! waits here, bounded by bytes, for the connection to write when the socket is ready.

use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use bytes::Bytes;
use tokio::{net::TcpStream, sync::Notify};

/// Bytes a socket may have waiting before pushes to it stop and its rooms fall behind (to be
/// read from the store once it takes what waits): a reader this far behind needs the latest
/// values more than every one of them.
pub const WAITING_LIMIT: usize = 256 * 1024;
/// Frames handed to one vectored write.
const WRITE_BATCH: usize = 64;

pub struct Outbox {
    tcp: Arc<TcpStream>,
    waiting: Mutex<Waiting>,
    /// Wakes the connection: bytes wait for the socket, or a watch needs it.
    pub(super) wake: Notify,
}

#[derive(Default)]
struct Waiting {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// A watch of this socket stopped pushing and needs its connection.
    called: bool,
    /// The socket failed a write: nothing more goes to it.
    broken: bool,
}

impl Outbox {
    pub fn new(tcp: Arc<TcpStream>) -> Self {
        Self {
            tcp,
            waiting: Mutex::default(),
            wake: Notify::new(),
        }
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        // Updated whole under the lock: a poisoned one is intact.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushed frames: written or waiting, unless [`WAITING_LIMIT`] bytes wait already or the
    /// socket failed (false).
    pub fn offer(&self, frames: &[&Bytes]) -> bool {
        let mut waiting = self.waiting();
        if waiting.bytes >= WAITING_LIMIT {
            return false;
        }
        self.put(&mut waiting, frames);
        !waiting.broken
    }

    /// The connection's own frame: it waits however much waits already, and the connection
    /// writes it out with [`Outbox::flush`].
    pub fn queue(&self, frame: Bytes) {
        self.put(&mut self.waiting(), &[&frame]);
    }

    /// Writes `frames` after what waits: at once, as far as the socket takes them, when nothing
    /// waits; the rest wait, and the connection is woken to write them.
    fn put(&self, waiting: &mut Waiting, frames: &[&Bytes]) {
        if waiting.broken {
            return;
        }
        let mut written = 0;
        if waiting.frames.is_empty() {
            for batch in frames.chunks(WRITE_BATCH) {
                let slices: Vec<IoSlice<'_>> = batch.iter().map(|f| IoSlice::new(f)).collect();
                let wanted: usize = batch.iter().map(|f| f.len()).sum();
                let took = match self.tcp.try_write_vectored(&slices) {
                    Ok(took) => took,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(_) => {
                        waiting.broken = true;
                        self.wake.notify_one();
                        return;
                    }
                };
                written += took;
                if took < wanted {
                    break;
                }
            }
        }
        let was_empty = waiting.frames.is_empty();
        for frame in frames {
            if written >= frame.len() {
                written -= frame.len();
                continue;
            }
            let rest = frame.slice(written..);
            written = 0;
            waiting.bytes += rest.len();
            waiting.frames.push_back(rest);
        }
        if was_empty && !waiting.frames.is_empty() {
            self.wake.notify_one();
        }
    }

    /// Whether pushes to this socket are being refused.
    pub fn full(&self) -> bool {
        self.waiting().bytes >= WAITING_LIMIT
    }

    /// Asks the connection to see to its watches.
    pub fn call(&self) {
        self.waiting().called = true;
        self.wake.notify_one();
    }

    /// Whether a watch asked for the connection since last asked.
    pub fn take_call(&self) -> bool {
        std::mem::take(&mut self.waiting().called)
    }

    /// Writes what waits as the socket takes it. Fails with `TimedOut` when the socket takes
    /// nothing for `limit`: its peer stopped reading.
    pub async fn flush(&self, limit: Duration) -> io::Result<()> {
        while !self.write_waiting()? {
            match tokio::time::timeout(limit, self.tcp.writable()).await {
                Ok(ready) => ready?,
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
            }
        }
        Ok(())
    }

    /// Writes what waits until the socket takes no more; true once nothing waits.
    fn write_waiting(&self) -> io::Result<bool> {
        let mut waiting = self.waiting();
        loop {
            if waiting.broken {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            if waiting.frames.is_empty() {
                return Ok(true);
            }
            let slices: Vec<IoSlice<'_>> = waiting
                .frames
                .iter()
                .take(WRITE_BATCH)
                .map(|frame| IoSlice::new(frame))
                .collect();
            match self.tcp.try_write_vectored(&slices) {
                Ok(written) => waiting.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => {
                    waiting.broken = true;
                    return Err(e);
                }
            }
        }
    }
}

impl Waiting {
    fn advance(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let first = self.frames.front_mut().expect("written bytes were waiting");
            if written < first.len() {
                *first = first.slice(written..);
                return;
            }
            written -= first.len();
            self.frames.pop_front();
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const LIMIT: Duration = Duration::from_secs(5);

    /// An outbox on one end of a loopback connection, and the other end.
    pub(in crate::ws) async fn pair() -> (Outbox, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (Outbox::new(Arc::new(accepted.unwrap().0)), client.unwrap())
    }

    #[tokio::test]
    async fn frames_the_socket_cannot_take_wait_in_order_up_to_the_limit() {
        let (outbox, mut peer) = pair().await;
        let frame = Bytes::from(vec![7u8; 1000]);
        // The peer reads nothing: the kernel's buffers fill, then the outbox's.
        let mut offered = 0usize;
        while outbox.offer(&[&frame]) {
            offered += 1;
            assert!(offered < 100_000, "the outbox never refused");
        }
        assert!(outbox.full());
        assert!(outbox.waiting().bytes >= WAITING_LIMIT);
        outbox.queue(Bytes::from_static(b"end"));
        let reading = async {
            let mut read = vec![0u8; offered * 1000 + 3];
            peer.read_exact(&mut read).await.unwrap();
            read
        };
        let (flushed, read) = tokio::join!(outbox.flush(LIMIT), reading);
        flushed.unwrap();
        assert!(read[..offered * 1000].iter().all(|&b| b == 7));
        assert_eq!(&read[offered * 1000..], b"end");
        assert!(!outbox.full());
    }

    #[tokio::test]
    async fn a_socket_whose_peer_is_gone_takes_nothing_more() {
        let (outbox, peer) = pair().await;
        drop(peer);
        let frame = Bytes::from(vec![1u8; 64 * 1024]);
        // The first writes may still reach the kernel; the reset then breaks the socket.
        let mut broken = false;
        for _ in 0..1000 {
            outbox.queue(frame.clone());
            if outbox.flush(LIMIT).await.is_err() {
                broken = true;
                break;
            }
        }
        assert!(broken, "writing to a closed peer fails");
        outbox.queue(frame);
        assert!(outbox.flush(LIMIT).await.is_err(), "and stays failed");
    }
}
