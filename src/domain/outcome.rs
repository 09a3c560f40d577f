//! What a command leaves behind, for its answer: a typed outcome that every interface renders
//! (HTTP as JSON, with the status of the route) and that an idempotency record keeps, so that
//! a retry is answered with the first outcome.

use super::{AdminState, Method, MethodId, NoticeSettings, ResetPolicy, TenantDomain, TenantState};
use serde::{Deserialize, Serialize};

/// A command's outcome: the version of the command's stream and the log position after it
/// (those of the stream's last event when the command appended nothing), and what it leaves.
///
/// Its serde form is the one idempotency records keep ([`Recorded`]), which is the JSON of
/// the answers that builds before typed outcomes stored: their records read as outcomes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Recorded", into = "Recorded")]
pub enum CommandOutcome {
    /// An admin command, and the method it leaves in place: the added or changed one (none
    /// after a removal or an offboarding).
    Admin {
        version: u64,
        position: u64,
        method: Option<Method>,
    },
    /// A change of settings: the tenant's settings after it, with their stream's version and
    /// position.
    Settings(TenantState),
}

impl CommandOutcome {
    /// The outcome of an admin command that leaves the admin at `state`, showing the method
    /// `shown` if it has one.
    pub fn admin(state: &AdminState, shown: Option<MethodId>) -> Self {
        CommandOutcome::Admin {
            version: state.version,
            position: state.last_position,
            method: shown.and_then(|id| state.method(id)).cloned(),
        }
    }

    /// The version of the command's stream after it.
    pub fn version(&self) -> u64 {
        match self {
            CommandOutcome::Admin { version, .. } => *version,
            CommandOutcome::Settings(state) => state.version,
        }
    }

    /// The log position after the command, for a read at least this fresh.
    pub fn position(&self) -> u64 {
        match self {
            CommandOutcome::Admin { position, .. } => *position,
            CommandOutcome::Settings(state) => state.last_position,
        }
    }

    /// The method the command leaves in place, if it shows one.
    pub fn method(&self) -> Option<&Method> {
        match self {
            CommandOutcome::Admin { method, .. } => method.as_ref(),
            CommandOutcome::Settings(_) => None,
        }
    }
}

/// An outcome as an idempotency record keeps it: what builds before typed outcomes stored as
/// the answer's JSON body (`{"method", "version", "position"}`, `method` absent after a
/// removal; a settings answer `{"domains", "reset_policy": {"name"}, "version", "position"}`,
/// and `notifications` once a tenant set them),
/// positions plain. Told apart by their fields, so those records need no conversion. Fields may
/// be added (with defaults), never renamed.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Recorded {
    Settings {
        domains: Vec<TenantDomain>,
        reset_policy: RecordedPolicy,
        /// Added with the notices (issue 21): absent in older records, and while they are the
        /// defaults (so that a retry of an older command answers byte for byte as it did).
        #[serde(default, skip_serializing_if = "NoticeSettings::is_default")]
        notifications: NoticeSettings,
        version: u64,
        position: u64,
    },
    Admin {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        method: Option<Method>,
        version: u64,
        position: u64,
    },
}

#[derive(Serialize, Deserialize)]
struct RecordedPolicy {
    name: ResetPolicy,
}

impl From<Recorded> for CommandOutcome {
    fn from(r: Recorded) -> Self {
        match r {
            Recorded::Admin {
                method,
                version,
                position,
            } => CommandOutcome::Admin {
                version,
                position,
                method,
            },
            Recorded::Settings {
                domains,
                reset_policy,
                notifications,
                version,
                position,
            } => CommandOutcome::Settings(TenantState {
                version,
                last_position: position,
                domains,
                policy: reset_policy.name,
                notices: notifications,
            }),
        }
    }
}

impl From<CommandOutcome> for Recorded {
    fn from(o: CommandOutcome) -> Self {
        match o {
            CommandOutcome::Admin {
                version,
                position,
                method,
            } => Recorded::Admin {
                method,
                version,
                position,
            },
            CommandOutcome::Settings(s) => Recorded::Settings {
                domains: s.domains,
                reset_policy: RecordedPolicy { name: s.policy },
                notifications: s.notices,
                version: s.version,
                position: s.last_position,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MethodKind;
    use serde_json::{Value, json};
    use uuid::Uuid;

    /// Bodies as the builds before typed outcomes stored them in `idempotency_keys.response`.
    fn old_bodies() -> [(Value, CommandOutcome); 4] {
        let at = "2026-03-01T10:00:00.123456789Z".parse().unwrap();
        let method = Method {
            id: MethodId::from_uuid(Uuid::from_u128(7)),
            kind: MethodKind::OfficePhone,
            value: "+14255550100x123".into(),
            added_at: at,
            changed_at: at,
        };
        [
            (
                json!({"method": {"id": "00000000-0000-0000-0000-000000000007",
                                  "kind": "office_phone", "value": "+14255550100x123",
                                  "added_at": "2026-03-01T10:00:00.123456789Z",
                                  "changed_at": "2026-03-01T10:00:00.123456789Z"},
                       "version": 3, "position": 41}),
                CommandOutcome::Admin {
                    version: 3,
                    position: 41,
                    method: Some(method),
                },
            ),
            (
                json!({"version": 4, "position": 42}),
                CommandOutcome::Admin {
                    version: 4,
                    position: 42,
                    method: None,
                },
            ),
            (
                json!({"domains": ["contoso.com", "xn--bcher-kva.de"],
                       "reset_policy": {"name": "any_two_methods"},
                       "version": 2, "position": 43}),
                CommandOutcome::Settings(TenantState {
                    version: 2,
                    last_position: 43,
                    domains: vec![
                        TenantDomain::parse("contoso.com").unwrap(),
                        TenantDomain::parse("bücher.de").unwrap(),
                    ],
                    policy: ResetPolicy::AnyTwoMethods,
                    notices: Default::default(),
                }),
            ),
            (
                json!({"domains": [], "reset_policy": {"name": "email_and_mobile_phone"},
                       "version": 0, "position": 0}),
                CommandOutcome::Settings(TenantState::default()),
            ),
        ]
    }

    #[test]
    fn the_answers_that_older_builds_kept_read_as_outcomes() {
        for (body, outcome) in old_bodies() {
            let read: CommandOutcome = serde_json::from_value(body.clone()).unwrap();
            assert_eq!(read, outcome, "{body}");
        }
    }

    #[test]
    fn an_outcome_is_kept_as_older_builds_kept_the_answer() {
        for (body, outcome) in old_bodies() {
            assert_eq!(serde_json::to_value(&outcome).unwrap(), body);
            let text = serde_json::to_string(&outcome).unwrap();
            assert_eq!(
                serde_json::from_str::<CommandOutcome>(&text).unwrap(),
                outcome
            );
        }
    }

    #[test]
    fn an_admin_outcome_shows_the_method_it_names_if_the_admin_has_it() {
        let state = AdminState {
            version: 2,
            last_position: 9,
            ..AdminState::default()
        };
        let outcome = CommandOutcome::admin(&state, Some(MethodId::from_uuid(Uuid::nil())));
        assert_eq!(outcome.method(), None);
        assert_eq!((outcome.version(), outcome.position()), (2, 9));
    }
}
