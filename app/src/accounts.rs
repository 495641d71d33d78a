//! A user's own sessions and API tokens, as the settings page shows them, and the seam through
//! which the server lists, makes and revokes them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::Scope;

/// A signed-in browser. `id` names it for revocation without being the secret it signs in with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub created: DateTime<Utc>,
    pub seen: DateTime<Utc>,
    pub address: String,
    pub agent: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: i32,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub used: Option<DateTime<Utc>>,
    pub revoked: Option<DateTime<Utc>>,
}

/// Where sessions and tokens are kept; every call acts on `user`'s own only.
#[cfg(feature = "ssr")]
pub trait AccountStore: Send + Sync + 'static {
    fn sessions(
        &self,
        user: String,
    ) -> futures::future::BoxFuture<'static, Result<Vec<SessionInfo>, crate::error::AppError>>;
    fn end_session(
        &self,
        user: String,
        id: String,
    ) -> futures::future::BoxFuture<'static, Result<(), crate::error::AppError>>;
    fn tokens(
        &self,
        user: String,
    ) -> futures::future::BoxFuture<'static, Result<Vec<TokenInfo>, crate::error::AppError>>;
    /// Makes a token and returns it: the only time it is seen. `expires` as a person writes
    /// it (`30d`), none for a token that lasts.
    fn create_token(
        &self,
        user: String,
        name: String,
        scopes: Vec<Scope>,
        expires: Option<String>,
    ) -> futures::future::BoxFuture<'static, Result<String, crate::error::AppError>>;
    fn revoke_token(
        &self,
        user: String,
        id: i32,
    ) -> futures::future::BoxFuture<'static, Result<(), crate::error::AppError>>;
}

#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct SharedAccounts(pub std::sync::Arc<dyn AccountStore>);
