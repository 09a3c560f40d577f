//! Any bytes as a stored event (the protobuf envelope and its upcasters, the fold's decoder):
//! an event or a decode error, never a panic; a decoded event encodes and decodes to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recovery_info::events::RecordedEvent;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(event) = RecordedEvent::decode(bytes) {
        let again = RecordedEvent::decode(&event.encode()).expect("an encoded event decodes");
        assert_eq!(again.event, event.event);
    }
    let _ = RecordedEvent::decode_for_fold(bytes);
});
