//! Step-up before security info changes (RFC 9470).
//!
//! The attack this service exists to stop is someone with a stolen session replacing the
//! recovery phone or email. So a write of security info — an admin's own, by a `self_service`
//! token, or another admin's, by an `authentication_admin` — needs a sign-in at most
//! [`StepUp::max_age`] old (the token's `auth_time`) and, when configured, one that shows
//! multi-factor authentication (an `acr` of [`StepUp::acr_values`], or an `amr` of
//! [`StepUp::amr_values`]). Otherwise the answer is 401 `step_up_required` with
//! `WWW-Authenticate: Bearer error="insufficient_user_authentication", max_age=…, acr_values=…`,
//! which tells the client to send the user back to the identity provider for a fresh sign-in.
//! Reads are not affected.

use super::Caller;
use crate::error::Code;
use crate::http::error::ApiError;
use std::time::Duration;

/// What a sign-in must be for a write of security info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepUp {
    /// How old the sign-in may be; `None`: any age (step-up off).
    pub max_age: Option<Duration>,
    /// Authentication context classes that count as strong (any of them); none: no rule.
    pub acr_values: Vec<String>,
    /// Authentication methods that count as strong (`mfa`, `hwk`, …; any of them); none: no
    /// rule. With both lists, either satisfies.
    pub amr_values: Vec<String>,
}

impl Default for StepUp {
    /// Ten minutes, no strength rule.
    fn default() -> Self {
        StepUp {
            max_age: Some(Duration::from_secs(600)),
            acr_values: Vec::new(),
            amr_values: Vec::new(),
        }
    }
}

impl StepUp {
    /// No step-up at all.
    pub fn off() -> Self {
        StepUp {
            max_age: None,
            acr_values: Vec::new(),
            amr_values: Vec::new(),
        }
    }

    /// Refuses `caller`'s write unless its sign-in is recent and strong enough at `now`
    /// (seconds since the epoch).
    pub(crate) fn check(&self, caller: &Caller, now: i64) -> Result<(), ApiError> {
        let sign_in = &caller.sign_in;
        if let Some(max_age) = self.max_age {
            let fresh = sign_in
                .auth_time
                .is_some_and(|t| now.saturating_sub(t) <= max_age.as_secs() as i64);
            if !fresh {
                let why = match sign_in.auth_time {
                    None => "the token does not say when its user signed in (auth_time)".into(),
                    Some(t) => format!(
                        "the sign-in is {} s old, more than the {} s allowed",
                        now.saturating_sub(t),
                        max_age.as_secs()
                    ),
                };
                return Err(self.refusal(why));
            }
        }
        if !self.acr_values.is_empty() || !self.amr_values.is_empty() {
            let acr = sign_in
                .acr
                .as_ref()
                .is_some_and(|a| self.acr_values.contains(a));
            let amr = sign_in.amr.iter().any(|m| self.amr_values.contains(m));
            if !acr && !amr {
                return Err(self.refusal(
                    "the sign-in does not show multi-factor authentication (acr, amr)".into(),
                ));
            }
        }
        Ok(())
    }

    fn refusal(&self, why: String) -> ApiError {
        ApiError::new(
            Code::StepUpRequired,
            format!("a fresh, strong sign-in is required to change security info: {why}"),
        )
        .with_www_authenticate(self.challenge())
    }

    /// The `WWW-Authenticate` challenge of RFC 9470 §3.
    pub(crate) fn challenge(&self) -> String {
        let mut challenge = String::from(
            "Bearer error=\"insufficient_user_authentication\", \
             error_description=\"A more recent or stronger sign-in is required\"",
        );
        if let Some(max_age) = self.max_age {
            challenge.push_str(&format!(", max_age={}", max_age.as_secs()));
        }
        if !self.acr_values.is_empty() {
            challenge.push_str(&format!(", acr_values=\"{}\"", self.acr_values.join(" ")));
        }
        challenge
    }
}
