//! Security methods and their values, parsed once at the edge (parse, don't validate).

use super::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The four kinds of security method. A method's kind never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodKind {
    MobilePhone,
    AlternatePhone,
    OfficePhone,
    /// The *alternate* email: an address outside the tenant's own domains.
    Email,
}

impl MethodKind {
    /// All kinds, in display order.
    pub const ALL: [MethodKind; 4] = [
        MethodKind::MobilePhone,
        MethodKind::AlternatePhone,
        MethodKind::OfficePhone,
        MethodKind::Email,
    ];

    /// The `snake_case` name used in the API and in NATS subjects.
    pub fn as_str(self) -> &'static str {
        match self {
            MethodKind::MobilePhone => "mobile_phone",
            MethodKind::AlternatePhone => "alternate_phone",
            MethodKind::OfficePhone => "office_phone",
            MethodKind::Email => "email",
        }
    }

    /// Parses the API name of a kind.
    pub fn parse(name: &str) -> Result<Self, DomainError> {
        MethodKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| DomainError::UnknownMethodKind(name.to_owned()))
    }

    /// Whether values of this kind are phone numbers.
    pub fn is_phone(self) -> bool {
        self != MethodKind::Email
    }
}

impl fmt::Display for MethodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A phone number that parsed and is valid for its country, kept in E.164
/// (`+4520123456`), with an optional extension written `x<digits>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneNumber {
    e164: String,
    extension: Option<String>,
}

impl PhoneNumber {
    /// Parses a number as people type it: `+45 20 12 34 56`, `+1 (425) 555-0100`,
    /// `+1 425 555 0100 x123`. The country code is required.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(DomainError::InvalidPhoneNumber(
                "the phone number is empty".into(),
            ));
        }
        if trimmed.len() > 64 {
            return Err(DomainError::InvalidPhoneNumber(
                "the phone number is too long".into(),
            ));
        }
        if !trimmed.starts_with('+') {
            return Err(DomainError::InvalidPhoneNumber(
                "the phone number must start with + and the country code, e.g. +45 20 12 34 56"
                    .into(),
            ));
        }
        let number = phonenumber::parse(None, trimmed).map_err(|e| {
            DomainError::InvalidPhoneNumber(format!("the phone number does not parse: {e}"))
        })?;
        if !phonenumber::is_valid(&number) {
            return Err(DomainError::InvalidPhoneNumber(
                "the phone number is not valid for its country".into(),
            ));
        }
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        let extension = number
            .extension()
            .map(|x| x.to_string())
            .filter(|x| !x.is_empty());
        Ok(PhoneNumber { e164, extension })
    }

    /// The canonical stored form: E.164, then `x<extension>` if there is one.
    pub fn canonical(&self) -> String {
        match &self.extension {
            Some(ext) => format!("{}x{ext}", self.e164),
            None => self.e164.clone(),
        }
    }

    /// Whether the number carries an extension.
    pub fn has_extension(&self) -> bool {
        self.extension.is_some()
    }
}

/// A syntactically valid email address with its domain lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlternateEmail {
    local: String,
    domain: String,
}

impl AlternateEmail {
    /// Parses an address; it must have a dotted domain name (no IP literals, no bare hosts).
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let trimmed = input.trim();
        let invalid =
            |why: &str| DomainError::InvalidEmail(format!("invalid email address: {why}"));
        if trimmed.len() > 254 {
            return Err(invalid("longer than 254 characters"));
        }
        let parsed = email_address::EmailAddress::parse_with_options(
            trimmed,
            email_address::Options::default().without_display_text(),
        )
        .map_err(|e| invalid(&e.to_string()))?;
        let domain = TenantDomain::parse(parsed.domain()).map_err(|_| invalid("bad domain"))?;
        Ok(AlternateEmail {
            local: parsed.local_part().to_owned(),
            domain: domain.0,
        })
    }

    /// The canonical stored form: `local@domain` with the domain lower-cased.
    pub fn canonical(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// The lower-cased domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

/// A domain name of the tenant's own (e.g. `contoso.com`), lower-cased.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantDomain(String);

impl TenantDomain {
    /// Parses a DNS name with at least two labels of letters, digits and hyphens.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let name = input.trim().trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let labels: Vec<&str> = name.split('.').collect();
        let tld_ok = labels
            .last()
            .is_some_and(|t| t.bytes().any(|b| b.is_ascii_alphabetic()));
        if name.len() > 253 || labels.len() < 2 || !labels.iter().all(|l| label_ok(l)) || !tld_ok {
            return Err(DomainError::InvalidDomain(input.to_owned()));
        }
        Ok(TenantDomain(name))
    }

    /// The domain name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `domain` is this domain or one of its subdomains.
    pub fn contains(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        domain == self.0
            || domain
                .strip_suffix(&self.0)
                .is_some_and(|rest| rest.ends_with('.'))
    }
}

/// The domain part of a stored email value, if it has one.
pub fn email_domain(value: &str) -> Option<&str> {
    value.rsplit_once('@').map(|(_, d)| d)
}

/// A parsed method value, ready to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MethodValue {
    Phone(PhoneNumber),
    Email(AlternateEmail),
}

impl MethodValue {
    /// Parses `input` as a value of `kind`. Extensions are only allowed on office phones.
    pub fn parse(kind: MethodKind, input: &str) -> Result<Self, DomainError> {
        if kind == MethodKind::Email {
            return AlternateEmail::parse(input).map(MethodValue::Email);
        }
        let phone = PhoneNumber::parse(input)?;
        if phone.has_extension() && kind != MethodKind::OfficePhone {
            return Err(DomainError::ExtensionNotAllowed);
        }
        Ok(MethodValue::Phone(phone))
    }

    /// The canonical stored form.
    pub fn canonical(&self) -> String {
        match self {
            MethodValue::Phone(p) => p.canonical(),
            MethodValue::Email(e) => e.canonical(),
        }
    }
}

/// Loads the numbering plans' metadata that parsing and formatting a number use, once per
/// process: ≈ 50 ms of work that would otherwise fall on the first number parsed or masked (a
/// first request, or a replay's fold). The binary starts it on a thread of its own for `serve`
/// and `replay`; it holds ≈ 15 MB, which the commands that never see a number do not take.
pub fn load_phone_metadata() {
    let _ = &*phonenumber::metadata::DATABASE;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_accepted_as_typed_and_stored_in_e164() {
        let p = PhoneNumber::parse("+45 20 12 34 56").unwrap();
        assert_eq!(p.canonical(), "+4520123456");
        let p = PhoneNumber::parse("+1 (425) 555-0100").unwrap();
        assert_eq!(p.canonical(), "+14255550100");
    }

    #[test]
    fn a_number_that_is_not_valid_for_its_country_is_rejected() {
        for bad in [
            "+45 1234",
            "+1 (000) 000-0000",
            "20 12 34 56",
            "",
            "+",
            "hello",
        ] {
            let err = PhoneNumber::parse(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_phone_number", "{bad}");
        }
    }

    #[test]
    fn only_an_office_phone_may_carry_an_extension() {
        let office = MethodValue::parse(MethodKind::OfficePhone, "+1 425 555 0100 x123").unwrap();
        assert_eq!(office.canonical(), "+14255550100x123");
        let err = MethodValue::parse(MethodKind::MobilePhone, "+1 425 555 0100 x123").unwrap_err();
        assert_eq!(err, DomainError::ExtensionNotAllowed);
    }

    #[test]
    fn emails_are_checked_and_their_domain_lowercased() {
        let e = AlternateEmail::parse(" Jane.Doe@Example.COM ").unwrap();
        assert_eq!(e.canonical(), "Jane.Doe@example.com");
        for bad in [
            "jane",
            "jane@",
            "@example.com",
            "jane@localhost",
            "a b@example.com",
            "jane@[127.0.0.1]",
        ] {
            assert_eq!(
                AlternateEmail::parse(bad).unwrap_err().code(),
                "invalid_email",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_tenant_domain_contains_itself_and_its_subdomains_only() {
        let d = TenantDomain::parse("Contoso.com").unwrap();
        assert!(d.contains("contoso.com"));
        assert!(d.contains("mail.CONTOSO.com"));
        assert!(!d.contains("notcontoso.com"));
        assert!(!d.contains("contoso.com.evil.net"));
        assert!(TenantDomain::parse("localhost").is_err());
        assert!(TenantDomain::parse("-bad-.com").is_err());
    }
}
