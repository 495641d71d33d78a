//! Who may do what: roles, room patterns and token scopes, shared by the server (which enforces
//! them) and the pages (which show them).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a user may do, each role including the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads pages, subscribes to rooms, reads history.
    Viewer,
    /// Also publishes notices and metrics, and edits dashboards.
    Editor,
    /// Also manages users and tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Self::Viewer, Self::Editor, Self::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| format!("unknown role {text:?}: one of viewer, editor, admin"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A room or source name pattern: `*` stands for any run of characters (`team.payments.*`,
/// `host:*`, `*`); anything else must match exactly.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern(String);

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = !text.is_empty()
            && text.len() <= 128
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '*'));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "pattern {text:?} must be 1–128 letters, digits, '-', '_', '.', ':' or '*'"
            ))
        }
    }

    pub fn any() -> Self {
        Self("*".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` is matched, `*` taking any run of characters (none included).
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = name.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

impl TryFrom<String> for Pattern {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<Pattern> for String {
    fn from(pattern: Pattern) -> String {
        pattern.0
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an API token may do, within what its user may: `read:<room pattern>`,
/// `publish:<room pattern>`, `ingest:<source pattern>`, `metrics` (scrape the server's own
/// metrics, an admin's token only) or `admin` (all its user may).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scope {
    Read(Pattern),
    Publish(Pattern),
    Ingest(Pattern),
    Metrics,
    Admin,
}

impl Scope {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
        let pattern = || Pattern::parse(rest);
        match kind {
            "read" => Ok(Self::Read(pattern()?)),
            "publish" => Ok(Self::Publish(pattern()?)),
            "ingest" => Ok(Self::Ingest(pattern()?)),
            "metrics" if text == "metrics" => Ok(Self::Metrics),
            "admin" if text == "admin" => Ok(Self::Admin),
            _ => Err(format!(
                "unknown scope {text:?}: read:<rooms>, publish:<rooms>, ingest:<sources>, \
                 metrics or admin"
            )),
        }
    }
}

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> String {
        scope.to_string()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(p) => write!(f, "read:{p}"),
            Self::Publish(p) => write!(f, "publish:{p}"),
            Self::Ingest(p) => write!(f, "ingest:{p}"),
            Self::Metrics => f.write_str("metrics"),
            Self::Admin => f.write_str("admin"),
        }
    }
}

/// Who is asking and what they may do, as the server resolved it for a request: a user's role
/// and rooms, narrowed by a token's scopes when a token was sent. The server enforces these
/// checks everywhere; pages use them to leave out what would be refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// None for anonymous access.
    pub name: Option<String>,
    pub role: Role,
    /// The rooms that exist for this identity.
    pub rooms: Vec<Pattern>,
    /// A token's scopes; None for a browser session, whose user may all their role allows.
    pub scopes: Option<Vec<Scope>>,
}

impl Identity {
    fn in_rooms(&self, room: &str) -> bool {
        self.rooms.iter().any(|pattern| pattern.matches(room))
    }

    /// Whether a token's scopes (any scope when there is no token) allow it: `admin` allows all
    /// its user may.
    fn scoped(&self, allows: impl Fn(&Scope) -> bool) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|scopes| scopes.iter().any(|s| *s == Scope::Admin || allows(s)))
    }

    /// Subscribe to, and read the history of, `room`.
    pub fn may_read(&self, room: &str) -> bool {
        self.in_rooms(room) && self.scoped(|s| matches!(s, Scope::Read(p) if p.matches(room)))
    }

    /// Publish events to `room`.
    pub fn may_publish(&self, room: &str) -> bool {
        self.role >= Role::Editor
            && self.in_rooms(room)
            && self.scoped(|s| matches!(s, Scope::Publish(p) if p.matches(room)))
    }

    /// Publish an event of `kind` to `room`: a room it may publish to, or the room of a source
    /// it may send samples of, for samples.
    pub fn may_publish_event(&self, room: &str, kind: crate::protocol::EventKind) -> bool {
        self.may_publish(room)
            || (kind == crate::protocol::EventKind::Metric
                && room
                    .strip_prefix(crate::metrics::ROOM_PREFIX)
                    .is_some_and(|source| self.may_ingest(source)))
    }

    /// Send samples of `source` (to its room, `metrics:<source>`).
    pub fn may_ingest(&self, source: &str) -> bool {
        self.role >= Role::Editor
            && self.in_rooms(&format!("{}{source}", crate::metrics::ROOM_PREFIX))
            && self.scoped(|s| matches!(s, Scope::Ingest(p) if p.matches(source)))
    }

    /// Create, change and delete dashboards.
    pub fn may_edit(&self) -> bool {
        self.role >= Role::Editor && self.scoped(|_| false)
    }

    /// Make, change and delete alert rules and channels; acknowledge and silence alerts: an
    /// editor who reads room `alerts` and whose rooms are not narrowed, since a rule or a silence
    /// reaches every source and a channel carries values out.
    pub fn may_handle_alerts(&self) -> bool {
        self.may_edit()
            && self.may_read(crate::alerts::ROOM)
            && self.rooms.contains(&Pattern::any())
    }

    /// Scrape the server's own metrics (`GET /metrics`): an admin, or an admin's token with the
    /// `metrics` scope — a scrape token that can do nothing else.
    pub fn may_scrape(&self) -> bool {
        self.role == Role::Admin && self.scoped(|s| *s == Scope::Metrics)
    }

    /// See and end their own sessions, make and revoke their own tokens: a signed-in user, or a
    /// token with the `admin` scope.
    pub fn may_manage_own_account(&self) -> bool {
        self.name.is_some() && self.scoped(|_| false)
    }
}

/// The identity of the request a server function serves (the server resolved it before the
/// request reached the function), or why there is none.
#[cfg(feature = "ssr")]
pub fn identity() -> Result<Identity, crate::error::AppError> {
    leptos::prelude::use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Identity>().cloned())
        .ok_or(crate::error::AppError::Unauthenticated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_with_stars_anywhere() {
        let cases = [
            ("*", "anything", true),
            ("*", "", true),
            ("team.payments.*", "team.payments.eu", true),
            ("team.payments.*", "team.payments.", true),
            ("team.payments.*", "team.payment", false),
            ("team.payments.*", "xteam.payments.eu", false),
            ("web-*", "web-1", true),
            ("web-*", "db-1", false),
            ("host:*:prod", "host:a:prod", true),
            ("host:*:prod", "host:a:dev", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("*ab", "ab", true),
            ("a*a", "a", false),
            ("alerts", "alerts", true),
            ("alerts", "alerts2", false),
        ];
        for (pattern, name, expect) in cases {
            let pattern = Pattern::parse(pattern).unwrap();
            assert_eq!(pattern.matches(name), expect, "{pattern} ~ {name:?}");
        }
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("a b").is_err());
    }

    #[test]
    fn scopes_read_back_what_they_write() {
        for text in ["read:*", "publish:team.*", "ingest:web-*", "admin"] {
            assert_eq!(Scope::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "read",
            "write:*",
            "admin:*",
            "admin:",
            "ingest:a b",
            "read:",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_narrows_its_user_and_never_widens_it() {
        let patterns = |list: &[&str]| list.iter().map(|p| Pattern::parse(p).unwrap()).collect();
        let editor = Identity {
            name: Some("ops".into()),
            role: Role::Editor,
            rooms: patterns(&["team.payments.*", "metrics:web-*", "alerts"]),
            scopes: None,
        };
        assert!(editor.may_read("team.payments.eu") && editor.may_publish("alerts"));
        assert!(
            !editor.may_read("team.search.eu"),
            "outside the user's rooms"
        );
        assert!(editor.may_ingest("web-1") && !editor.may_ingest("db-1"));
        assert!(editor.may_edit());

        let agent = Identity {
            scopes: Some(vec![Scope::Ingest(Pattern::parse("web-*").unwrap())]),
            ..editor.clone()
        };
        assert!(agent.may_ingest("web-2"));
        assert!(!agent.may_ingest("db-1") && !agent.may_read("alerts") && !agent.may_edit());

        let wide = Identity {
            scopes: Some(vec![Scope::Admin]),
            role: Role::Viewer,
            ..editor.clone()
        };
        assert!(wide.may_read("alerts"), "admin scope: all its user may");
        assert!(
            !wide.may_publish("alerts") && !wide.may_edit(),
            "a viewer's token"
        );
    }

    #[test]
    fn roles_include_the_ones_before_them() {
        assert!(Role::Admin > Role::Editor && Role::Editor > Role::Viewer);
        assert_eq!(Role::parse("editor"), Ok(Role::Editor));
        assert!(Role::parse("root").is_err());
    }
}
