//! The server's two error types: [`Error`], what a request can fail with, and [`RunError`],
//! what keeps the server from starting or stopping cleanly.

use app::{
    error::AppError,
    metrics::{InvalidSample, Series},
    protocol::{ErrorCode, InvalidEvent, InvalidRoom},
};
use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a request can fail. Client mistakes become 4xx with a message saying what to fix;
/// the server's own failures are logged in full and reported as unavailable. Status and code
/// are decided per variant with no catch-all, so a new variant must be placed on purpose.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidRoom(#[from] InvalidRoom),
    #[error(transparent)]
    InvalidEvent(#[from] InvalidEvent),
    #[error(transparent)]
    InvalidSample(#[from] InvalidSample),
    /// A request of the wrong shape; `status` tells 400 (unreadable), 413 (too large),
    /// 415 (wrong content type) and 422 (readable but wrong) apart.
    #[error("{message}")]
    BadRequest { status: StatusCode, message: String },
    #[error(
        "source {source_name} has {limit} series, the most one source may have; {series} would be one more"
    )]
    TooManySeries {
        source_name: String,
        series: Series,
        limit: usize,
    },
    #[error("the server holds {limit} series, the most it may; {series} would be one more")]
    SeriesFull { series: Series, limit: usize },
    /// No identity came with a request that needs one.
    #[error("log in, or send an API token (Authorization: Bearer wr_…)")]
    Unauthenticated,
    /// The identity may not do this; the message says what it lacks.
    #[error("{0}")]
    Forbidden(String),
    /// Past a limit of the identity's or the address's; the message says which.
    #[error("{0}")]
    Limited(String),
    /// What the request names does not exist; the message says what.
    #[error("{0}")]
    NotFound(String),
    /// Someone else changed it since the version the request names; the message says what.
    #[error("{0}")]
    Conflict(String),
    /// The single writer is gone (the server is stopping).
    #[error("the event store is unavailable")]
    Unavailable,
    /// Another database session holds the room's row lock (an operator's open transaction):
    /// the room's publishes are refused until it lets go; other rooms go on.
    #[error("room {0} is locked in the database by another session; try again later")]
    Locked(String),
    /// The connection to the database was cut or fell silent mid-batch, and the batch did not
    /// commit (the writer asked once the database answered again).
    #[error("the database connection was lost mid-batch; nothing of it was stored")]
    Uncommitted,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Damaged(#[from] crate::store::Damaged),
}

impl Error {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidRoom(_) => ErrorCode::InvalidRoom,
            Self::InvalidEvent(_) => ErrorCode::InvalidEvent,
            Self::InvalidSample(_) => ErrorCode::InvalidSample,
            Self::BadRequest { .. } => ErrorCode::BadFrame,
            Self::TooManySeries { .. } | Self::SeriesFull { .. } => ErrorCode::TooManySeries,
            Self::Unauthenticated => ErrorCode::Unauthenticated,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::Limited(_) => ErrorCode::RateLimited,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Unavailable
            | Self::Locked(_)
            | Self::Uncommitted
            | Self::Database(_)
            | Self::Damaged(_) => ErrorCode::Unavailable,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { status, .. } => *status,
            Self::InvalidRoom(_)
            | Self::InvalidSample(_)
            | Self::TooManySeries { .. }
            | Self::SeriesFull { .. } => StatusCode::BAD_REQUEST,
            Self::InvalidEvent(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable | Self::Locked(_) | Self::Uncommitted | Self::Database(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Damaged(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether a statement gave up waiting for a lock another session holds (`lock_timeout`).
    pub fn is_lock_timeout(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03"))
    }

    /// Whether the database itself answered with this error (so the statement, and its
    /// transaction, surely failed), rather than the connection to it failing.
    pub fn is_database_answer(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::Database(_)))
    }

    /// Whether the server, not the client, failed: only these are logged as errors.
    pub fn is_servers(&self) -> bool {
        self.status().is_server_error()
    }

    /// The message a client sees: the full text for its own mistakes, nothing internal otherwise.
    pub fn public_message(&self) -> String {
        // Which room is held is the operator's to know; it says nothing of the server's insides.
        if self.is_servers() && !matches!(self, Self::Locked(_)) {
            "the server could not complete the request; try again".into()
        } else {
            self.to_string()
        }
    }
}

impl From<Error> for AppError {
    fn from(error: Error) -> Self {
        match error {
            Error::Unauthenticated => Self::Unauthenticated,
            Error::Forbidden(why) => Self::Forbidden(why),
            Error::NotFound(what) => Self::NotFound(what),
            Error::Conflict(why) => Self::Conflict(why),
            error if error.is_servers() => Self::Unavailable,
            error => Self::Invalid(error.to_string()),
        }
    }
}

impl From<app::history::BadParam> for Error {
    fn from(bad: app::history::BadParam) -> Self {
        Self::bad_request(bad.to_string())
    }
}

/// Axum's own extractor rejections become errors of ours, so every 4xx has the same JSON shape.
macro_rules! bad_request_from {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for Error {
            fn from(rejection: $rejection) -> Self {
                Self::BadRequest { status: rejection.status(), message: rejection.body_text() }
            }
        }
    )*};
}
bad_request_from!(
    axum::extract::rejection::JsonRejection,
    axum::extract::rejection::QueryRejection,
    axum::extract::rejection::PathRejection,
    axum::extract::rejection::BytesRejection,
    axum::extract::rejection::StringRejection
);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.is_servers() {
            tracing::error!(error = %self, "request failed");
        }
        let body = json!({ "error": self.code(), "message": self.public_message() });
        let mut response = (self.status(), Json(body)).into_response();
        // For the refusal counts (`telemetry::count_refusals`).
        response.extensions_mut().insert(self.code());
        response
    }
}

/// What keeps the server from starting, or from stopping cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("embedded postgres: {0}")]
    EmbeddedPostgres(String),
    #[error("leptos configuration: {0}")]
    Leptos(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A command-line action was refused (an unknown user, a bad scope).
    #[error("{0}")]
    Refused(String),
}

/// A store read made while starting (alert rules and states) fails the start.
impl From<Error> for RunError {
    fn from(error: Error) -> Self {
        match error {
            Error::Database(e) => Self::Database(e),
            other => Self::Refused(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_mistakes_are_4xx_with_their_reason_and_server_failures_503_without() {
        let mistakes = [
            Error::InvalidRoom(app::protocol::RoomName::parse("a b").unwrap_err()),
            Error::bad_request("labels must be a JSON object of strings"),
            Error::TooManySeries {
                source_name: "web".into(),
                series: "cpu".parse().unwrap(),
                limit: 1,
            },
        ];
        for mistake in mistakes {
            assert!(mistake.status().is_client_error(), "{mistake}");
            let reason = mistake.to_string();
            assert_eq!(mistake.public_message(), reason);
            assert_eq!(AppError::from(mistake), AppError::Invalid(reason));
        }
        for failure in [
            Error::Unavailable,
            Error::Database(sqlx::Error::PoolTimedOut),
        ] {
            assert_eq!(failure.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(failure.code(), ErrorCode::Unavailable);
            assert!(!failure.public_message().contains("pool"), "{failure}");
            assert_eq!(AppError::from(failure), AppError::Unavailable);
        }
    }
}
