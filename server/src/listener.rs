//! The listening socket: at most so many connections at once, and so many from one address, so
//! idle or slow peers (a request trickled in a byte at a time) cannot take every file
//! descriptor, nor one machine every place; one more is closed as it arrives.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use axum::serve::Listener;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

pub struct Capped {
    tcp: TcpListener,
    open: Arc<Semaphore>,
    from: Addresses,
}

impl Capped {
    /// At most `max` connections, and `per_address` from any one address.
    pub fn new(tcp: TcpListener, max: usize, per_address: usize) -> Self {
        Self {
            tcp,
            open: Arc::new(Semaphore::new(max)),
            from: Addresses {
                open: Arc::default(),
                max: per_address,
            },
        }
    }
}

/// Connections open from each address.
#[derive(Clone)]
struct Addresses {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
}

impl Addresses {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Counts only change whole under this lock, so a poisoned map is intact.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more connection from `ip`, if it has fewer than its share open.
    fn take(&self, ip: IpAddr) -> Option<AddressPlace> {
        let mut open = self.open();
        let count = open.entry(ip).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressPlace {
            from: self.clone(),
            ip,
        })
    }
}

/// One connection's place among its address's; given back when dropped.
struct AddressPlace {
    from: Addresses,
    ip: IpAddr,
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut open = self.from.open();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl Listener for Capped {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        loop {
            let (tcp, addr) = Listener::accept(&mut self.tcp).await;
            let Some(place) = self.from.take(addr.ip()) else {
                tracing::debug!(%addr, "connection closed: its address has its share open");
                continue;
            };
            let Ok(permit) = self.open.clone().try_acquire_owned() else {
                tracing::debug!(%addr, "connection closed: as many are open as allowed");
                continue;
            };
            let places = Places {
                _among_all: permit,
                _among_its_address: place,
            };
            return (Counted { tcp, places }, addr);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// A connection that holds its places under the caps until it is dropped.
pub struct Counted {
    tcp: TcpStream,
    places: Places,
}

/// A connection's places under the caps: one among all, one among its address's.
pub struct Places {
    _among_all: OwnedSemaphorePermit,
    _among_its_address: AddressPlace,
}

impl Counted {
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The socket, and the places it must hold while it stays open.
    pub fn into_parts(self) -> (TcpStream, Places) {
        (self.tcp, self.places)
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
