//! `token`: mints a bearer token for operators and tests, signed with the service's secret.

use super::args::{SecretArgs, StoreArgs, one_of, parse_ttl};
use crate::config::MissingSecret;
use crate::http::auth::{JwtKeys, Role};
use clap::Args;
use clap::builder::TypedValueParser;
use std::time::Duration;
use uuid::Uuid;

/// `token` options.
#[derive(Args, Clone, Debug)]
pub struct TokenArgs {
    /// Tenant id (UUID).
    #[arg(long)]
    pub tenant: Uuid,
    /// Subject: for `self_service`, the admin's own id.
    #[arg(long)]
    pub subject: String,
    /// A role; repeat for several.
    #[arg(long = "role", required = true, value_parser = roles())]
    pub roles: Vec<Role>,
    /// Lifetime: seconds, or a number with s, m, h or d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    #[command(flatten)]
    pub secret: SecretArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `--role`: a role by its claim name, each with what it may do for `--help`.
fn roles() -> impl TypedValueParser<Value = Role> {
    const ROLES: &[(Role, Option<&str>)] = &[
        (
            Role::SelfService,
            Some("An admin managing their own security info (`sub` is their admin id)"),
        ),
        (
            Role::AuthenticationAdmin,
            Some("Manages any admin of the tenant and the tenant's settings"),
        ),
        (
            Role::ResetService,
            Some("The password-reset flow: reads eligibility"),
        ),
        (
            Role::Auditor,
            Some("Reads views, history and the event feed"),
        ),
        (
            Role::Dashboard,
            Some("Reads the event feed and eligibility"),
        ),
    ];
    one_of(ROLES, Role::as_str)
}

/// Runs `token`: the token on stdout.
pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let store = args.store.store_config();
    let keys = JwtKeys::new(&args.secret.resolve(&store, MissingSecret::Refuse)?);
    let token = keys.mint(
        args.tenant,
        &args.subject,
        &args.roles,
        args.ttl.as_secs() as i64,
    )?;
    println!("{token}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn every_role_is_named_as_in_its_claims() {
        let command = clap::Command::new("token");
        for name in [
            "self_service",
            "authentication_admin",
            "reset_service",
            "auditor",
            "dashboard",
        ] {
            let claim: Role = serde_json::from_value(name.into()).unwrap();
            let parsed = roles().parse_ref(&command, None, OsStr::new(name));
            assert_eq!(parsed.unwrap(), claim, "{name}");
        }
        for bad in ["root", "Auditor", ""] {
            assert!(roles().parse_ref(&command, None, OsStr::new(bad)).is_err());
        }
    }
}
