//! Why the domain refuses a command. Each refusal has a stable `code` that the API exposes.

use super::{LineType, MethodKind};
use crate::error::Code;

/// A command that breaks a rule of the domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    InvalidPhoneNumber(String),
    #[error("{0}")]
    InvalidEmail(String),
    #[error(
        "the alternate email is in the tenant's own domain {0}; use an address outside the organisation"
    )]
    EmailInTenantDomain(String),
    #[error("a {0} method already exists; change it instead of adding another")]
    MethodKindExists(MethodKind),
    #[error("an alternate_phone needs a mobile_phone first")]
    AlternatePhoneRequiresMobile,
    #[error(
        "the mobile_phone cannot be removed while an alternate_phone exists; remove the alternate first or change the mobile number"
    )]
    MobilePhoneHasAlternate,
    #[error("{line} cannot be a {kind}{}", line_type_hint(*.kind))]
    PhoneNumberTypeNotAllowed { kind: MethodKind, line: LineType },
    #[error("only an office_phone may carry an extension")]
    ExtensionNotAllowed,
    #[error("no method with this id")]
    MethodNotFound,
    #[error("the admin was offboarded; their security info cannot change")]
    AdminOffboarded,
    #[error("only an offboarded admin's values can be erased; offboard them first")]
    AdminNotOffboarded,
    #[error("the admin's values were erased; nothing about them can change any more")]
    AdminErased,
    #[error("the reason must be 1 to 500 characters without control characters")]
    InvalidEraseReason,
    #[error(
        "unknown method kind {0:?}; expected mobile_phone, alternate_phone, office_phone or email"
    )]
    UnknownMethodKind(String),
    #[error("the settings list {given} domains; at most {max} are allowed")]
    TooManyDomains { given: usize, max: usize },
    #[error("invalid domain {0:?}")]
    InvalidDomain(String),
    #[error("unknown reset policy {0:?}; expected email_and_mobile_phone or any_two_methods")]
    UnknownResetPolicy(String),
    #[error(
        "unknown notice kind {0:?}; expected method_added, method_changed, method_removed or admin_offboarded"
    )]
    UnknownNoticeKind(String),
    #[error("unknown language {0:?}; expected en or da")]
    UnknownLanguage(String),
}

impl DomainError {
    /// The stable machine-readable code of this refusal.
    pub fn code(&self) -> Code {
        match self {
            DomainError::InvalidPhoneNumber(_) => Code::InvalidPhoneNumber,
            DomainError::InvalidEmail(_) => Code::InvalidEmail,
            DomainError::EmailInTenantDomain(_) => Code::EmailInTenantDomain,
            DomainError::MethodKindExists(_) => Code::MethodKindExists,
            DomainError::AlternatePhoneRequiresMobile => Code::AlternatePhoneRequiresMobile,
            DomainError::MobilePhoneHasAlternate => Code::MobilePhoneHasAlternate,
            DomainError::ExtensionNotAllowed => Code::ExtensionNotAllowed,
            DomainError::PhoneNumberTypeNotAllowed { .. } => Code::PhoneNumberTypeNotAllowed,
            DomainError::MethodNotFound => Code::MethodNotFound,
            DomainError::AdminOffboarded => Code::AdminOffboarded,
            DomainError::AdminNotOffboarded => Code::AdminNotOffboarded,
            DomainError::AdminErased => Code::AdminErased,
            DomainError::InvalidEraseReason => Code::InvalidEraseReason,
            DomainError::UnknownMethodKind(_) => Code::UnknownMethodKind,
            DomainError::InvalidDomain(_) => Code::InvalidDomain,
            DomainError::TooManyDomains { .. } => Code::TooManyDomains,
            DomainError::UnknownResetPolicy(_) => Code::UnknownResetPolicy,
            DomainError::UnknownNoticeKind(_) => Code::UnknownNoticeKind,
            DomainError::UnknownLanguage(_) => Code::UnknownLanguage,
        }
    }
}

/// What a refused line type's detail adds: which numbers the kind does take.
fn line_type_hint(kind: MethodKind) -> &'static str {
    match kind {
        MethodKind::MobilePhone => "; a mobile_phone must be a mobile number",
        _ => {
            "; phones take mobile, fixed-line and VoIP numbers, never premium-rate, \
             shared-cost, freephone, universal access, personal, pager or voicemail numbers"
        }
    }
}
