//! `serve`'s identity options: the organisation's OpenID issuers, how their tokens' claims map
//! onto tenants, subjects and roles, and the step-up rule for writes of security info.

use super::args::parse_ttl;
use crate::domain::TenantId;
use crate::http::auth::claims::{ClaimMapping, Preset, TenantSource};
use crate::http::auth::oidc::OidcConfig;
use crate::http::auth::{Role, StepUp};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// Tokens from the organisation's identity provider, and step-up.
#[derive(Args, Clone, Debug)]
pub struct IdentityArgs {
    /// An OpenID Connect issuer whose tokens are accepted (its URL exactly as the tokens' `iss`
    /// spells it); repeat, or separate with commas, for several. Without
    /// RECOVERY_JWT_SECRET, only the issuers' tokens are accepted.
    #[arg(
        long = "oidc-issuer",
        env = "RECOVERY_OIDC_ISSUERS",
        value_delimiter = ','
    )]
    pub issuers: Vec<String>,
    /// The audience (`aud`) every issuer's token must name: the service's application id or
    /// URI at the provider.
    #[arg(long = "oidc-audience", env = "RECOVERY_OIDC_AUDIENCE")]
    pub audience: Option<String>,
    /// The provider's token shape: entra, okta, keycloak or generic (docs/identity.md).
    #[arg(long = "oidc-preset", env = "RECOVERY_OIDC_PRESET", default_value = "generic",
          value_parser = parse_preset)]
    pub preset: Preset,
    /// The claim holding the tenant's UUID (instead of the preset's).
    #[arg(long = "oidc-tenant-claim", env = "RECOVERY_OIDC_TENANT_CLAIM")]
    pub tenant_claim: Option<String>,
    /// Every issuer's token is of this tenant (a deployment for one organisation).
    #[arg(
        long = "oidc-tenant",
        env = "RECOVERY_OIDC_TENANT",
        conflicts_with = "tenant_claim"
    )]
    pub tenant: Option<Uuid>,
    /// The claim holding the subject (instead of the preset's).
    #[arg(long = "oidc-subject-claim", env = "RECOVERY_OIDC_SUBJECT_CLAIM")]
    pub subject_claim: Option<String>,
    /// A claim holding role names, a path with dots (instead of the preset's); repeat for
    /// several.
    #[arg(
        long = "oidc-roles-claim",
        env = "RECOVERY_OIDC_ROLES_CLAIMS",
        value_delimiter = ','
    )]
    pub roles_claims: Vec<String>,
    /// A provider's role name and the role it is here, `NAME=role` (e.g.
    /// `RecoveryInfo.Auditor=auditor`); repeat, or separate with commas.
    #[arg(long = "oidc-role-map", env = "RECOVERY_OIDC_ROLE_MAP", value_delimiter = ',',
          value_parser = parse_role_map)]
    pub role_map: Vec<(String, Role)>,
    /// Clock skew allowed on `exp` and `nbf` (seconds, or a number with s, m, h or d).
    #[arg(long = "oidc-leeway", env = "RECOVERY_OIDC_LEEWAY", default_value = "30s",
          value_parser = parse_ttl)]
    pub leeway: Duration,
    /// How often the issuers' keys are fetched again.
    #[arg(long = "oidc-refresh", env = "RECOVERY_OIDC_REFRESH", default_value = "15m",
          value_parser = parse_ttl)]
    pub refresh: Duration,
    /// The shortest time between two fetches of an issuer's keys caused by a token naming a
    /// key (`kid`) the service does not hold.
    #[arg(long = "oidc-refetch-interval", env = "RECOVERY_OIDC_REFETCH_INTERVAL",
          default_value = "30s", value_parser = parse_ttl)]
    pub refetch_interval: Duration,
    /// A PEM file of a CA that signed the issuers' certificates (beside the system's roots).
    #[arg(long = "oidc-ca", env = "RECOVERY_OIDC_CA")]
    pub ca: Option<PathBuf>,
    /// How old a sign-in may be for a write of security info (`auth_time`), or `off`.
    #[arg(long = "step-up-max-age", env = "RECOVERY_STEP_UP_MAX_AGE", default_value = "10m",
          value_parser = parse_max_age)]
    pub step_up_max_age: MaxAge,
    /// An `acr` that counts as a strong (multi-factor) sign-in for such a write; repeat, or
    /// separate with commas. With none (and no --step-up-amr), only the age counts.
    #[arg(
        long = "step-up-acr",
        env = "RECOVERY_STEP_UP_ACR",
        value_delimiter = ','
    )]
    pub step_up_acr: Vec<String>,
    /// An `amr` method that counts as strong (e.g. `mfa`); repeat, or separate with commas.
    #[arg(
        long = "step-up-amr",
        env = "RECOVERY_STEP_UP_AMR",
        value_delimiter = ','
    )]
    pub step_up_amr: Vec<String>,
}

/// `--step-up-max-age`: a duration, or none.
#[derive(Clone, Copy, Debug)]
pub struct MaxAge(pub Option<Duration>);

fn parse_max_age(s: &str) -> Result<MaxAge, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(MaxAge(None));
    }
    parse_ttl(s).map(|d| MaxAge(Some(d)))
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    Preset::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Preset::ALL.iter().map(|(n, _)| *n).collect();
        format!("unknown preset {s:?}; expected {}", names.join(", "))
    })
}

fn parse_role_map(s: &str) -> Result<(String, Role), String> {
    let (name, role) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=role"))?;
    let role = Role::ALL
        .into_iter()
        .find(|r| r.as_str() == role.trim())
        .ok_or_else(|| {
            let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            format!(
                "unknown role {role:?} in {s:?}; expected {}",
                roles.join(", ")
            )
        })?;
    Ok((name.trim().to_owned(), role))
}

impl IdentityArgs {
    /// The OpenID configuration, when issuers are given.
    pub fn oidc(&self) -> anyhow::Result<Option<OidcConfig>> {
        if self.issuers.is_empty() {
            return Ok(None);
        }
        let Some(audience) = self.audience.clone() else {
            anyhow::bail!(
                "--oidc-issuer needs --oidc-audience (RECOVERY_OIDC_AUDIENCE): the `aud` the tokens must name"
            );
        };
        let mut mapping = ClaimMapping::preset(self.preset, &audience);
        if let Some(claim) = &self.tenant_claim {
            mapping.tenant = TenantSource::Claim(claim.clone());
        }
        if let Some(tenant) = self.tenant {
            mapping.tenant = TenantSource::Fixed(TenantId::from_uuid(tenant));
        }
        if let Some(claim) = &self.subject_claim {
            mapping.subject = claim.clone();
        }
        if !self.roles_claims.is_empty() {
            mapping.roles = self.roles_claims.clone();
        }
        mapping.role_map.extend(self.role_map.iter().cloned());
        Ok(Some(OidcConfig {
            issuers: self.issuers.clone(),
            audience,
            mapping,
            leeway: self.leeway.as_secs(),
            refresh: self.refresh,
            refetch_interval: self.refetch_interval,
            ca_file: self.ca.clone(),
        }))
    }

    /// The step-up rule.
    pub fn step_up(&self) -> StepUp {
        StepUp {
            max_age: self.step_up_max_age.0,
            acr_values: self.step_up_acr.clone(),
            amr_values: self.step_up_amr.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        identity: IdentityArgs,
    }

    fn parse(args: &[&str]) -> IdentityArgs {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .unwrap()
            .identity
    }

    #[test]
    fn issuers_presets_and_role_maps_are_read_and_checked() {
        let args = parse(&[
            "--oidc-issuer",
            "https://login.microsoftonline.com/t/v2.0,https://acme.okta.com",
            "--oidc-audience",
            "api://recovery-info",
            "--oidc-preset",
            "entra",
            "--oidc-role-map",
            "Helpdesk=authentication_admin",
        ]);
        let oidc = args.oidc().unwrap().unwrap();
        assert_eq!(oidc.issuers.len(), 2);
        assert_eq!(oidc.mapping.subject, "oid");
        assert_eq!(
            oidc.mapping.role_map.get("Helpdesk"),
            Some(&Role::AuthenticationAdmin)
        );
        assert_eq!(args.step_up().max_age, Some(Duration::from_secs(600)));
        let no_audience = parse(&["--oidc-issuer", "https://idp.example.com"]);
        assert!(
            no_audience
                .oidc()
                .unwrap_err()
                .to_string()
                .contains("--oidc-audience")
        );
        assert!(parse(&[]).oidc().unwrap().is_none());
        assert_eq!(
            parse(&["--step-up-max-age", "off"]).step_up(),
            StepUp::off()
        );
        for bad in [
            &["--oidc-preset", "azure"][..],
            &["--oidc-role-map", "X=root"],
            &["--oidc-role-map", "no-equals"],
        ] {
            assert!(Cli::try_parse_from(std::iter::once("x").chain(bad.iter().copied())).is_err());
        }
    }
}
