//! The notices' words, in English and Danish: a subject, a plain-text and an HTML body for
//! email, and one short text for SMS and voice. A notice never holds a new value unmasked: it
//! may reach an attacker's old contact as well as the owner's, and the owner needs only to
//! recognise it.

use crate::domain::{Language, MethodKind, NoticeKind, mask};
use chrono::{DateTime, Utc};

/// What a notice says.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub kind: NoticeKind,
    /// The kind of method the event was about.
    pub about: MethodKind,
    /// The value the event set (a change's new value, an addition's), masked here.
    pub new_value: Option<&'a str>,
    pub at: DateTime<Utc>,
    /// Who made the change (the token's subject).
    pub actor: &'a str,
    /// Where to report a change that was not the owner's (a help desk, a URL).
    pub report_to: &'a str,
    pub language: Language,
}

/// A notice ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// For SMS and voice: one paragraph.
    pub short: String,
}

fn label(kind: MethodKind, language: Language) -> &'static str {
    match (language, kind) {
        (Language::En, MethodKind::MobilePhone) => "mobile phone",
        (Language::En, MethodKind::AlternatePhone) => "alternate phone",
        (Language::En, MethodKind::OfficePhone) => "office phone",
        (Language::En, MethodKind::Email) => "alternate email",
        (Language::Da, MethodKind::MobilePhone) => "mobiltelefon",
        (Language::Da, MethodKind::AlternatePhone) => "alternative telefon",
        (Language::Da, MethodKind::OfficePhone) => "arbejdstelefon",
        (Language::Da, MethodKind::Email) => "alternative e-mail",
    }
}

/// "A" or "An" before an English label.
fn article(label: &str) -> &'static str {
    match label.starts_with(['a', 'e', 'i', 'o', 'u']) {
        true => "An",
        false => "A",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Renders a notice.
pub fn render(c: &Context<'_>) -> Rendered {
    let what = label(c.about, c.language);
    let new = c.new_value.map(|v| mask(c.about, v)).unwrap_or_default();
    let when = c.at.format("%Y-%m-%d %H:%M UTC").to_string();
    let (subject, happened, warn) = match c.language {
        Language::En => {
            let happened = match c.kind {
                NoticeKind::MethodChanged => format!(
                    "The {what} of your administrator account's security info was changed on \
                     {when} by {}. The new {what} is {new}.",
                    c.actor
                ),
                NoticeKind::MethodRemoved => format!(
                    "The {what} was removed from your administrator account's security info on \
                     {when} by {}.",
                    c.actor
                ),
                NoticeKind::MethodAdded => format!(
                    "{} {what} ({new}) was added to your administrator account's security info \
                     on {when} by {}.",
                    article(what),
                    c.actor
                ),
                NoticeKind::AdminOffboarded => format!(
                    "Your administrator account was offboarded on {when} by {}, and its security \
                     info (your {what} among it) was removed.",
                    c.actor
                ),
            };
            let subject = match c.kind {
                NoticeKind::MethodChanged => format!("Your {what} was changed"),
                NoticeKind::MethodRemoved => format!("Your {what} was removed"),
                NoticeKind::MethodAdded => {
                    format!("{} {what} was added to your security info", article(what))
                }
                NoticeKind::AdminOffboarded => "Your administrator account was offboarded".into(),
            };
            let warn = format!(
                "If this was not you, report it at once to {}: someone may have taken over \
                 your account and be able to reset its password.",
                c.report_to
            );
            (subject, happened, warn)
        }
        Language::Da => {
            let happened = match c.kind {
                NoticeKind::MethodChanged => format!(
                    "Din {what} i sikkerhedsoplysningerne for din administratorkonto blev ændret \
                     {when} af {}. Den nye er {new}.",
                    c.actor
                ),
                NoticeKind::MethodRemoved => format!(
                    "Din {what} blev fjernet fra sikkerhedsoplysningerne for din \
                     administratorkonto {when} af {}.",
                    c.actor
                ),
                NoticeKind::MethodAdded => format!(
                    "En {what} ({new}) blev tilføjet til sikkerhedsoplysningerne for din \
                     administratorkonto {when} af {}.",
                    c.actor
                ),
                NoticeKind::AdminOffboarded => format!(
                    "Din administratorkonto blev lukket {when} af {}, og dens \
                     sikkerhedsoplysninger (herunder din {what}) blev fjernet.",
                    c.actor
                ),
            };
            let subject = match c.kind {
                NoticeKind::MethodChanged => format!("Din {what} er blevet ændret"),
                NoticeKind::MethodRemoved => format!("Din {what} er blevet fjernet"),
                NoticeKind::MethodAdded => {
                    format!("En {what} er tilføjet til dine sikkerhedsoplysninger")
                }
                NoticeKind::AdminOffboarded => "Din administratorkonto er blevet lukket".into(),
            };
            let warn = format!(
                "Hvis det ikke var dig, så meld det straks til {}: nogen kan have overtaget din \
                 konto og kunne nulstille dens adgangskode.",
                c.report_to
            );
            (subject, happened, warn)
        }
    };
    let footer = match c.language {
        Language::En => {
            "This notice was sent by recovery-info, which keeps your organisation's \
                         administrators' security info."
        }
        Language::Da => {
            "Denne besked er sendt af recovery-info, som holder styr på din \
                         organisations administratorers sikkerhedsoplysninger."
        }
    };
    Rendered {
        text: format!("{happened}\n\n{warn}\n\n-- \n{footer}\n"),
        html: format!(
            "<!DOCTYPE html><html lang=\"{}\"><body><p>{}</p><p><strong>{}</strong></p>\
             <p style=\"color:#555\">{}</p></body></html>",
            c.language.name(),
            escape(&happened),
            escape(&warn),
            escape(footer)
        ),
        short: format!("{happened} {warn}"),
        subject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(language: Language) -> Context<'static> {
        Context {
            kind: NoticeKind::MethodChanged,
            about: MethodKind::Email,
            new_value: Some("attacker.mail@example.net"),
            at: DateTime::parse_from_rfc3339("2026-12-03T10:15:00Z")
                .unwrap()
                .with_timezone(&Utc),
            actor: "helpdesk-7",
            report_to: "security@contoso.com",
            language,
        }
    }

    #[test]
    fn a_change_is_told_with_time_actor_and_where_to_report_and_no_new_value() {
        let r = render(&context(Language::En));
        assert_eq!(r.subject, "Your alternate email was changed");
        for part in [&r.text, &r.html, &r.short] {
            assert!(part.contains("2026-12-03 10:15 UTC"), "{part}");
            assert!(part.contains("helpdesk-7"), "{part}");
            assert!(part.contains("security@contoso.com"), "{part}");
            assert!(
                !part.contains("attacker.mail"),
                "the new value unmasked: {part}"
            );
        }
        assert!(
            r.text
                .contains(&mask(MethodKind::Email, "attacker.mail@example.net"))
        );
        let da = render(&context(Language::Da));
        assert_eq!(da.subject, "Din alternative e-mail er blevet ændret");
        assert!(da.text.contains("Hvis det ikke var dig"), "{}", da.text);
        assert!(da.html.starts_with("<!DOCTYPE html><html lang=\"da\">"));
        let mut added = context(Language::En);
        added.kind = NoticeKind::MethodAdded;
        added.about = MethodKind::AlternatePhone;
        added.new_value = Some("+4540112233");
        let r = render(&added);
        assert_eq!(
            r.subject,
            "An alternate phone was added to your security info"
        );
        assert!(
            r.text
                .starts_with("An alternate phone (+45 •• •• •• 33) was added"),
            "{}",
            r.text
        );
    }

    #[test]
    fn html_escapes_what_it_quotes() {
        let mut c = context(Language::En);
        c.actor = "<script>alert(1)</script>";
        let r = render(&c);
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r.html.contains("&lt;script&gt;"));
    }
}
