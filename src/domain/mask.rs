//! Masking for values shown to a reset flow or a dashboard: enough to recognise, not to use.

use super::MethodKind;

const DOT: char = '•';

/// Masks a stored value of `kind`: `+4520123456` → `+45 •• •• •• 56`,
/// `jane@example.com` → `j•••@example.com`.
pub fn mask(kind: MethodKind, value: &str) -> String {
    if kind.is_phone() {
        mask_phone(value)
    } else {
        mask_email(value)
    }
}

fn mask_phone(value: &str) -> String {
    // The extension (office phones) is not needed to recognise a number.
    let e164 = value.split('x').next().unwrap_or(value);
    let display = phonenumber::parse(None, e164)
        .map(|n| {
            n.format()
                .mode(phonenumber::Mode::International)
                .to_string()
        })
        .unwrap_or_else(|_| e164.to_owned());
    // Keep the country code (everything before the first separator) and the last two digits.
    let cc_end = display.find([' ', '-']).unwrap_or(display.len().min(3));
    let digits_total = display[cc_end..]
        .chars()
        .filter(char::is_ascii_digit)
        .count();
    let mut seen = 0;
    let mut out = String::with_capacity(display.len() * 3);
    out.push_str(&display[..cc_end]);
    for c in display[cc_end..].chars() {
        if c.is_ascii_digit() {
            seen += 1;
            out.push(if seen + 2 > digits_total { c } else { DOT });
        } else {
            out.push(c);
        }
    }
    out
}

fn mask_email(value: &str) -> String {
    match value.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}{DOT}{DOT}{DOT}@{domain}")
        }
        None => format!("{DOT}{DOT}{DOT}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_keep_country_code_and_last_two_digits() {
        assert_eq!(
            mask(MethodKind::MobilePhone, "+4520123456"),
            "+45 •• •• •• 56"
        );
        assert_eq!(
            mask(MethodKind::OfficePhone, "+14255550100x123"),
            "+1 •••-•••-••00"
        );
        // Masking keeps no state between calls, and an office number without an extension
        // masks like one with it.
        assert_eq!(
            mask(MethodKind::MobilePhone, "+4520123456"),
            "+45 •• •• •• 56"
        );
        assert_eq!(
            mask(MethodKind::OfficePhone, "+14255550100"),
            "+1 •••-•••-••00"
        );
    }

    #[test]
    fn emails_keep_first_letter_and_domain() {
        assert_eq!(
            mask(MethodKind::Email, "jane@example.com"),
            "j•••@example.com"
        );
    }

    #[test]
    fn a_value_that_no_longer_parses_is_still_masked() {
        let masked = mask(MethodKind::MobilePhone, "+999123456789");
        assert!(masked.ends_with("89"), "{masked}");
        assert!(!masked.contains("1234"), "{masked}");
    }
}
