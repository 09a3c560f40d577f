//! Schema evolution: events written by older builds stay readable and fold the same.
//!
//! The fixtures under `tests/fixtures/` are envelopes as schema version 1 wrote them, byte for
//! byte. Schema 2 moved an office phone's extension out of the value into its own field; the
//! upcaster reads version 1 values as they were meant.

use prost::Message;
use recovery_info::domain::{AdminState, DomainEvent, MethodKind, admin_decider};
use recovery_info::events::{RecordedEvent, SCHEMA_VERSION, pb};

const V1_ADDED: &[u8] = include_bytes!("../fixtures/v1_office_phone_added.pb");
const V1_CHANGED: &[u8] = include_bytes!("../fixtures/v1_office_phone_changed.pb");

#[test]
fn version_1_events_still_decode_with_their_inline_extension() {
    let added = RecordedEvent::decode(V1_ADDED).unwrap();
    assert_eq!(added.schema_version, 1);
    assert_eq!(added.position, 41);
    assert_eq!(added.actor.subject, "helpdesk-7");
    match &added.event {
        DomainEvent::MethodAdded { kind, value, .. } => {
            assert_eq!(*kind, MethodKind::OfficePhone);
            assert_eq!(value, "+14255550100x123");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn version_1_events_fold_to_the_same_state_as_today() {
    let events: Vec<RecordedEvent> = [V1_ADDED, V1_CHANGED]
        .iter()
        .map(|b| RecordedEvent::decode(b).unwrap())
        .collect();
    let state = events.iter().fold(AdminState::default(), |s, e| {
        admin_decider::evolve(s, &e.event, &e.meta())
    });
    assert_eq!(state.version, 2);
    assert_eq!(state.last_position, 42);
    assert_eq!(state.methods.len(), 1);
    assert_eq!(state.methods[0].value, "+14255550199x45");

    // Written again today, the same events use schema 2 and fold identically.
    let rewritten: Vec<RecordedEvent> = events
        .iter()
        .map(|e| {
            let mut env = e.to_envelope();
            env.schema_version = SCHEMA_VERSION;
            RecordedEvent::decode(&env.encode_to_vec()).unwrap()
        })
        .collect();
    let again = rewritten.iter().fold(AdminState::default(), |s, e| {
        admin_decider::evolve(s, &e.event, &e.meta())
    });
    assert_eq!(again, state);
}

#[test]
fn schema_2_keeps_the_extension_in_its_own_field() {
    let added = RecordedEvent::decode(V1_ADDED).unwrap();
    let env = added.to_envelope();
    match env.event.unwrap() {
        pb::envelope::Event::MethodAdded(m) => {
            assert_eq!(m.value, "+14255550100");
            assert_eq!(m.extension, "123");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_fields_from_a_newer_schema_are_skipped() {
    // Field 99, varint 7: a field this build does not know.
    let mut bytes = V1_CHANGED.to_vec();
    bytes.extend_from_slice(&[0x98, 0x06, 0x07]);
    let decoded = RecordedEvent::decode(&bytes).unwrap();
    assert_eq!(decoded, RecordedEvent::decode(V1_CHANGED).unwrap());
}

#[test]
fn an_unknown_event_type_fails_loudly_instead_of_folding_wrong() {
    let mut env = pb::Envelope::decode(V1_ADDED).unwrap();
    env.event = None; // what an unknown oneof case decodes to
    let err = RecordedEvent::from_envelope(env).unwrap_err();
    assert!(err.to_string().contains("unknown event type"), "{err}");
}
