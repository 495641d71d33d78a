//! Users, their browser sessions and their API tokens. Secrets are never stored: sessions and
//! tokens are found by the SHA-256 of what the client holds, passwords by their argon2id hash.

use app::{
    accounts::{SessionInfo, TokenInfo},
    auth::{Pattern, Role, Scope},
};
use chrono::{DateTime, Utc};

use super::Store;
use crate::error::{Error, Result};

/// A user as permissions see them.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub id: i32,
    pub name: String,
    pub role: Role,
    pub rooms: Vec<Pattern>,
}

type AccountRow = (i32, String, String, Vec<String>);
/// A session as its user sees it, as stored: digest, created, seen, address, agent.
type SessionRow = (Vec<u8>, DateTime<Utc>, DateTime<Utc>, String, String);
/// A token as its user sees it, as stored.
type TokenRow = (
    i32,
    String,
    Vec<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// A stored value this code cannot read: the database holds what no writer here wrote.
fn undecodable(reason: String) -> Error {
    Error::Database(sqlx::Error::Decode(reason.into()))
}

fn scopes_of(texts: &[String]) -> Result<Vec<Scope>> {
    texts
        .iter()
        .map(|s| Scope::parse(s))
        .collect::<Result<_, _>>()
        .map_err(undecodable)
}
/// A token's id and scopes, then its user's account row.
type GrantRow = (i32, Vec<String>, i32, String, String, Vec<String>);

fn account((id, name, role, rooms): AccountRow) -> Result<Account> {
    Ok(Account {
        id,
        name,
        role: Role::parse(&role).map_err(undecodable)?,
        rooms: rooms
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<_, _>>()
            .map_err(undecodable)?,
    })
}

/// A token found by its hash: its id and scopes, and whose it is.
pub struct TokenGrant {
    pub id: i32,
    pub scopes: Vec<Scope>,
    pub account: Account,
}

impl Store {
    /// Whether anyone can log in yet; until then every page leads to `/setup`.
    pub async fn has_users(&self) -> Result<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Creates a user; a name already taken is the caller's mistake. With `only_if_first`, the
    /// user is created only while there is none (the setup page's first admin), atomically.
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        role: Role,
        rooms: &[Pattern],
        only_if_first: bool,
    ) -> Result<Option<i32>> {
        let rooms: Vec<&str> = rooms.iter().map(Pattern::as_str).collect();
        let mut tx = self.pool.begin().await?;
        if only_if_first {
            // Two setups at once: the second waits here, then finds the first's admin.
            sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
            let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)")
                .fetch_one(&mut *tx)
                .await?;
            if any {
                return Ok(None);
            }
        }
        let id: Option<i32> = sqlx::query_scalar(
            "INSERT INTO users (name, password_hash, role, rooms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(&rooms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Err(Error::bad_request(format!("a user named {name} exists")));
        };
        tx.commit().await?;
        Ok(Some(id))
    }

    /// The account named `name` with its password hash, unless it is disabled.
    pub async fn login_account(&self, name: &str) -> Result<Option<(Account, String)>> {
        let row: Option<(i32, String, String, Vec<String>, String)> = sqlx::query_as(
            "SELECT id, name, role, rooms, password_hash FROM users
             WHERE name = $1 AND disabled_at IS NULL",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(id, name, role, rooms, hash)| Ok((account((id, name, role, rooms))?, hash)))
            .transpose()
    }

    pub async fn account(&self, name: &str) -> Result<Option<Account>> {
        let row: Option<AccountRow> =
            sqlx::query_as("SELECT id, name, role, rooms FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.map(account).transpose()
    }

    pub async fn create_session(
        &self,
        hash: &[u8],
        user: i32,
        expires_at: DateTime<Utc>,
        address: &str,
        agent: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (hash, user_id, expires_at, address, agent)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash)
        .bind(user)
        .bind(expires_at)
        .bind(address)
        .bind(agent)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The account a live session belongs to: neither past its absolute expiry nor idle longer
    /// than `idle_secs`, its user not disabled. Marks it seen (at most once a minute).
    pub async fn session_account(&self, hash: &[u8], idle_secs: f64) -> Result<Option<Account>> {
        let row: Option<AccountRow> = sqlx::query_as(
            "WITH live AS (
                 SELECT s.hash, u.id, u.name, u.role, u.rooms, s.seen_at
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.hash = $1 AND s.expires_at > now()
                   AND s.seen_at > now() - make_interval(secs => $2)
                   AND u.disabled_at IS NULL
             ), seen AS (
                 UPDATE sessions SET seen_at = now()
                 WHERE hash = (SELECT hash FROM live WHERE seen_at < now() - interval '1 minute')
             )
             SELECT id, name, role, rooms FROM live",
        )
        .bind(hash)
        .bind(idle_secs)
        .fetch_optional(&self.pool)
        .await?;
        row.map(account).transpose()
    }

    pub async fn delete_session(&self, hash: &[u8]) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE hash = $1")
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn create_token(
        &self,
        hash: &[u8],
        user: i32,
        name: &str,
        scopes: &[Scope],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<i32> {
        let scopes: Vec<String> = scopes.iter().map(Scope::to_string).collect();
        Ok(sqlx::query_scalar(
            "INSERT INTO tokens (hash, user_id, name, scopes, expires_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(hash)
        .bind(user)
        .bind(name)
        .bind(&scopes)
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The grant of a live token: not revoked, not expired, its user not disabled. Marks it
    /// used (at most once a minute).
    pub async fn token_grant(&self, hash: &[u8]) -> Result<Option<TokenGrant>> {
        let row: Option<GrantRow> = sqlx::query_as(
            "WITH live AS (
                 SELECT t.id AS token, t.scopes, t.used_at, u.id, u.name, u.role, u.rooms
                 FROM tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.hash = $1 AND t.revoked_at IS NULL
                   AND (t.expires_at IS NULL OR t.expires_at > now())
                   AND u.disabled_at IS NULL
             ), used AS (
                 UPDATE tokens SET used_at = now()
                 WHERE id = (SELECT token FROM live
                             WHERE used_at IS NULL OR used_at < now() - interval '1 minute')
             )
             SELECT token, scopes, id, name, role, rooms FROM live",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some((token, scopes, id, name, role, rooms)) = row else {
            return Ok(None);
        };
        Ok(Some(TokenGrant {
            id: token,
            scopes: scopes_of(&scopes)?,
            account: account((id, name, role, rooms))?,
        }))
    }

    pub async fn revoke_token(&self, id: i32) -> Result<()> {
        sqlx::query("UPDATE tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn disable_user(&self, id: i32) -> Result<()> {
        sqlx::query("UPDATE users SET disabled_at = now() WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Of the sessions and tokens open sockets hold, the ones still live (for closing the
    /// sockets of the others). A live session's open socket is use: it is marked seen (at most
    /// once a minute), so a wall screen that only watches is not taken for idle.
    pub async fn still_live(
        &self,
        sessions: &[Vec<u8>],
        tokens: &[i32],
        idle_secs: f64,
    ) -> Result<(Vec<Vec<u8>>, Vec<i32>)> {
        let live_sessions: Vec<Vec<u8>> = sqlx::query_scalar(
            "WITH live AS (
                 SELECT s.hash, s.seen_at FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.hash = ANY($1) AND s.expires_at > now()
                   AND s.seen_at > now() - make_interval(secs => $2) AND u.disabled_at IS NULL
             ), seen AS (
                 UPDATE sessions SET seen_at = now()
                 WHERE hash IN (SELECT hash FROM live WHERE seen_at < now() - interval '1 minute')
             )
             SELECT hash FROM live",
        )
        .bind(sessions)
        .bind(idle_secs)
        .fetch_all(&self.pool)
        .await?;
        let live_tokens: Vec<i32> = sqlx::query_scalar(
            "SELECT t.id FROM tokens t JOIN users u ON u.id = t.user_id
             WHERE t.id = ANY($1) AND t.revoked_at IS NULL
               AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.disabled_at IS NULL",
        )
        .bind(tokens)
        .fetch_all(&self.pool)
        .await?;
        Ok((live_sessions, live_tokens))
    }
}

impl Store {
    /// `user`'s live sessions, the most recently seen first; the hex of a session's digest
    /// names it.
    pub async fn sessions_of(&self, user: &str) -> Result<Vec<SessionInfo>> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT s.hash, s.created_at, s.seen_at, s.address, s.agent
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE u.name = $1 AND s.expires_at > now() ORDER BY s.seen_at DESC",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(hash, created, seen, address, agent)| SessionInfo {
                id: hex::encode(hash),
                created,
                seen,
                address,
                agent,
            })
            .collect())
    }

    /// Ends one of `user`'s sessions (another user's is left alone).
    pub async fn end_session_of(&self, user: &str, hash: &[u8]) -> Result<()> {
        sqlx::query(
            "DELETE FROM sessions WHERE hash = $1
             AND user_id = (SELECT id FROM users WHERE name = $2)",
        )
        .bind(hash)
        .bind(user)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `user`'s tokens, the newest first, revoked ones included.
    pub async fn tokens_of(&self, user: &str) -> Result<Vec<TokenInfo>> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT t.id, t.name, t.scopes, t.created_at, t.expires_at, t.used_at, t.revoked_at
             FROM tokens t JOIN users u ON u.id = t.user_id
             WHERE u.name = $1 ORDER BY t.created_at DESC",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, name, scopes, created, expires, used, revoked)| {
                Ok(TokenInfo {
                    id,
                    name,
                    scopes: scopes_of(&scopes)?,
                    created,
                    expires,
                    used,
                    revoked,
                })
            })
            .collect()
    }

    /// Revokes one of `user`'s tokens (another user's is left alone).
    pub async fn revoke_token_of(&self, user: &str, id: i32) -> Result<()> {
        sqlx::query(
            "UPDATE tokens SET revoked_at = now()
             WHERE id = $1 AND revoked_at IS NULL
               AND user_id = (SELECT id FROM users WHERE name = $2)",
        )
        .bind(id)
        .bind(user)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
