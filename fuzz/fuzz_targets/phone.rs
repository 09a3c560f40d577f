//! Any text as a phone number: a value or a one-line refusal, never a panic; a number parsed
//! once parses again to itself from its canonical form.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recovery_info::domain::PhoneNumber;

fuzz_target!(|text: &str| {
    if let Ok(phone) = PhoneNumber::parse(text) {
        let canonical = phone.canonical();
        let again = PhoneNumber::parse(&canonical).expect("a canonical number parses");
        assert_eq!(again.canonical(), canonical);
    }
});
