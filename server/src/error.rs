use app::{
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

/// Every failure the server reports. Client mistakes become 4xx with a message saying what to fix;
/// everything else is logged in full and reported as unavailable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidRoom(#[from] InvalidRoom),
    #[error(transparent)]
    InvalidEvent(#[from] InvalidEvent),
    #[error(transparent)]
    InvalidSample(#[from] InvalidSample),
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
    #[error("the event store is unavailable")]
    Unavailable,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("embedded postgres: {0}")]
    EmbeddedPostgres(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Something the server needs to run could not be set up or shut down.
    #[error("{0}")]
    Lifecycle(String),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidRoom(_) => ErrorCode::InvalidRoom,
            Self::InvalidEvent(_) => ErrorCode::InvalidEvent,
            Self::InvalidSample(_) => ErrorCode::InvalidSample,
            Self::BadRequest { .. } => ErrorCode::BadFrame,
            Self::TooManySeries { .. } => ErrorCode::TooManySeries,
            _ => ErrorCode::Unavailable,
        }
    }

    /// The message a client sees: the full text for its own mistakes, nothing internal otherwise.
    pub fn public_message(&self) -> String {
        match self.code() {
            ErrorCode::Unavailable => "the server could not complete the request; try again".into(),
            _ => self.to_string(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { status, .. } => *status,
            Self::InvalidRoom(_) | Self::InvalidSample(_) | Self::TooManySeries { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::InvalidEvent(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// For pages, which show only what a client may see: logs the error in full and hands over its
/// public message.
pub fn for_page(what: &'static str) -> impl FnOnce(Error) -> String {
    move |e| {
        tracing::error!(error = %e, "{what} failed");
        e.public_message()
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
    axum::extract::rejection::BytesRejection,
    axum::extract::rejection::StringRejection
);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.code() == ErrorCode::Unavailable {
            tracing::error!(error = %self, "request failed");
        }
        let body = json!({ "error": self.code(), "message": self.public_message() });
        (self.status(), Json(body)).into_response()
    }
}
