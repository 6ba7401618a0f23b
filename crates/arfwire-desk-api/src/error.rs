//! Errors of the API, as JSON with the right status code.

use std::time::Duration;

use crate::api::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable token, or an unknown, revoked or expired one.
    #[error("authentication required: send a valid, unexpired token")]
    Unauthorized,
    /// The token's role does not allow this.
    #[error("this needs the {0} role")]
    Forbidden(&'static str),
    /// No such object.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request itself is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The state does not allow it (a status change that is not a valid transition).
    #[error("{0}")]
    Conflict(String),
    /// Over the token's rate.
    #[error("too many requests")]
    TooManyRequests(Duration),
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Something else failed.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Database(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooManyRequests(_) => "rate_limited",
            ApiError::Database(_) | ApiError::Internal(_) => "internal",
        }
    }

    /// Headers that go with the status (`WWW-Authenticate`, `Retry-After`).
    pub(crate) fn decorate(&self, response: &mut Response) {
        match self {
            ApiError::Unauthorized => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"arfwire-desk\""),
                );
            }
            ApiError::TooManyRequests(wait) => {
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            _ => {}
        }
    }

    pub(crate) fn log(&self) {
        match self {
            ApiError::Database(e) => tracing::error!(error = %e, "desk API database error"),
            ApiError::Internal(e) => tracing::error!(error = %e, "desk API internal error"),
            _ => {}
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let body = json!({ "error": self.code(), "message": self.to_string() });
        let mut response = (self.status(), Json(body)).into_response();
        self.decorate(&mut response);
        response
    }
}

/// Result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;
