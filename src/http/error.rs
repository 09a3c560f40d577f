//! Every error of the API as `application/problem+json` (RFC 9457) with a stable `code`.
//! The mapping from the service's codes to HTTP statuses ([`problem`]) lives here and nowhere
//! else.

use super::openapi::Problem;
use crate::app::AppError;
use crate::domain::DomainError;
use crate::error::Code;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Code,
    pub title: &'static str,
    pub detail: String,
    /// Seconds, for a `Retry-After` header on 503s.
    pub retry_after: Option<u32>,
    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750, RFC 9470); `Bearer` when none.
    pub www_authenticate: Option<String>,
}

/// What a code is to HTTP: its status, the problem's title and, for a failure that a retry
/// soon may cure, the seconds of `Retry-After`. The one place where codes meet statuses (the
/// NATS service reports the same statuses).
pub fn problem(code: Code) -> (StatusCode, &'static str, Option<u32>) {
    use Code::*;
    const BAD_REQUEST: (StatusCode, &str, Option<u32>) =
        (StatusCode::BAD_REQUEST, "Bad request", None);
    const REFUSED_CHANGE: (StatusCode, &str, Option<u32>) = (
        StatusCode::CONFLICT,
        "The security info does not allow this change",
        None,
    );
    const INVALID_VALUE: (StatusCode, &str, Option<u32>) =
        (StatusCode::UNPROCESSABLE_ENTITY, "Invalid value", None);
    match code {
        MalformedJson
        | UnreadableBody
        | InvalidPath
        | InvalidQuery
        | AsOfWithMinPosition
        | InvalidIfMatch
        | InvalidIdempotencyKey
        | InvalidLastEventId
        | DuplicateAuthorization
        | PositionBeyondLog => BAD_REQUEST,
        // The titles of hyper's own answers, which `listener` replaces, are their status lines.
        MalformedRequest => (StatusCode::BAD_REQUEST, "Bad Request", None),
        UriTooLong => (StatusCode::URI_TOO_LONG, "URI Too Long", None),
        HeadersTooLarge => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request Header Fields Too Large",
            None,
        ),
        PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Payload too large", None),
        UnsupportedMediaType => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            None,
        ),
        InvalidBody => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid body", None),
        Unauthorized => (StatusCode::UNAUTHORIZED, "Authentication required", None),
        StepUpRequired => (
            StatusCode::UNAUTHORIZED,
            "Step-up authentication required",
            None,
        ),
        Forbidden | TenantMismatch | RevealRequiresAuditor => {
            (StatusCode::FORBIDDEN, "Forbidden", None)
        }
        MethodNotFound => (StatusCode::NOT_FOUND, "Method not found", None),
        NotFound => (StatusCode::NOT_FOUND, "Not found", None),
        MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", None),
        LastEventIdBeyondLog => (
            StatusCode::CONFLICT,
            "The Last-Event-ID is beyond the log",
            None,
        ),
        MethodKindExists
        | AlternatePhoneRequiresMobile
        | MobilePhoneHasAlternate
        | AdminOffboarded
        | AdminNotOffboarded
        | AdminErased => REFUSED_CHANGE,
        InvalidPhoneNumber
        | InvalidEraseReason
        | PhoneNumberTypeNotAllowed
        | InvalidEmail
        | EmailInTenantDomain
        | ExtensionNotAllowed
        | UnknownMethodKind
        | InvalidDomain
        | TooManyDomains
        | UnknownResetPolicy
        | UnknownNoticeKind
        | UnknownLanguage => INVALID_VALUE,
        VersionMismatch => (StatusCode::PRECONDITION_FAILED, "Precondition failed", None),
        IdempotencyKeyReused => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Idempotency key reused",
            None,
        ),
        RateLimited => (StatusCode::TOO_MANY_REQUESTS, "Too many requests", Some(1)),
        RequestTimeout => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The request took too long",
            Some(1),
        ),
        WriteContention => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many concurrent writers",
            Some(1),
        ),
        ViewNotFresh => (
            StatusCode::SERVICE_UNAVAILABLE,
            "View not fresh enough",
            Some(1),
        ),
        DatabaseUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
            Some(2),
        ),
        NotReady => (StatusCode::SERVICE_UNAVAILABLE, "Not ready", None),
        InternalError => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error", None),
        LogDiverged => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "The log differs from a signed checkpoint",
            None,
        ),
    }
}

impl ApiError {
    /// The problem of `code` (its status and title from [`problem`]) with `detail`.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        let (status, title, retry_after) = problem(code);
        ApiError {
            status,
            code,
            title,
            detail: detail.into(),
            retry_after,
            www_authenticate: None,
        }
    }

    /// With a `Retry-After` of `seconds`.
    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// With the `WWW-Authenticate` challenge of a 401.
    pub fn with_www_authenticate(mut self, challenge: String) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("urn:recovery-info:problem:{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            code: self.code,
            detail: &self.detail,
        };
        // A struct of strings and numbers always serializes.
        let body = serde_json::to_string(&body).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = self.www_authenticate.as_deref().unwrap_or("Bearer");
            if let Ok(v) = HeaderValue::from_str(challenge) {
                headers.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        AppError::Store(e).into()
    }
}

impl From<crate::audit::tree::TreeError> for ApiError {
    fn from(e: crate::audit::tree::TreeError) -> Self {
        use crate::audit::tree::TreeError;
        match e {
            TreeError::Store(e) => e.into(),
            TreeError::BeyondLog { size, .. } => ApiError::new(
                Code::PositionBeyondLog,
                format!("the log does not have {size} events yet"),
            ),
            e @ (TreeError::Diverged { .. } | TreeError::Incomplete(_)) => {
                tracing::error!(error = %e, "the Merkle tree cannot answer");
                ApiError::new(Code::LogDiverged, e.to_string())
            }
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let code = e.code();
        let detail = match &e {
            AppError::Store(e) if code == Code::DatabaseUnavailable => {
                tracing::error!(error = %e, "database unavailable");
                "the database cannot be reached or written; retry shortly".to_owned()
            }
            AppError::Store(e) => {
                tracing::error!(error = %e, "store error");
                "an internal error occurred; it has been logged".to_owned()
            }
            // Neither detail names a position: the log's head and a projection's checkpoint
            // count every tenant's events (see `http::positions`); the log has them.
            AppError::NotFresh { wanted, reached } => {
                tracing::debug!(wanted, reached, "view not fresh");
                "the view has not reached the asked position yet; retry shortly".to_owned()
            }
            AppError::PositionBeyondLog { wanted, head } => {
                tracing::debug!(wanted, head, "position beyond the log");
                "the position is beyond the end of the log (from a restored or another \
                 database?)"
                    .to_owned()
            }
            AppError::Domain(_)
            | AppError::PreconditionFailed { .. }
            | AppError::IdempotencyKeyReused
            | AppError::Contention => e.to_string(),
        };
        ApiError::new(code, detail)
    }
}
