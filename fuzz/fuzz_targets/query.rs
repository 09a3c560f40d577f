//! Any text as the query string of every route that reads one, through the route's extraction
//! and checks (`recovery_info::http::fuzzing::query_string`): instants (`as_of`, `since`,
//! `until`), positions plain and sealed (`as_of_position`, `min_position`, `after`, a proof's
//! `position`), the page's limit and `type=` filters, the admin filters, a proof's tree sizes
//! and the spans computed from them. An answer or a refusal, never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = recovery_info::http::fuzzing::query_string(text);
});
