//! Security methods and their values, parsed once at the edge (parse, don't validate).

use super::DomainError;
use super::email::AlternateEmail;
use super::phone::{LineType, PhoneNumber};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The four kinds of security method. A method's kind never changes.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
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

    /// Whether a number of `line` may be a method of this kind. Reset codes are sent to these
    /// numbers, so none takes a line whose cost falls on the caller or whose owner is paid for
    /// the calls (premium-rate, shared-cost, freephone, universal access, personal numbers),
    /// nor one that does not reach a person (voicemail access, pagers, short codes). A mobile
    /// phone receives text messages: it must be a mobile number, or a number of a country
    /// whose plan does not tell mobile from fixed-line numbers.
    fn accepts(self, line: LineType) -> bool {
        use LineType::*;
        match self {
            MethodKind::MobilePhone => matches!(line, Mobile | FixedLineOrMobile),
            MethodKind::AlternatePhone | MethodKind::OfficePhone => {
                matches!(line, Mobile | FixedLineOrMobile | FixedLine | Voip)
            }
            MethodKind::Email => false,
        }
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

/// A parsed method value, ready to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MethodValue {
    Phone(PhoneNumber),
    Email(AlternateEmail),
}

impl MethodValue {
    /// The canonical stored form.
    pub fn canonical(&self) -> String {
        match self {
            MethodValue::Phone(p) => p.canonical(),
            MethodValue::Email(e) => e.canonical(),
        }
    }
}

/// A method's value as the caller typed it, parsed once at the edge into each form a value
/// takes: a phone number and an email address (at most one of them parses).
///
/// Which form counts is the method kind's ([`MethodInput::for_kind`]), and the decider picks
/// it: for a change the kind is the method's, which only the admin's state knows; and a
/// command's refusal by the state comes before its value's (a change of a method that does not
/// exist is `method_not_found`, an add to an offboarded admin `admin_offboarded`, whatever the
/// value), so a value's error is kept here until the decider reaches it. Each parse fails on
/// the first character of the other form's input (no leading `+`, no `@`), so parsing both
/// costs next to nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodInput {
    phone: Result<PhoneNumber, DomainError>,
    email: Result<AlternateEmail, DomainError>,
}

impl MethodInput {
    /// Parses `input` as a phone number and as an email address.
    pub fn parse(input: &str) -> Self {
        MethodInput {
            phone: PhoneNumber::parse(input),
            email: AlternateEmail::parse(input),
        }
    }

    /// The value of a method of `kind`: the input's form for the kind, or why it is not one.
    /// Extensions are only allowed on office phones; each kind of phone takes only the line
    /// types [`MethodKind::accepts`] lists.
    pub fn for_kind(&self, kind: MethodKind) -> Result<MethodValue, DomainError> {
        if kind == MethodKind::Email {
            return self.email.clone().map(MethodValue::Email);
        }
        let phone = self.phone.clone()?;
        if phone.has_extension() && kind != MethodKind::OfficePhone {
            return Err(DomainError::ExtensionNotAllowed);
        }
        if !kind.accepts(phone.line_type()) {
            return Err(DomainError::PhoneNumberTypeNotAllowed {
                kind,
                line: phone.line_type(),
            });
        }
        Ok(MethodValue::Phone(phone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `input` parsed as a value of `kind`, as the decider reads it.
    fn parse(kind: MethodKind, input: &str) -> Result<MethodValue, DomainError> {
        MethodInput::parse(input).for_kind(kind)
    }

    #[test]
    fn only_an_office_phone_may_carry_an_extension() {
        let office = parse(MethodKind::OfficePhone, "+1 425 555 0100 x123").unwrap();
        assert_eq!(office.canonical(), "+14255550100x123");
        let err = parse(MethodKind::MobilePhone, "+1 425 555 0100 x123").unwrap_err();
        assert_eq!(err, DomainError::ExtensionNotAllowed);
    }

    #[test]
    fn a_mobile_phone_must_be_a_mobile_number() {
        for ok in ["+44 7911 123456", "+45 20 12 34 56", "+1 425 555 0100"] {
            parse(MethodKind::MobilePhone, ok).unwrap();
        }
        let err = parse(MethodKind::MobilePhone, "+44 20 7183 8750").unwrap_err();
        assert_eq!(err.code(), "phone_number_type_not_allowed");
        assert!(err.to_string().contains("a fixed-line number"), "{err}");
        // A landline is a voice fallback or an office's number.
        for kind in [MethodKind::AlternatePhone, MethodKind::OfficePhone] {
            parse(kind, "+44 20 7183 8750").unwrap();
        }
    }

    #[test]
    fn no_kind_takes_a_number_that_costs_the_caller_or_reaches_no_one() {
        for (number, line) in [
            ("+1 900 555 0199", "a premium-rate number"),
            ("+44 909 879 0000", "a premium-rate number"),
            ("+979 123456789", "a premium-rate number"),
            ("+800 1234 5678", "a freephone (toll-free) number"),
            ("+1 800 555 0199", "a freephone (toll-free) number"),
        ] {
            for kind in [
                MethodKind::MobilePhone,
                MethodKind::AlternatePhone,
                MethodKind::OfficePhone,
            ] {
                let err = parse(kind, number).unwrap_err();
                assert_eq!(err.code(), "phone_number_type_not_allowed", "{number}");
                assert!(err.to_string().contains(line), "{number}: {err}");
            }
        }
    }

    #[test]
    fn an_input_counts_in_the_form_its_kind_takes() {
        let email = MethodInput::parse("jane@example.com");
        assert_eq!(
            email.for_kind(MethodKind::Email).unwrap().canonical(),
            "jane@example.com"
        );
        // For a phone, the phone number's own refusal, as if only that had been parsed.
        for kind in [MethodKind::MobilePhone, MethodKind::OfficePhone] {
            assert_eq!(
                email.for_kind(kind).unwrap_err(),
                PhoneNumber::parse("jane@example.com").unwrap_err()
            );
        }
        let phone = MethodInput::parse("+45 20 12 34 56");
        assert_eq!(
            phone.for_kind(MethodKind::MobilePhone).unwrap().canonical(),
            "+4520123456"
        );
        assert_eq!(
            phone.for_kind(MethodKind::Email).unwrap_err(),
            AlternateEmail::parse("+45 20 12 34 56").unwrap_err()
        );
    }
}
