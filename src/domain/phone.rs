//! Phone numbers as their owners type them, checked character by character before the
//! numbering plans see them, and stored in E.164.
//!
//! The phone library is generous: it turns letters into digits (vanity numbers: `2O` becomes
//! `26`), drops characters it does not know and repairs a doubled `+`. For a number that reset
//! codes are sent to, each of those repairs can deliver the code to a stranger, so nothing
//! reaches the library but digits, one leading `+`, the separators people type, and an
//! extension marker; anything else is refused with a detail that names the character.

use super::DomainError;
use std::fmt;

/// Digits of the scripts a phone's keyboard types besides ASCII: full-width (East Asian input
/// methods), Arabic-Indic and Extended Arabic-Indic. Each stands for exactly the digit it
/// shows, so it is read as that digit; all digits of one number must be of one system.
const DIGIT_SYSTEMS: [(char, &str); 4] = [
    ('0', "ASCII"),
    ('\u{FF10}', "full-width"),
    ('\u{0660}', "Arabic-Indic"),
    ('\u{06F0}', "Extended Arabic-Indic"),
];

/// What people put between the digits: spaces (also the no-break spaces that a number copied
/// from a web page or a document carries), hyphens and dashes, dots, parentheses, a slash.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '-'
            | '.'
            | '('
            | ')'
            | '/'
            | '\u{00A0}' // no-break space
            | '\u{202F}' // narrow no-break space
            | '\u{2010}' // hyphen
            | '\u{2011}' // non-breaking hyphen
            | '\u{2013}' // en dash
    )
}

/// The digit `c` stands for, with the index of its system in [`DIGIT_SYSTEMS`].
fn digit(c: char) -> Option<(u32, usize)> {
    DIGIT_SYSTEMS.iter().enumerate().find_map(|(i, (zero, _))| {
        let d = (c as u32).wrapping_sub(*zero as u32);
        (d < 10).then_some((d, i))
    })
}

/// The kind of line a number is, from the numbering plan's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineType {
    Mobile,
    FixedLine,
    /// A country whose plan does not tell mobile from fixed-line numbers (e.g. the NANP, DK).
    FixedLineOrMobile,
    Voip,
    TollFree,
    PremiumRate,
    SharedCost,
    PersonalNumber,
    Pager,
    /// "Universal access" or company numbers, routed on to an office.
    Uan,
    Voicemail,
    /// Short codes, emergency, carrier-specific and unknown numbers.
    Other,
}

impl LineType {
    fn of(number: &phonenumber::PhoneNumber) -> Self {
        use phonenumber::Type;
        match number.number_type(&phonenumber::metadata::DATABASE) {
            Type::Mobile => LineType::Mobile,
            Type::FixedLine => LineType::FixedLine,
            Type::FixedLineOrMobile => LineType::FixedLineOrMobile,
            Type::Voip => LineType::Voip,
            Type::TollFree => LineType::TollFree,
            Type::PremiumRate => LineType::PremiumRate,
            Type::SharedCost => LineType::SharedCost,
            Type::PersonalNumber => LineType::PersonalNumber,
            Type::Pager => LineType::Pager,
            Type::Uan => LineType::Uan,
            Type::Voicemail => LineType::Voicemail,
            Type::Emergency
            | Type::ShortCode
            | Type::StandardRate
            | Type::Carrier
            | Type::NoInternational
            | Type::Unknown => LineType::Other,
        }
    }

    /// How the type reads in an error's detail.
    pub fn describe(self) -> &'static str {
        match self {
            LineType::Mobile => "a mobile number",
            LineType::FixedLine => "a fixed-line number",
            LineType::FixedLineOrMobile => "a fixed-line or mobile number",
            LineType::Voip => "a VoIP number",
            LineType::TollFree => "a freephone (toll-free) number",
            LineType::PremiumRate => "a premium-rate number",
            LineType::SharedCost => "a shared-cost number",
            LineType::PersonalNumber => "a personal (follow-me) number",
            LineType::Pager => "a pager number",
            LineType::Uan => "a universal access (company) number",
            LineType::Voicemail => "a voicemail access number",
            LineType::Other => "a number of no known line type",
        }
    }
}

impl fmt::Display for LineType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A phone number that parsed and is valid for its country, kept in E.164
/// (`+4520123456`), with an optional extension written `x<digits>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneNumber {
    e164: String,
    extension: Option<String>,
    line_type: LineType,
}

/// The longest input accepted, in characters.
const MAX_CHARS: usize = 64;

/// The longest extension accepted, in digits.
const MAX_EXTENSION_DIGITS: usize = 10;

fn invalid(why: impl Into<String>) -> DomainError {
    DomainError::InvalidPhoneNumber(why.into())
}

/// `c` named for a person: the character itself where it is visible, and its code point.
pub(crate) fn name_char(c: char) -> String {
    let code = format!("U+{:04X}", c as u32);
    if c.is_control() {
        format!("the control character {code}")
    } else if is_invisible(c) {
        format!("the invisible character {code}")
    } else if c.is_whitespace() {
        format!("the space character {code}")
    } else if c.is_alphabetic() {
        format!("the letter {c:?} ({code})")
    } else {
        format!("the character {c:?} ({code})")
    }
}

/// Format characters (Unicode category Cf: zero-width spaces and joiners, direction marks and
/// overrides, the byte-order mark, …) and the line and paragraph separators: nothing a person
/// sees, so nothing they meant to type.
pub(crate) fn is_invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// The number's characters, read: the digits of the number itself, in ASCII, and those of its
/// extension if it has one.
struct Typed {
    digits: String,
    extension: Option<String>,
}

/// Reads what was typed, refusing every character and shape that is not a person writing down
/// their own number: letters, invisible characters, controls, a second `+`, an extension
/// marker without digits.
fn read(input: &str) -> Result<Typed, DomainError> {
    let mut chars = input.chars().peekable();
    match chars.next() {
        Some('+' | '\u{FF0B}') => {}
        _ => {
            return Err(invalid(
                "the phone number must start with + and the country code, e.g. +45 20 12 34 56",
            ));
        }
    }
    let mut digits = String::new();
    let mut extension: Option<String> = None;
    let mut system: Option<usize> = None;
    while let Some(c) = chars.next() {
        if let Some((d, s)) = digit(c) {
            match system {
                Some(first) if first != s => {
                    return Err(invalid(format!(
                        "the phone number mixes {} digits with {} digits",
                        DIGIT_SYSTEMS[first].1, DIGIT_SYSTEMS[s].1
                    )));
                }
                _ => system = Some(s),
            }
            let d = char::from_digit(d, 10).unwrap_or('0');
            match &mut extension {
                Some(ext) => ext.push(d),
                None => digits.push(d),
            }
            continue;
        }
        if is_separator(c) {
            if extension.as_ref().is_some_and(|e| !e.is_empty()) {
                // Separators inside an extension are not something people type.
                return Err(invalid(format!(
                    "the extension contains {}; write it as x followed by its digits",
                    name_char(c)
                )));
            }
            continue;
        }
        if matches!(c, '+' | '\u{FF0B}') {
            return Err(invalid(
                "the phone number has more than one +; it starts with a single + and the \
                 country code",
            ));
        }
        if extension.is_none() && !digits.is_empty() && starts_extension(c, &mut chars) {
            extension = Some(String::new());
            continue;
        }
        let hint = if c.is_alphabetic() {
            "; type the number's digits (letters are not turned into digits)"
        } else {
            ""
        };
        return Err(invalid(format!(
            "the phone number contains {}{hint}",
            name_char(c)
        )));
    }
    match &extension {
        Some(ext) if ext.is_empty() => Err(invalid(
            "the extension marker is not followed by digits; write x and the extension, \
             e.g. +1 425 555 0100 x123",
        )),
        Some(ext) if ext.len() > MAX_EXTENSION_DIGITS => Err(invalid(format!(
            "the extension is longer than {MAX_EXTENSION_DIGITS} digits"
        ))),
        _ => Ok(Typed { digits, extension }),
    }
}

/// Whether `c` (and what follows it) is an extension marker: `x`, `ext`, `ext.` or `#`, in any
/// case; the marker's other characters are taken from `rest`.
fn starts_extension(c: char, rest: &mut std::iter::Peekable<std::str::Chars<'_>>) -> bool {
    match c.to_ascii_lowercase() {
        'x' | '#' => true,
        'e' => {
            let mut ahead = rest.clone();
            let marker =
                matches!(ahead.next(), Some('x' | 'X')) && matches!(ahead.next(), Some('t' | 'T'));
            if marker {
                rest.next();
                rest.next();
                if rest.peek() == Some(&'.') {
                    rest.next();
                }
            }
            marker
        }
        _ => false,
    }
}

impl PhoneNumber {
    /// Parses a number as people type it: `+45 20 12 34 56`, `+1 (425) 555-0100`,
    /// `+1 425 555 0100 x123`. The country code is required.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(invalid("the phone number is empty"));
        }
        if trimmed.chars().count() > MAX_CHARS {
            return Err(invalid("the phone number is too long"));
        }
        let typed = read(trimmed)?;
        if typed.digits.is_empty() {
            return Err(invalid("the phone number has no digits"));
        }
        // `+44 (0)20 …`: the trunk prefix some write in parentheses is the library's to drop,
        // so it gets the number with its parentheses rather than the bare digits.
        let for_library: String = trimmed
            .chars()
            .take_while(|c| {
                digit(*c).is_some() || is_separator(*c) || matches!(c, '+' | '\u{FF0B}')
            })
            .map(|c| match digit(c) {
                Some((d, _)) => char::from_digit(d, 10).unwrap_or('0'),
                None if c == '(' || c == ')' => c,
                None if matches!(c, '+' | '\u{FF0B}') => '+',
                None => ' ',
            })
            .collect();
        let number = phonenumber::parse(None, &for_library)
            .map_err(|e| invalid(format!("the phone number does not parse: {e}")))?;
        if !phonenumber::is_valid(&number) {
            return Err(invalid("the phone number is not valid for its country"));
        }
        Ok(PhoneNumber {
            e164: number.format().mode(phonenumber::Mode::E164).to_string(),
            extension: typed.extension,
            line_type: LineType::of(&number),
        })
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

    /// The kind of line the numbering plan says this is.
    pub fn line_type(&self) -> LineType {
        self.line_type
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

    fn canonical(input: &str) -> String {
        PhoneNumber::parse(input)
            .unwrap_or_else(|e| panic!("{input:?}: {e}"))
            .canonical()
    }

    fn refusal(input: &str) -> String {
        match PhoneNumber::parse(input) {
            Ok(p) => panic!("{input:?} was accepted as {}", p.canonical()),
            Err(e) => {
                assert_eq!(e.code(), "invalid_phone_number", "{input:?}");
                e.to_string()
            }
        }
    }

    #[test]
    fn phone_numbers_are_accepted_as_typed_and_stored_in_e164() {
        assert_eq!(canonical("+45 20 12 34 56"), "+4520123456");
        assert_eq!(canonical("+1 (425) 555-0100"), "+14255550100");
        assert_eq!(canonical("+1.425.555.0100"), "+14255550100");
        assert_eq!(canonical("+1 425/555 0100"), "+14255550100");
        assert_eq!(canonical("+44 (0)20 7183 8750"), "+442071838750");
        assert_eq!(
            canonical("+45\u{00A0}20\u{00A0}12\u{00A0}34\u{00A0}56"),
            "+4520123456"
        );
        assert_eq!(canonical("+45 20\u{2011}12\u{2013}34 56"), "+4520123456");
    }

    #[test]
    fn digits_of_other_keyboards_are_read_as_the_digits_they_show() {
        assert_eq!(canonical("+４５ ２０ １２ ３４ ５６"), "+4520123456");
        assert_eq!(canonical("＋４５２０１２３４５６"), "+4520123456");
        assert_eq!(canonical("+٤٥ ٢٠ ١٢ ٣٤ ٥٦"), "+4520123456");
        assert_eq!(canonical("+۴۵ ۲۰ ۱۲ ۳۴ ۵۶"), "+4520123456");
        let mixed = refusal("+45 20 ١٢ 34 56");
        assert!(
            mixed.contains("mixes ASCII digits with Arabic-Indic"),
            "{mixed}"
        );
    }

    #[test]
    fn letters_are_never_turned_into_digits() {
        for (input, letter) in [
            ("+45 2O 12 34 56", "'O' (U+004F)"),
            ("+45 20 I2 34 56", "'I' (U+0049)"),
            ("+45 2l 12 34 56", "'l' (U+006C)"),
            ("+1 800 FLOWERS", "'F' (U+0046)"),
            ("+45 20 12 34 5б", "'б' (U+0431)"),
        ] {
            let detail = refusal(input);
            assert!(detail.contains(letter), "{input:?}: {detail}");
            assert!(
                detail.contains("letters are not turned into digits"),
                "{detail}"
            );
        }
    }

    #[test]
    fn typing_slips_are_refused_not_repaired() {
        let cases = [
            ("++4520123456", "more than one +"),
            ("+45 20 12 34 56 +", "more than one +"),
            ("+4520123456\u{0}", "control character U+0000"),
            ("+45 20\u{200B}12 34 56", "invisible character U+200B"),
            ("+45 20\u{202E}12 34 56", "invisible character U+202E"),
            ("+45\t20 12 34 56", "control character U+0009"),
            ("+1 425 555 0100 x", "not followed by digits"),
            ("+1 425 555 0100 ext.", "not followed by digits"),
            ("+1 425 555 0100 x 12 3", "extension contains"),
            ("+1 425 555 0100 x12345678901", "longer than 10 digits"),
            ("+1 425 555 0100 x12x3", "letter 'x'"),
            ("+45 20_12 34 56", "'_' (U+005F)"),
            ("+ - ( )", "no digits"),
            ("20 12 34 56", "must start with +"),
        ];
        for (input, why) in cases {
            let detail = refusal(input);
            assert!(detail.contains(why), "{input:?}: {detail}");
        }
    }

    #[test]
    fn a_number_that_is_not_valid_for_its_country_is_rejected() {
        for bad in ["+45 1234", "+1 (000) 000-0000", "", "+", "hello"] {
            refusal(bad);
        }
    }

    #[test]
    fn extensions_are_written_x_and_their_digits() {
        for input in [
            "+1 425 555 0100 x123",
            "+1 425 555 0100x123",
            "+1 425 555 0100 ext 123",
            "+1 425 555 0100 Ext. 123",
            "+1 425 555 0100 #123",
        ] {
            assert_eq!(canonical(input), "+14255550100x123", "{input:?}");
        }
    }

    #[test]
    fn the_line_type_comes_from_the_numbering_plan() {
        let types = [
            ("+44 7911 123456", LineType::Mobile),
            ("+44 20 7183 8750", LineType::FixedLine),
            ("+45 20 12 34 56", LineType::FixedLineOrMobile),
            ("+1 425 555 0100", LineType::FixedLineOrMobile),
            ("+1 900 555 0199", LineType::PremiumRate),
            ("+44 909 879 0000", LineType::PremiumRate),
            ("+979 123456789", LineType::PremiumRate),
            ("+800 1234 5678", LineType::TollFree),
        ];
        for (input, expected) in types {
            let number = PhoneNumber::parse(input).unwrap();
            assert_eq!(number.line_type(), expected, "{input}");
        }
    }
}
