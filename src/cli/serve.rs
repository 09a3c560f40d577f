//! `serve`: the HTTP API, the projections and the publisher, until SIGINT or SIGTERM; and the
//! banner that tells a first-time user how to get in.

use super::args::{
    DEFAULT_METRICS_LISTEN, MetricsListen, SecretArgs, SigningArgs, StoreArgs, parse_listen,
    parse_metrics_listen, parse_ttl,
};
use super::identity::IdentityArgs;
use crate::config::{MissingSecret, SECRET_FILE, redact_url};
use crate::http::metrics::MetricsToken;
use crate::projections::runner::RunnerConfig;
use crate::publish::PublisherConfig;
use crate::server::{self, ServerConfig};
use crate::store::StoreConfig;
use clap::Args;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `serve` options.
#[derive(Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "RECOVERY_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Address of the metrics listener (/metrics, /healthz, /readyz), or `off`. Keep it on
    /// loopback or a private network: the counters show every tenant's activity.
    #[arg(long, env = "RECOVERY_METRICS_LISTEN", default_value = DEFAULT_METRICS_LISTEN,
          value_parser = parse_metrics_listen)]
    pub metrics_listen: MetricsListen,
    /// Serve /metrics on the API's listener too, to requests with `Authorization: Bearer
    /// <this token>` (at least 32 bytes); without it, /metrics is not on the API's listener.
    #[arg(long, env = "RECOVERY_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    #[command(flatten)]
    pub secret: SecretArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// NATS server (used by the publisher; optional); a cluster's servers separated by commas.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// PEM file of the CA that signed the NATS servers' certificates (beside the system's).
    #[arg(long, env = "NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// How long a query with `min_position` waits for the projection, in milliseconds.
    #[arg(long, env = "RECOVERY_FRESHNESS_TIMEOUT_MS", default_value_t = 2000)]
    pub freshness_timeout_ms: u64,
    /// The most domains a tenant's settings may list.
    #[arg(long, env = "RECOVERY_MAX_TENANT_DOMAINS", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_tenant_domains: u32,
    /// Show tenants the global log's positions as numbers (as before sealed position tokens),
    /// for clients written against them; they reveal how much all tenants write.
    #[arg(long, env = "RECOVERY_PLAIN_POSITIONS")]
    pub plain_positions: bool,
    /// Serve the API only; leave the projections to other replicas.
    #[arg(long, env = "RECOVERY_NO_PROJECTIONS")]
    pub no_projections: bool,
    #[command(flatten)]
    pub publish: PublishArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub notify: NotifyArgs,
    #[command(flatten)]
    pub limits: LimitsArgs,
    /// Send `Strict-Transport-Security` (the service is reached over TLS, through a
    /// terminating proxy, and never over plain HTTP).
    #[arg(long, env = "RECOVERY_HSTS")]
    pub hsts: bool,
    /// An origin whose pages may call the API from a browser (CORS), e.g.
    /// `https://admin.contoso.com`; repeatable or comma-separated. None: no CORS.
    #[arg(long, env = "RECOVERY_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// The console's OpenID client id at the first --oidc-issuer: a public client using the
    /// authorization code with PKCE, its redirect URI this service's origin followed by `/`.
    #[arg(long, env = "RECOVERY_CONSOLE_CLIENT_ID")]
    pub console_client_id: Option<String>,
    /// No development sign-in on the console (it is on only on the embedded store, listening
    /// on loopback, without an OpenID issuer).
    #[arg(long, env = "RECOVERY_NO_DEV_SIGN_IN")]
    pub no_dev_sign_in: bool,
    /// Sign no checkpoints here (another replica does, or none is wanted).
    #[arg(long, env = "RECOVERY_NO_CHECKPOINTS")]
    pub no_checkpoints: bool,
    /// Sign a checkpoint after this many new events (0: by time only).
    #[arg(long, env = "RECOVERY_CHECKPOINT_EVENTS", default_value_t = 10_000)]
    pub checkpoint_events: u64,
    /// Sign a checkpoint this long after the last one when there are new events (seconds, or
    /// a number with s, m, h or d).
    #[arg(long, env = "RECOVERY_CHECKPOINT_INTERVAL", default_value = "5m", value_parser = parse_ttl)]
    pub checkpoint_interval: Duration,
}

impl ServeArgs {
    /// The metrics token, checked for length.
    pub fn metrics_token(&self) -> anyhow::Result<Option<MetricsToken>> {
        self.metrics_token
            .as_deref()
            .map(MetricsToken::new)
            .transpose()
    }
}

/// Limits against abuse (rates per token and per source address, 429 `rate_limited`).
#[derive(Args, Clone, Debug)]
pub struct LimitsArgs {
    /// Writes per token: `<per second>[/<burst>]`, or `off`.
    #[arg(long, env = "RECOVERY_WRITES_PER_TOKEN", default_value = "20/40", value_parser = parse_rate)]
    pub writes_per_token: RateSetting,
    /// Writes per source address.
    #[arg(long, env = "RECOVERY_WRITES_PER_ADDRESS", default_value = "200/400", value_parser = parse_rate)]
    pub writes_per_address: RateSetting,
    /// Eligibility queries per token.
    #[arg(long, env = "RECOVERY_QUERIES_PER_TOKEN", default_value = "200/400", value_parser = parse_rate)]
    pub queries_per_token: RateSetting,
    /// Eligibility queries per source address.
    #[arg(long, env = "RECOVERY_QUERIES_PER_ADDRESS", default_value = "2000/4000", value_parser = parse_rate)]
    pub queries_per_address: RateSetting,
    /// Open event streams per tenant (0: no cap).
    #[arg(long, env = "RECOVERY_STREAMS_PER_TENANT", default_value_t = 100)]
    pub streams_per_tenant: usize,
    /// How long a request may take to be answered: seconds, or a number with s or m; `off`
    /// for none. Beyond: 503 `request_timeout` (a write: repeat it with its
    /// Idempotency-Key). Event streams' bodies and `…/audit/verify` are not bounded.
    #[arg(long, env = "RECOVERY_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub request_timeout: Duration,
}

/// A rate, or `off` (a type of its own: clap reads an `Option` field as a flag that may be
/// absent, not as a value that may be `off`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSetting(pub Option<crate::http::limits::Rate>);

/// A duration (see `parse_ttl`), or `off` (zero).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "off" => Ok(Duration::ZERO),
        other => parse_ttl(other),
    }
}

fn parse_rate(s: &str) -> Result<RateSetting, String> {
    match s.trim() {
        "off" => Ok(RateSetting(None)),
        other => other.parse().map(|r| RateSetting(Some(r))),
    }
}

impl LimitsArgs {
    pub fn config(&self) -> crate::http::limits::LimitsConfig {
        crate::http::limits::LimitsConfig {
            writes_per_token: self.writes_per_token.0,
            writes_per_address: self.writes_per_address.0,
            queries_per_token: self.queries_per_token.0,
            queries_per_address: self.queries_per_address.0,
            streams_per_tenant: (self.streams_per_tenant > 0).then_some(self.streams_per_tenant),
            request_timeout: (!self.request_timeout.is_zero()).then_some(self.request_timeout),
        }
    }
}

/// Notices to the old contact (docs/notifications.md).
#[derive(Args, Clone)]
pub struct NotifyArgs {
    /// Send no notices from here (another replica does, or none is wanted).
    #[arg(long, env = "RECOVERY_NO_NOTIFICATIONS")]
    pub no_notifications: bool,
    /// The SMTP relay for email notices: `smtp://[user:pass@]host:587?tls=required` (STARTTLS),
    /// `smtps://[user:pass@]host:465` (implicit TLS), `smtp://host:25` (no TLS: loopback only).
    #[arg(
        long,
        env = "RECOVERY_SMTP_URL",
        hide_env_values = true,
        requires = "smtp_from"
    )]
    pub smtp_url: Option<String>,
    /// The notices' sender address, e.g. `Security <no-reply@contoso.com>`.
    #[arg(long, env = "RECOVERY_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// The webhook that sends SMS and voice notices (POST JSON, signed).
    #[arg(
        long,
        env = "RECOVERY_SMS_WEBHOOK_URL",
        requires = "sms_webhook_secret"
    )]
    pub sms_webhook_url: Option<String>,
    /// The webhook's HMAC-SHA256 key (at least 16 bytes).
    #[arg(long, env = "RECOVERY_SMS_WEBHOOK_SECRET", hide_env_values = true)]
    pub sms_webhook_secret: Option<String>,
    /// Where a notice tells its reader to report a change that was not theirs.
    #[arg(
        long,
        env = "RECOVERY_NOTIFY_REPORT_TO",
        default_value = "your IT help desk"
    )]
    pub notify_report_to: String,
    /// Tries before a notice is a dead letter.
    #[arg(long, env = "RECOVERY_NOTIFY_MAX_ATTEMPTS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub notify_max_attempts: u32,
    /// The first retry's wait (doubling each time, at most an hour; seconds, or a number with
    /// s, m, h or d).
    #[arg(long, env = "RECOVERY_NOTIFY_RETRY", default_value = "30s", value_parser = parse_ttl)]
    pub notify_retry: Duration,
    /// How long a replica holds a notice it is sending before another may send it.
    #[arg(long, env = "RECOVERY_NOTIFY_LEASE", default_value = "60s", value_parser = parse_ttl)]
    pub notify_lease: Duration,
}

impl fmt::Debug for NotifyArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyArgs")
            .field("no_notifications", &self.no_notifications)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("smtp_from", &self.smtp_from)
            .field(
                "sms_webhook_url",
                &self.sms_webhook_url.as_deref().map(redact_url),
            )
            .field(
                "sms_webhook_secret",
                &self.sms_webhook_secret.as_ref().map(|_| "***"),
            )
            .field("notify_report_to", &self.notify_report_to)
            .field("notify_max_attempts", &self.notify_max_attempts)
            .field("notify_retry", &self.notify_retry)
            .field("notify_lease", &self.notify_lease)
            .finish()
    }
}

impl NotifyArgs {
    /// The notifier these flags describe (none with --no-notifications).
    pub fn config(&self) -> anyhow::Result<Option<crate::notify::NotifierConfig>> {
        use crate::notify::channels::{Channels, Smtp, Webhook};
        if self.no_notifications {
            return Ok(None);
        }
        let smtp = match (&self.smtp_url, &self.smtp_from) {
            (Some(url), Some(from)) => Some(Smtp::new(url, from)?),
            _ => None,
        };
        let webhook = match (&self.sms_webhook_url, &self.sms_webhook_secret) {
            (Some(url), Some(secret)) => Some(Webhook::new(url, secret)?),
            _ => None,
        };
        Ok(Some(crate::notify::NotifierConfig {
            channels: Channels { smtp, webhook },
            report_to: self.notify_report_to.clone(),
            max_attempts: self.notify_max_attempts,
            backoff: self.notify_retry,
            lease: self.notify_lease,
            ..Default::default()
        }))
    }
}

/// Publishing to NATS JetStream (used when `--nats-url` is set).
#[derive(Args, Clone, Debug)]
pub struct PublishArgs {
    /// The JetStream stream the events go to.
    #[arg(long, env = "RECOVERY_NATS_STREAM", default_value = "RECOVERY_EVENTS")]
    pub nats_stream: String,
    /// First tokens of every subject.
    #[arg(
        long,
        env = "RECOVERY_NATS_SUBJECT_PREFIX",
        default_value = "recovery.v1"
    )]
    pub nats_subject_prefix: String,
    /// The stream's duplicate window (seconds, or a number with s, m, h or d).
    #[arg(long, env = "RECOVERY_NATS_DUPLICATE_WINDOW", default_value = "10m", value_parser = parse_ttl)]
    pub nats_duplicate_window: Duration,
    /// Copies of the stream JetStream keeps (its servers in a cluster: 1, 3 or 5).
    #[arg(long, env = "RECOVERY_NATS_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_replicas: u8,
    /// Publish raw phone numbers and emails (trusted internal consumers only).
    #[arg(long, env = "RECOVERY_PUBLISH_RAW_VALUES")]
    pub publish_raw_values: bool,
    /// How long the publishing replica may go without renewing its lease before another
    /// replica takes over (seconds, or a number with s, m, h or d).
    #[arg(long, env = "RECOVERY_PUBLISHER_LEASE", default_value = "30s", value_parser = parse_ttl)]
    pub publisher_lease: Duration,
}

impl fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeArgs")
            .field("store", &self.store)
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "***"))
            .field("secret", &self.secret)
            .field("identity", &self.identity)
            .field("nats_url", &self.nats_url.as_deref().map(redact_url))
            .field("nats_ca", &self.nats_ca)
            .field("freshness_timeout_ms", &self.freshness_timeout_ms)
            .field("max_tenant_domains", &self.max_tenant_domains)
            .field("plain_positions", &self.plain_positions)
            .field("no_projections", &self.no_projections)
            .field("publish", &self.publish)
            .field("signing", &self.signing)
            .field("notify", &self.notify)
            .field("no_checkpoints", &self.no_checkpoints)
            .field("checkpoint_events", &self.checkpoint_events)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .finish()
    }
}

/// Runs `serve`.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing::debug!(config = ?args, "configuration");
    let store = args.store.store_config();
    let publisher = args.nats_url.as_ref().map(|url| PublisherConfig {
        stream_name: args.publish.nats_stream.clone(),
        subject_prefix: args.publish.nats_subject_prefix.clone(),
        duplicate_window: args.publish.nats_duplicate_window,
        replicas: usize::from(args.publish.nats_replicas),
        ca_file: args.nats_ca.clone(),
        reveal_values: args.publish.publish_raw_values,
        lease: args.publish.publisher_lease,
        ..PublisherConfig::new(url)
    });
    // Before the secret, whose generation creates the data directory: a configuration
    // that cannot work leaves nothing behind (`server::start` checks it too, for the
    // library's callers).
    crate::publish::check_store(publisher.as_ref(), &store)?;
    let oidc = args.identity.oidc()?;
    // With an issuer, the service's own tokens only with a secret given: none is generated.
    let jwt_secret = match (&oidc, &args.secret.jwt_secret) {
        (Some(_), None) => None,
        _ => Some(args.secret.resolve(&store, MissingSecret::Generate)?),
    };
    let issuers = oidc.as_ref().map(|o| o.issuers.clone()).unwrap_or_default();
    let config = ServerConfig {
        jwt_secret,
        oidc,
        step_up: args.identity.step_up(),
        store: store.clone(),
        listen: args.listen,
        metrics_listen: args.metrics_listen.0,
        metrics_token: args.metrics_token()?,
        freshness_timeout: Duration::from_millis(args.freshness_timeout_ms),
        plain_positions: args.plain_positions,
        settings_limits: crate::domain::SettingsLimits {
            max_domains: args.max_tenant_domains as usize,
        },
        runner: RunnerConfig::default(),
        run_projections: !args.no_projections,
        publisher,
        notifier: args.notify.config()?,
        console_client_id: args.console_client_id.clone(),
        limits: args.limits.config(),
        edge: crate::http::Edge {
            hsts: args.hsts,
            cors_origins: args.cors_origin.clone(),
        },
        dev_sign_in: !args.no_dev_sign_in
            && matches!(store, StoreConfig::Embedded { .. })
            && args.listen.ip().is_loopback(),
        checkpoints: crate::audit::checkpoints::CheckpointConfig {
            enabled: !args.no_checkpoints,
            key_file: args.signing.signing_key_file.clone(),
            log_name: args.signing.log_name.clone(),
            every_events: args.checkpoint_events,
            every: args.checkpoint_interval,
            ..Default::default()
        },
    };
    let server = server::start(config).await?;
    print_banner(
        server.addr,
        server.metrics_addr,
        &store,
        args.secret.jwt_secret.is_some(),
        &issuers,
    );
    println!("  checkpoints signed by: {}", server.audit_key);
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.stop().await
}

/// What a first-time user needs to go on: where it listens, where the data is, how to get in:
/// a token command that works as typed, from any directory (the binary's real path and the
/// data directory's absolute one), and the `cargo run` form when it runs from a cargo build.
fn print_banner(
    addr: std::net::SocketAddr,
    metrics: Option<std::net::SocketAddr>,
    store: &StoreConfig,
    explicit_secret: bool,
    issuers: &[String],
) {
    println!("recovery-info listening on http://{addr}");
    println!(
        "  metrics: {}",
        metrics.map_or("off".into(), |m| format!("http://{m}/metrics"))
    );
    println!("  store: {}", store.describe());
    for issuer in issuers {
        println!("  tokens: from the OpenID issuer {issuer}");
    }
    if !issuers.is_empty() && !explicit_secret {
        println!("  (the service's own tokens are off: no RECOVERY_JWT_SECRET)");
        return;
    }
    let (secret, store_flag) = match (store, explicit_secret) {
        (StoreConfig::Embedded { data_dir, .. }, false) => (
            format!(
                "signed with the secret kept in {};",
                data_dir.join(SECRET_FILE).display()
            ),
            format!(
                " --data-dir {}",
                shell_word(&data_dir.display().to_string())
            ),
        ),
        _ => (
            "signed with RECOVERY_JWT_SECRET; with the same secret in the environment,".to_owned(),
            String::new(),
        ),
    };
    let mint = format!(
        "token --tenant <tenant-uuid> --subject <admin-uuid> --role self_service{store_flag}"
    );
    let exe = std::env::current_exe().ok();
    let program = exe.as_deref().map_or("recovery-info".to_owned(), |p| {
        shell_word(&p.display().to_string())
    });
    println!("  tokens: {secret} mint one with");
    println!("    {program} {mint}");
    if let Some((project, profile)) = exe.as_deref().and_then(cargo_build) {
        println!(
            "    or, in {}: cargo run -q{profile} -- {mint}",
            project.display()
        );
    }
    println!("  (roles: self_service, authentication_admin, reset_service, auditor, dashboard)");
}

/// The project and the `cargo run` profile flag of a binary that cargo built into the
/// project's `target/<profile>/`.
fn cargo_build(exe: &std::path::Path) -> Option<(&std::path::Path, String)> {
    let profile_dir = exe.parent()?;
    let target = profile_dir.parent()?;
    let project = target.parent()?;
    if target.file_name()? != "target" || !project.join("Cargo.toml").is_file() {
        return None;
    }
    let flag = match profile_dir.file_name()?.to_str()? {
        "debug" => String::new(),
        "release" => " --release".to_owned(),
        other => format!(" --profile {other}"),
    };
    Some((project, flag))
}

/// `word` as a shell reads it back: as it is when a shell leaves all its characters alone,
/// single-quoted otherwise.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@,=%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
