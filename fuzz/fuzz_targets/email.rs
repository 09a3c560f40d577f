//! Any text as an alternate email and as a tenant domain: a value or a refusal, never a panic;
//! a parsed address parses again to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recovery_info::domain::{AlternateEmail, TenantDomain};

fuzz_target!(|text: &str| {
    if let Ok(email) = AlternateEmail::parse(text) {
        let again = AlternateEmail::parse(&email.canonical()).expect("a canonical address parses");
        assert_eq!(again.canonical(), email.canonical());
    }
    let _ = TenantDomain::parse(text);
});
