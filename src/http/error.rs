//! Every error of the API as `application/problem+json` (RFC 9457) with a stable `code`.
//! The mapping from the service's errors to HTTP statuses lives here and nowhere else.

use crate::app::AppError;
use crate::domain::DomainError;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Seconds, for a `Retry-After` header on 503s.
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with the given status, code, title and detail.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail,
        )
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, "Forbidden", detail)
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, "Bad request", detail)
    }

    fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("urn:recovery-info:problem:{}", self.code),
            "title": self.title,
            "status": self.status.as_u16(),
            "code": self.code,
            "detail": self.detail,
        });
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let (status, title) = match &e {
            DomainError::MethodNotFound => (StatusCode::NOT_FOUND, "Method not found"),
            DomainError::MethodKindExists(_)
            | DomainError::AlternatePhoneRequiresMobile
            | DomainError::MobilePhoneHasAlternate
            | DomainError::AdminOffboarded => (
                StatusCode::CONFLICT,
                "The security info does not allow this change",
            ),
            DomainError::InvalidPhoneNumber(_)
            | DomainError::InvalidEmail(_)
            | DomainError::EmailInTenantDomain(_)
            | DomainError::ExtensionNotAllowed
            | DomainError::PhoneNumberTypeNotAllowed { .. }
            | DomainError::UnknownMethodKind(_)
            | DomainError::InvalidDomain(_)
            | DomainError::TooManyDomains { .. }
            | DomainError::UnknownResetPolicy(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "Invalid value")
            }
        };
        ApiError::new(status, e.code(), title, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::error!(error = %e, "database unavailable");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "Service unavailable",
                "the database cannot be reached or written; retry shortly",
            )
            .retry_after(2);
        }
        tracing::error!(error = %e, "store error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal error",
            "an internal error occurred; it has been logged",
        )
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let detail = e.to_string();
        match e {
            AppError::Domain(d) => d.into(),
            AppError::Store(s) => s.into(),
            AppError::PreconditionFailed { .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "version_mismatch",
                "Precondition failed",
                detail,
            ),
            AppError::IdempotencyKeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
                detail,
            ),
            AppError::Contention => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "write_contention",
                "Too many concurrent writers",
                detail,
            )
            .retry_after(1),
            // Neither detail names a position: the log's head and a projection's checkpoint
            // count every tenant's events (see `http::positions`); the log has them.
            AppError::NotFresh { wanted, reached } => {
                tracing::debug!(wanted, reached, "view not fresh");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "view_not_fresh",
                    "View not fresh enough",
                    "the view has not reached the asked position yet; retry shortly",
                )
                .retry_after(1)
            }
            AppError::PositionBeyondLog { wanted, head } => {
                tracing::debug!(wanted, head, "position beyond the log");
                ApiError::bad_request(
                    "position_beyond_log",
                    "the position is beyond the end of the log (from a restored or another \
                     database?)",
                )
            }
        }
    }
}
