//! What can go wrong behind a page: the one error type of the server functions and of the seams
//! the server fills in (`History`, `DashboardStore`), so pages show the right message and tests
//! match variants.

use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

use crate::protocol::InvalidRoom;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// Whoever sent the request can fix it; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// The request names something that does not exist (`dashboard`, `panel`).
    #[error("no such {0}")]
    NotFound(String),
    /// What the request changes was changed by someone else since it was read; the message
    /// says to reload.
    #[error("{0}")]
    Conflict(String),
    /// Nobody is logged in.
    #[error("log in first")]
    Unauthenticated,
    /// The one asking may not do this; the message says what is missing.
    #[error("{0}")]
    Forbidden(String),
    /// The server could not complete the request (its database is away, say); the details are
    /// in its log. Trying again later may succeed.
    #[error("the server could not complete the request; try again")]
    Unavailable,
    /// The call itself failed on its way: the network, or an answer that could not be read.
    #[error(transparent)]
    Call(ServerFnErrorErr),
}

impl FromServerFnError for AppError {
    type Encoder = crate::json::TextJson;

    fn from_server_fn_error(error: ServerFnErrorErr) -> Self {
        Self::Call(error)
    }
}

impl From<InvalidRoom> for AppError {
    fn from(error: InvalidRoom) -> Self {
        Self::Invalid(error.to_string())
    }
}

#[cfg(feature = "ssr")]
impl AppError {
    /// The HTTP status a server function answers with when it fails so.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Call(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Runs a server function's work and, when it fails, answers with the error's status rather
/// than server_fn's blanket 500 (a page rendered around the failure gets it too).
#[cfg(feature = "ssr")]
pub async fn answer<T>(work: impl Future<Output = Result<T, AppError>>) -> Result<T, AppError> {
    let response = leptos::prelude::use_context::<leptos_axum::ResponseOptions>();
    let result = work.await;
    if let (Err(error), Some(response)) = (&result, response) {
        response.set_status(error.status());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_the_wire_as_the_variant_they_are() {
        for error in [
            AppError::Invalid("a dashboard name is 1–40 lowercase letters".into()),
            AppError::NotFound("dashboard".into()),
            AppError::Unavailable,
            AppError::Call(ServerFnErrorErr::Request("offline".into())),
        ] {
            assert_eq!(AppError::de(error.ser()), error);
        }
    }

    #[test]
    fn an_unreadable_answer_is_a_failed_call() {
        let garbage = leptos::server_fn::Bytes::from_static(b"<html>proxy error</html>");
        assert!(matches!(
            AppError::de(garbage),
            AppError::Call(ServerFnErrorErr::Deserialization(_))
        ));
    }
}
