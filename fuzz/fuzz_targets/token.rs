//! Any text as a bearer token, through the service's own checks (the JWT header, the
//! signature, the claims and their mapping to a caller): a caller or a refusal, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recovery_info::http::auth::{Authenticator, JwtKeys, StepUp};

fuzz_target!(|text: &str| {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        static AUTH: Authenticator = Authenticator::new(
            Some(JwtKeys::new(b"fuzz-secret-fuzz-secret-fuzz-secret-0000")),
            None,
            StepUp::default(),
        );
    }
    RUNTIME.with(|rt| {
        AUTH.with(|auth| {
            let _ = rt.block_on(auth.caller(text));
        })
    });
});
