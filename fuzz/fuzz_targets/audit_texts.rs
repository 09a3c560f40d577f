//! Any text as what auditors and operators hand the service: an anchor, a signed checkpoint
//! (its note and its body), a verifier key, a rate: a value or a refusal, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recovery_info::audit::note::{Checkpoint, NoteSigner, NoteVerifier};
use recovery_info::audit::verify::Anchor;
use recovery_info::http::limits::Rate;

fuzz_target!(|text: &str| {
    let _ = text.parse::<Anchor>();
    let _ = text.parse::<NoteVerifier>();
    let _ = text.parse::<Rate>();
    let _ = NoteSigner::parse(text);
    if let Ok(checkpoint) = Checkpoint::parse(text) {
        assert_eq!(Checkpoint::parse(&checkpoint.text()).unwrap(), checkpoint);
    }
    thread_local! {
        static KEY: NoteVerifier = NoteSigner::from_seed("fuzz", &[7; 32]).unwrap().verifier();
    }
    KEY.with(|key| {
        let _ = Checkpoint::open(text, key);
    });
});
