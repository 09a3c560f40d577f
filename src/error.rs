//! The stable codes of the service's refusals and failures, shared by every interface.
//!
//! Clients are written against these codes, not against messages: HTTP puts one in the
//! problem's `code` (and its `type`), the NATS request/reply service in `Nats-Service-Error`.
//! Each code is spelled once, here; what a code means to HTTP (its status, a problem's title,
//! a `Retry-After`) is mapped in one place, `http::error::problem`, which the NATS service uses
//! for its status too.

use std::fmt;

/// Declares [`Code`] and its text, each code spelled once.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// A stable, machine-readable code of a refusal or a failure.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code.
            pub const ALL: &[Code] = &[$(Code::$variant,)*];

            /// The code as clients see it (`snake_case`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }
        }
    };
}

codes! {
    // The request as sent.
    /// The body is not JSON.
    MalformedJson = "malformed_json",
    /// The body could not be read.
    UnreadableBody = "unreadable_body",
    /// A path segment is not what the route takes (ids are UUIDs).
    InvalidPath = "invalid_path",
    /// A query parameter is malformed.
    InvalidQuery = "invalid_query",
    /// `as_of` and `min_position` asked together.
    AsOfWithMinPosition = "as_of_with_min_position",
    InvalidIfMatch = "invalid_if_match",
    InvalidIdempotencyKey = "invalid_idempotency_key",
    InvalidLastEventId = "invalid_last_event_id",
    /// A `Last-Event-ID` past the end of the log (the database was restored from an older
    /// backup, or the id is another deployment's): the client must restart without it.
    LastEventIdBeyondLog = "last_event_id_beyond_log",
    /// More than one `Authorization` header.
    DuplicateAuthorization = "duplicate_authorization",
    /// A position past the end of the log (from a restored or another database?).
    PositionBeyondLog = "position_beyond_log",
    /// A request that cannot be read at all (the HTTP parser refused it, or an undecodable
    /// NATS request).
    MalformedRequest = "malformed_request",
    PayloadTooLarge = "payload_too_large",
    UriTooLong = "uri_too_long",
    UnsupportedMediaType = "unsupported_media_type",
    HeadersTooLarge = "headers_too_large",
    /// A JSON body that does not have the request's shape.
    InvalidBody = "invalid_body",

    // Who asks.
    Unauthorized = "unauthorized",
    /// A write of security info needs a more recent or stronger sign-in (RFC 9470).
    StepUpRequired = "step_up_required",
    Forbidden = "forbidden",
    /// A token of another tenant.
    TenantMismatch = "tenant_mismatch",
    RevealRequiresAuditor = "reveal_requires_auditor",

    // What is asked for.
    MethodNotFound = "method_not_found",
    NotFound = "not_found",
    MethodNotAllowed = "method_not_allowed",

    // The domain's refusals (see `domain::DomainError`).
    MethodKindExists = "method_kind_exists",
    AlternatePhoneRequiresMobile = "alternate_phone_requires_mobile",
    MobilePhoneHasAlternate = "mobile_phone_has_alternate",
    AdminOffboarded = "admin_offboarded",
    /// Erasure comes after offboarding.
    AdminNotOffboarded = "admin_not_offboarded",
    /// The admin's values were erased: their stream takes no more commands.
    AdminErased = "admin_erased",
    InvalidEraseReason = "invalid_erase_reason",
    InvalidPhoneNumber = "invalid_phone_number",
    PhoneNumberTypeNotAllowed = "phone_number_type_not_allowed",
    InvalidEmail = "invalid_email",
    EmailInTenantDomain = "email_in_tenant_domain",
    ExtensionNotAllowed = "extension_not_allowed",
    UnknownMethodKind = "unknown_method_kind",
    InvalidDomain = "invalid_domain",
    TooManyDomains = "too_many_domains",
    UnknownResetPolicy = "unknown_reset_policy",
    UnknownNoticeKind = "unknown_notice_kind",
    UnknownLanguage = "unknown_language",

    // Commands.
    /// `If-Match` names another version than the stream's.
    VersionMismatch = "version_mismatch",
    /// An `Idempotency-Key` used before with another request.
    IdempotencyKeyReused = "idempotency_key_reused",
    /// Too many concurrent writers on one stream; retry.
    WriteContention = "write_contention",
    /// Too many requests of a token or a source address, or streams of a tenant; retry after
    /// `Retry-After`.
    RateLimited = "rate_limited",
    /// The request did not finish within the request timeout; a write may or may not have been
    /// made: repeat it with the same `Idempotency-Key` to learn which.
    RequestTimeout = "request_timeout",

    // The service.
    /// A projection has not reached the asked position yet; retry.
    ViewNotFresh = "view_not_fresh",
    /// The database cannot be reached, written or read; retry.
    DatabaseUnavailable = "database_unavailable",
    /// Readiness: the database does not answer.
    NotReady = "not_ready",
    /// A failure of the service's own (logged, with the request id).
    InternalError = "internal_error",
    /// The log no longer holds what a signed checkpoint covered (docs/audit.md): proofs stop.
    LogDiverged = "log_diverged",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As clients see it: the text.
impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// So that a test reads `assert_eq!(err.code(), "invalid_email")`.
impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_is_distinct_and_snake_case() {
        let texts: HashSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts.len(), Code::ALL.len());
        for text in texts {
            assert!(
                text.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{text}"
            );
        }
    }
}
