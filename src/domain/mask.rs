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
    let e164 = number_part(value);
    let display = phonenumber::parse(None, e164)
        .map(|n| {
            n.format()
                .mode(phonenumber::Mode::International)
                .to_string()
        })
        .unwrap_or_else(|_| e164.to_owned());
    // Keep the country code (everything before the first separator) and the number's last two
    // digits, taken from the number itself rather than from the display: so two numbers that
    // end differently never mask alike, whatever a country's format does ([`masks_alike`]).
    let cc_end = display.find([' ', '-']).unwrap_or(display.len().min(3));
    let mut masked: Vec<char> = display[cc_end..]
        .chars()
        .map(|c| if c.is_ascii_digit() { DOT } else { c })
        .collect();
    let tail: Vec<char> = last_two_digits(e164).into_iter().flatten().collect();
    let slots: Vec<usize> = (0..masked.len()).filter(|&i| masked[i] == DOT).collect();
    match slots.len().checked_sub(tail.len()) {
        Some(first) => {
            for (&slot, &digit) in slots[first..].iter().zip(&tail) {
                masked[slot] = digit;
            }
        }
        // A display with fewer digits than that still ends with them.
        None => masked.extend(&tail),
    }
    let mut out = String::with_capacity(display.len() * 3);
    out.push_str(&display[..cc_end]);
    out.extend(masked);
    out
}

/// The number without an office phone's extension (not needed to recognise a number).
fn number_part(value: &str) -> &str {
    value.split('x').next().unwrap_or(value)
}

/// The last two digits of a number, in order (`None` where it has fewer).
fn last_two_digits(number: &str) -> [Option<char>; 2] {
    let mut digits = number.chars().rev().filter(char::is_ascii_digit);
    let last = digits.next();
    let before = digits.next();
    [before, last]
}

/// Whether two stored values of `kind` mask alike (`mask(kind, a) == mask(kind, b)`), without
/// formatting a number when they cannot: a number's mask ends with its own last two digits, so
/// only numbers that end alike are formatted (an address's mask needs no parsing).
pub fn masks_alike(kind: MethodKind, a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    if !kind.is_phone() {
        return mask_email(a) == mask_email(b);
    }
    last_two_digits(number_part(a)) == last_two_digits(number_part(b))
        && mask_phone(a) == mask_phone(b)
}

fn mask_email(value: &str) -> String {
    match value.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}{DOT}{DOT}{DOT}@{domain}{}", script_note(local))
        }
        None => format!("{DOT}{DOT}{DOT}"),
    }
}

/// What a mask adds about the letters it hides: nothing for a local part in Latin letters;
/// the script's name otherwise (` (Cyrillic)`), and ` (mixed scripts: Latin, Cyrillic)` for a
/// local part that mixes scripts no language mixes. A mask shows one letter, and the Cyrillic
/// `ј` or `а` looks like the Latin one: without the note, `jаne@` (with a Cyrillic `а`) and
/// `ј…@` would mask exactly like `jane@`, and a reset screen could be used to pass one address
/// off as the other. (The domain needs no note: it is kept as its A-label, `xn--…`.)
fn script_note(local: &str) -> String {
    use unicode_script::{Script, UnicodeScript};
    use unicode_security::MixedScript;
    let mut scripts: Vec<Script> = Vec::new();
    for c in local.chars() {
        let script = c.script();
        if !matches!(script, Script::Common | Script::Inherited | Script::Unknown)
            && !scripts.contains(&script)
        {
            scripts.push(script);
        }
    }
    if scripts.iter().all(|s| *s == Script::Latin) {
        return String::new();
    }
    let names: Vec<&str> = scripts.iter().map(|s| s.full_name()).collect();
    if local.is_single_script() {
        format!(" ({})", names.join(", "))
    } else {
        format!(" (mixed scripts: {})", names.join(", "))
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
    fn masks_alike_is_the_comparison_of_the_masks() {
        let pairs = [
            (MethodKind::MobilePhone, "+4520123456", "+4520999956"), // alike
            (MethodKind::MobilePhone, "+4520123456", "+4520123457"),
            (MethodKind::MobilePhone, "+4520123456", "+4531123456"), // alike (same layout)
            (MethodKind::MobilePhone, "+4520123456", "+14255550156"), // other country
            (MethodKind::OfficePhone, "+14255550100x1", "+14255550100x2"), // alike
            (MethodKind::OfficePhone, "+14255550100x1", "+14255559900"), // alike
            (MethodKind::OfficePhone, "+14255550100", "+442071838750"),
            (MethodKind::MobilePhone, "+999123456789", "+999123456700"), // does not parse
            (MethodKind::MobilePhone, "+999123456789", "+999000000089"), // alike
            (MethodKind::Email, "jane@example.com", "john@example.com"), // alike
            (MethodKind::Email, "jane@example.com", "jane@example.org"),
            (MethodKind::Email, "jane@example.com", "mary@example.com"),
            (MethodKind::Email, "jane@example.com", "jane@example.com"),
        ];
        let mut alike = 0;
        for (kind, a, b) in pairs {
            let expected = mask(kind, a) == mask(kind, b);
            assert_eq!(masks_alike(kind, a, b), expected, "{a} {b}");
            assert_eq!(masks_alike(kind, b, a), expected, "{b} {a}");
            alike += usize::from(expected);
        }
        assert_eq!(alike, 7);
    }

    #[test]
    fn a_mask_ends_with_the_numbers_own_last_two_digits() {
        for number in [
            "+4520123456",
            "+14255550199x77",
            "+442071838750",
            "+999123456789",
        ] {
            let masked = mask(MethodKind::MobilePhone, number);
            let digits: String = number
                .split('x')
                .next()
                .unwrap()
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            assert!(masked.ends_with(&digits[digits.len() - 2..]), "{masked}");
            // Past the country code, only those two digits show.
            let (_, hidden) = masked.split_once(DOT).unwrap();
            let shown = hidden.chars().filter(char::is_ascii_digit).count();
            assert_eq!(shown, 2, "{masked}");
        }
    }

    #[test]
    fn emails_keep_first_letter_and_domain() {
        assert_eq!(
            mask(MethodKind::Email, "jane@example.com"),
            "j•••@example.com"
        );
    }

    #[test]
    fn a_mask_names_the_script_of_letters_that_are_not_latin() {
        // A Cyrillic а among Latin letters, an all-Cyrillic look-alike, and Latin with accents.
        assert_eq!(
            mask(MethodKind::Email, "j\u{430}ne@example.com"),
            "j•••@example.com (mixed scripts: Latin, Cyrillic)"
        );
        assert_eq!(
            mask(
                MethodKind::Email,
                "\u{458}\u{430}\u{43d}\u{435}@example.com"
            ),
            "\u{458}•••@example.com (Cyrillic)"
        );
        assert_eq!(
            mask(MethodKind::Email, "jörg@example.de"),
            "j•••@example.de"
        );
        // Japanese mixes its scripts: named, not flagged.
        assert_eq!(
            mask(MethodKind::Email, "やまだ太郎@example.jp"),
            "や•••@example.jp (Hiragana, Han)"
        );
        assert_ne!(
            mask(MethodKind::Email, "j\u{430}ne@example.com"),
            mask(MethodKind::Email, "jane@example.com")
        );
    }

    #[test]
    fn a_value_that_no_longer_parses_is_still_masked() {
        let masked = mask(MethodKind::MobilePhone, "+999123456789");
        assert!(masked.ends_with("89"), "{masked}");
        assert!(!masked.contains("1234"), "{masked}");
    }
}
