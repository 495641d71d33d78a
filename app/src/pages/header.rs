//! What every page's header shows of whoever reads it: who is signed in, and how alerts stand.
//! Read once per page, for the account menu and the alert centre together.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::alerts::AlertSummary;
use crate::{auth::Role, error::AppError};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeaderData {
    /// The signed-in user's name; none for anonymous watchers.
    pub name: Option<String>,
    pub role: Role,
    /// For those who may read alerts; why they could not be read, if they could not (the rest of
    /// the header does not depend on them).
    pub alerts: Result<Option<AlertSummary>, AppError>,
}

#[server(input = crate::json::Json, output = crate::json::Json)]
pub async fn read_header() -> Result<HeaderData, AppError> {
    crate::error::answer(async move {
        let identity = crate::auth::identity()?;
        Ok(HeaderData {
            alerts: super::alerts::summarise(&identity).await,
            name: identity.name,
            role: identity.role,
        })
    })
    .await
}

/// The page's one read of its header: once, as nothing the header shows is read again.
#[derive(Clone, Copy)]
pub struct Header(pub OnceResource<Result<HeaderData, AppError>, crate::json::Codec>);

impl Header {
    pub fn provide() {
        provide_context(Self(OnceResource::new_with_options(read_header(), false)));
    }

    pub fn expect() -> Self {
        expect_context()
    }
}
