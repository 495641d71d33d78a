//! The browser's side of the live connection: one socket per page, shared by every component that
//! shows a room. On the server the same types render the initial state and open nothing.

mod badge;
mod client;
#[cfg(feature = "hydrate")]
mod socket;

pub use badge::ConnectionBadge;
pub use client::{ConnState, EVENTS_SHOWN, LiveClient, RoomView};
