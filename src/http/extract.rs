//! Extractors that turn bad input into problem+json: JSON bodies, path ids, queries and the
//! command headers (`If-Match`, `Idempotency-Key`, `X-Correlation-Id`).

use super::error::ApiError;
use crate::error::Code;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
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
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        check_json_type(content_type)?;
        let raw = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    Code::PayloadTooLarge,
                    format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::new(Code::UnreadableBody, e.body_text())
            }
        })?;
        let value = serde_json::from_slice(&raw).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::new(Code::InvalidBody, e.to_string()),
            _ => ApiError::new(
                Code::MalformedJson,
                format!("the body is not valid JSON: {e}"),
            ),
        })?;
        Ok(JsonBody { value, raw })
    }
}

/// Accepts a JSON media type (`application/json`, `application/…+json`) whose charset, if it
/// names one, is UTF-8: JSON is UTF-8 (RFC 8259), and a body read as UTF-8 under another
/// declared charset would be read as something its sender did not send.
fn check_json_type(content_type: &str) -> Result<(), ApiError> {
    let mut parts = content_type.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let json = media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"));
    if !json {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "the body must be JSON with Content-Type: application/json",
        ));
    }
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !value.eq_ignore_ascii_case("utf-8") {
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                format!("the body must be UTF-8 JSON; charset={value} is not accepted"),
            ));
        }
    }
    Ok(())
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
                ApiError::new(
                    Code::InvalidPath,
                    format!("{} (ids are UUIDs)", e.body_text()),
                )
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
            .map_err(|e| ApiError::new(Code::InvalidQuery, e.body_text()))
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
                ApiError::new(
                    Code::InvalidIfMatch,
                    "If-Match must be an ETag from this API, e.g. \"3\"",
                )
            })?),
            Some(Err(_)) => {
                return Err(ApiError::new(Code::InvalidIfMatch, "If-Match is not ASCII"));
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
                return Err(ApiError::new(
                    Code::InvalidIdempotencyKey,
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

/// Reads an optional RFC 3339 instant of a query string (`as_of`, `since`, `until`). A `+`
/// that was not written `%2B` arrives as a space (form encoding), so a space before a valid
/// offset at the end is read as the `+` it was: `2026-03-01T10:00:00 01:00` is
/// `2026-03-01T10:00:00+01:00`. Use with `#[serde(default, deserialize_with = "…")]`.
pub fn query_instant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let text = String::deserialize(d)?;
    parse_instant(&text).map(Some).map_err(D::Error::custom)
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    let parse = |t: &str| DateTime::parse_from_rfc3339(t).map(|at| at.with_timezone(&Utc));
    parse(text)
        .or_else(|e| match offset_with_a_space(text) {
            Some(fixed) => parse(&fixed),
            None => Err(e),
        })
        .map_err(|_| {
            format!(
                "{text:?} is not an RFC 3339 instant like 2026-03-01T10:00:00Z or \
                 2026-03-01T10:00:00%2B01:00 (write the + of an offset as %2B)"
            )
        })
}

/// `…T10:00:00 01:00` as `…T10:00:00+01:00`: the text with the space before a final
/// `hh:mm` offset turned back into a `+`.
fn offset_with_a_space(text: &str) -> Option<String> {
    let split = text.len().checked_sub(6)?;
    let (time, offset) = text.split_at_checked(split)?;
    let digits = offset.as_bytes();
    let is_offset = digits[0] == b' '
        && digits[3] == b':'
        && [1, 2, 4, 5].iter().all(|&i| digits[i].is_ascii_digit());
    is_offset.then(|| format!("{time}+{}", &offset[1..]))
}

/// Refuses a query that asks for a view as of an instant *and* at least as fresh as a
/// position: the one excludes the other, and ignoring either would answer another question.
/// The point of the past a read asks for: `as_of` (an instant) or `as_of_position` (a position
/// as the tenant sees it), at most one of them, and neither with `min_position`.
pub fn past_point(
    positions: &crate::http::positions::Positions,
    tenant: crate::domain::TenantId,
    as_of: Option<DateTime<Utc>>,
    as_of_position: Option<&str>,
    min_position: &Option<String>,
) -> Result<Option<crate::app::PastPoint>, ApiError> {
    use crate::app::PastPoint;
    let past = as_of.map(|_| ()).or(as_of_position.map(|_| ()));
    as_of_or_min_position(&past, min_position)?;
    let position = positions.query(tenant, "as_of_position", as_of_position)?;
    match (as_of, position) {
        (Some(_), Some(_)) => Err(ApiError::new(
            Code::InvalidQuery,
            "as_of (an instant) and as_of_position (a log position) name the same thing two \
             ways; send one",
        )),
        (Some(at), None) => Ok(Some(PastPoint::Instant(at))),
        (None, Some(n)) => Ok(Some(PastPoint::Position(n))),
        (None, None) => Ok(None),
    }
}

pub fn as_of_or_min_position<T, U>(
    as_of: &Option<T>,
    min_position: &Option<U>,
) -> Result<(), ApiError> {
    if as_of.is_some() && min_position.is_some() {
        return Err(ApiError::new(
            Code::AsOfWithMinPosition,
            "as_of (a view of the past) and min_position (a view at least this fresh) cannot be \
             asked together; send one",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offsets_plus_that_arrived_as_a_space_is_read_as_a_plus() {
        let plus = parse_instant("2026-03-01T10:00:00+01:00").unwrap();
        assert_eq!(parse_instant("2026-03-01T10:00:00 01:00").unwrap(), plus);
        assert_eq!(parse_instant("2026-03-01T09:00:00Z").unwrap(), plus);
        assert_eq!(
            parse_instant("2026-03-01T10:00:00.250 01:00").unwrap(),
            plus + chrono::Duration::milliseconds(250)
        );
        for bad in [
            "yesterday",
            "2026-03-01T10:00:00 1:00",
            "2026-03-01 10:00:00",
            " 01:00",
            "",
        ] {
            let e = parse_instant(bad).unwrap_err();
            assert!(e.contains("%2B"), "{bad:?}: {e}");
        }
    }
}
