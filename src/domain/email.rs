//! Alternate email addresses and the tenant's own domains.
//!
//! An address is checked for what a person can see and mean: no control characters, no
//! invisible ones (zero-width spaces, direction overrides, the byte-order mark), no quoted local
//! parts, no symbols or emoji, no combining accents that stand on their own. It is normalised
//! (NFC, so that an accent typed as a combining mark and the precomposed letter are the same
//! address), and an internationalised domain is kept as its A-label (`xn--…`): that is the
//! form mail is routed by, it compares with the tenant's domains byte for byte, and a mask
//! that shows it cannot pass a look-alike domain off as a familiar one.

use super::DomainError;
use super::phone::{is_invisible, name_char};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// A syntactically valid email address with its domain lower-cased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlternateEmail {
    local: String,
    domain: String,
}

/// The characters of a local part besides letters and digits (RFC 5322's `atext`, and dots).
const LOCAL_SYMBOLS: &str = "!#$%&'*+/=?^_`{|}~-.";

fn invalid(why: impl std::fmt::Display) -> DomainError {
    DomainError::InvalidEmail(format!("invalid email address: {why}"))
}

/// Refuses the characters nobody types on purpose in an address or a domain name.
fn refuse_unseen(text: &str) -> Result<(), DomainError> {
    match text.chars().find(|c| c.is_control() || is_invisible(*c)) {
        Some(c) => Err(invalid(format!("it contains {}", name_char(c)))),
        None => Ok(()),
    }
}

/// Checks the local part, character by character.
fn check_local(local: &str) -> Result<(), DomainError> {
    use unicode_script::{Script, UnicodeScript};
    if local.starts_with('"') {
        return Err(invalid(
            "quoted local parts (\"…\"@) are not accepted; use a plain address",
        ));
    }
    for c in local.chars() {
        if c.is_whitespace() {
            return Err(invalid(format!("it contains {}", name_char(c))));
        }
        if c.is_ascii_alphanumeric() || LOCAL_SYMBOLS.contains(c) {
            continue;
        }
        if c.is_ascii() {
            return Err(invalid(format!(
                "the part before @ contains {}",
                name_char(c)
            )));
        }
        if c.script() == Script::Inherited {
            return Err(invalid(format!(
                "the part before @ contains the combining mark U+{:04X} on its own; type the \
                 accented letter itself",
                c as u32
            )));
        }
        if !(c.is_alphabetic() || c.is_numeric()) {
            return Err(invalid(format!(
                "the part before @ contains {}; only letters, digits and {LOCAL_SYMBOLS} are \
                 accepted",
                name_char(c)
            )));
        }
    }
    Ok(())
}

impl AlternateEmail {
    /// Parses an address; it must have a dotted domain name (no IP literals, no bare hosts).
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let trimmed = input.trim();
        refuse_unseen(trimmed)?;
        let normalised: String = trimmed.nfc().collect();
        if normalised.chars().count() > 254 {
            return Err(invalid("longer than 254 characters"));
        }
        let Some((local, domain)) = normalised.rsplit_once('@') else {
            return Err(invalid("it has no @"));
        };
        if local.is_empty() {
            return Err(invalid("nothing before the @"));
        }
        check_local(local)?;
        let domain = TenantDomain::parse(domain)
            .map_err(|_| invalid(format!("{domain:?} is not a domain name")))?;
        // The remaining syntax (dots, lengths) by the address parser, on the A-label form.
        let ascii_domain = format!("{local}@{}", domain.0);
        let parsed = email_address::EmailAddress::parse_with_options(
            &ascii_domain,
            email_address::Options::default().without_display_text(),
        )
        .map_err(invalid)?;
        // The stored form (the domain as A-labels) may be longer than the input: it must fit
        // too, so that what is stored parses again (found by fuzzing).
        if ascii_domain.chars().count() > 254 {
            return Err(invalid(
                "longer than 254 characters once its domain is in ASCII",
            ));
        }
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

/// A domain name of the tenant's own (e.g. `contoso.com`), lower-cased; an internationalised
/// name as its A-label (`bücher.de` → `xn--bcher-kva.de`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantDomain(String);

impl TenantDomain {
    /// Parses a DNS name with at least two labels of letters, digits and hyphens (after IDNA's
    /// mapping of an internationalised name to ASCII).
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let refused = || DomainError::InvalidDomain(input.to_owned());
        let trimmed = input.trim().trim_end_matches('.');
        if refuse_unseen(trimmed).is_err() {
            return Err(refused());
        }
        let name = if trimmed.is_ascii() {
            trimmed.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii(trimmed).map_err(|_| refused())?
        };
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
            return Err(refused());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(input: &str) -> String {
        match AlternateEmail::parse(input) {
            Ok(e) => panic!("{input:?} was accepted as {}", e.canonical()),
            Err(e) => {
                assert_eq!(e.code(), "invalid_email", "{input:?}");
                e.to_string()
            }
        }
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
            "jane..doe@example.com",
        ] {
            refusal(bad);
        }
    }

    #[test]
    fn invisible_control_and_direction_characters_are_refused() {
        for (input, named) in [
            ("jane\u{200B}@example.com", "invisible character U+200B"),
            ("\u{202E}jane@example.com", "invisible character U+202E"),
            ("jane@exa\u{200D}mple.com", "invisible character U+200D"),
            ("\u{FEFF}jane@example.com", "invisible character U+FEFF"),
            ("ja\u{2066}ne@example.com", "invisible character U+2066"),
            ("jane@example.com\u{0}", "control character U+0000"),
            ("jane\u{7F}@example.com", "control character U+007F"),
            ("jane\u{2028}@example.com", "invisible character U+2028"),
        ] {
            let detail = refusal(input);
            assert!(detail.contains(named), "{input:?}: {detail}");
        }
    }

    #[test]
    fn quoted_local_parts_symbols_and_lone_combining_marks_are_refused() {
        for (input, why) in [
            ("\"a@b\"@example.com", "quoted local parts"),
            ("\"jane\"@example.com", "quoted local parts"),
            ("jane😀@example.com", "'😀' (U+1F600)"),
            ("jane\u{2764}@example.com", "U+2764"),
            ("j\u{301}\u{301}ane@example.com", "combining mark U+0301"),
            ("jane(x)@example.com", "'(' (U+0028)"),
            ("jane,doe@example.com", "',' (U+002C)"),
        ] {
            let detail = refusal(input);
            assert!(detail.contains(why), "{input:?}: {detail}");
        }
    }

    #[test]
    fn addresses_are_normalised_to_nfc() {
        // A combining acute after the e and the precomposed é are the same address.
        let combined = AlternateEmail::parse("jose\u{301}@example.com").unwrap();
        let precomposed = AlternateEmail::parse("jos\u{e9}@example.com").unwrap();
        assert_eq!(combined, precomposed);
        assert_eq!(combined.canonical(), "jos\u{e9}@example.com");
        // Letters of other scripts are letters.
        for ok in [
            "jörg@example.de",
            "राम@example.in",
            "山田@example.jp",
            "o'brien+mfa@example.ie",
        ] {
            AlternateEmail::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn internationalised_domains_are_kept_as_their_a_label() {
        let e = AlternateEmail::parse("jane@Bücher.DE").unwrap();
        assert_eq!(e.canonical(), "jane@xn--bcher-kva.de");
        assert_eq!(e, AlternateEmail::parse("jane@xn--bcher-kva.de").unwrap());
        // A look-alike domain is told apart by its A-label.
        let lookalike = AlternateEmail::parse("jane@exаmple.com").unwrap();
        assert_eq!(lookalike.domain(), "xn--exmple-4nf.com");
        let tenant = TenantDomain::parse("bücher.de").unwrap();
        assert_eq!(tenant.as_str(), "xn--bcher-kva.de");
        assert!(tenant.contains(e.domain()));
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
        assert!(TenantDomain::parse("con\u{200B}toso.com").is_err());
    }

    #[test]
    fn an_address_whose_ascii_form_is_too_long_is_refused() {
        // fuzz/artifacts/email/crash-06406036…: 254 characters or fewer as typed, longer once
        // an internationalised label is in Punycode; stored, it would not parse again.
        let input = "f@f.kf.Qf.kf.b.kf.Qf.kf.b.Acf.kf.Upfc.Afc.kpfsc.Afc.k444\u{2b9}.Upfc.Afc.kpfc.Afc.kf.Uppfc.Afc.kfc.AAfc.kfc.Afc.kf.Upfc.Afc.kpfc.Afc.kf.U.Acf.kf.Upfc.Afckfc.Afc.kf.Upfc.Afc.kpfc.Afc.kf.U.Acf.kf.Upfc.Afc.kpfsc.Afc.k.Afc.kf.Upfc.Afc.kpfc.Afc.kf.Upfc.Afc.kf.";
        assert!(input.chars().count() <= 254);
        let e = AlternateEmail::parse(input).unwrap_err();
        assert!(e.to_string().contains("once its domain is in ASCII"), "{e}");
    }
}
