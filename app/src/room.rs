//! Room names: validated where they enter, so no unchecked name travels further.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted room name, in bytes (names are ASCII).
pub const MAX_ROOM_LEN: usize = 64;

/// A validated room name: 1–64 ASCII letters, digits, `-`, `_`, `.`, `:`, starting with a letter or
/// digit. Deserialising an invalid name fails, so no unchecked name travels past the edge.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomName(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid room name {name:?}: {reason}")]
pub struct InvalidRoom {
    pub name: String,
    pub reason: &'static str,
}

impl RoomName {
    pub fn parse(name: impl Into<String>) -> Result<Self, InvalidRoom> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("must not be empty")
        } else if name.len() > MAX_ROOM_LEN {
            Some("must be at most 64 characters")
        } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            Some("must start with a letter or digit")
        } else if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            Some("may contain only letters, digits, '-', '_', '.' and ':'")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidRoom { name, reason }),
            None => Ok(Self(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomName {
    type Error = InvalidRoom;
    fn try_from(name: String) -> Result<Self, InvalidRoom> {
        Self::parse(name)
    }
}

impl From<RoomName> for String {
    fn from(room: RoomName) -> String {
        room.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_follow_length_and_charset_rules() {
        for ok in [
            "demo",
            "host:web-1",
            "team.payments_eu",
            "A1",
            &"x".repeat(64),
        ] {
            assert!(RoomName::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            "-lead",
            ":x",
            "has space",
            "ünï",
            "a/b",
            &"x".repeat(65),
        ] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}
