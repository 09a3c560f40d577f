//! Extractors that turn bad input into problem+json: JSON bodies, path ids, queries and the
//! command headers (`If-Match`, `Idempotency-Key`, `X-Correlation-Id`).

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body, and its raw bytes (hashed for idempotency).
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        if !json_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "the body must be JSON with Content-Type: application/json",
            ));
        }
        let raw = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "Payload too large",
                    format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::bad_request("unreadable_body", e.body_text())
            }
        })?;
        let value = serde_json::from_slice(&raw).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "Invalid body",
                e.to_string(),
            ),
            _ => {
                ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            }
        })?;
        Ok(JsonBody { value, raw })
    }
}

/// Path parameters; a malformed id is a 400 `invalid_path`.
pub struct ValidPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ValidPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ValidPath(v))
            .map_err(|e| {
                ApiError::bad_request("invalid_path", format!("{} (ids are UUIDs)", e.body_text()))
            })
    }
}

/// Query parameters; a malformed one is a 400 `invalid_query`.
pub struct ValidQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ValidQuery(v))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// The headers that shape a command.
pub struct CommandHeaders {
    pub if_match: Option<u64>,
    pub idempotency_key: Option<String>,
    pub correlation_id: Uuid,
}

impl<S: Send + Sync> FromRequestParts<S> for CommandHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let text = |name: &str| parts.headers.get(name).map(|v| v.to_str().map(str::trim));
        let if_match = match text("if-match") {
            None => None,
            Some(Ok("*")) => None,
            Some(Ok(v)) => Some(parse_etag(v).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_if_match",
                    "If-Match must be an ETag from this API, e.g. \"3\"",
                )
            })?),
            Some(Err(_)) => {
                return Err(ApiError::bad_request(
                    "invalid_if_match",
                    "If-Match is not ASCII",
                ));
            }
        };
        let idempotency_key = match text("idempotency-key") {
            None => None,
            Some(Ok(k))
                if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Some(k.to_owned())
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                ));
            }
        };
        let correlation_id = ["x-correlation-id", "x-request-id"]
            .iter()
            .find_map(|h| {
                text(h)
                    .and_then(Result::ok)
                    .and_then(|v| Uuid::parse_str(v).ok())
            })
            .unwrap_or_else(Uuid::now_v7);
        Ok(CommandHeaders {
            if_match,
            idempotency_key,
            correlation_id,
        })
    }
}

/// The ETag of a stream version: `"3"`.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

fn parse_etag(v: &str) -> Option<u64> {
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
        .parse()
        .ok()
}
