//! Configuration: flags with environment fallbacks, parsed by clap and checked at start.

use crate::http::auth::Role;
use crate::http::metrics::MetricsToken;
use crate::store::StoreConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// The shortest accepted `RECOVERY_JWT_SECRET`, in bytes (HS256 wants at least 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// recovery-info: the system of record for administrators' security info.
#[derive(Parser, Debug)]
#[command(name = "recovery-info", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "RECOVERY_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API and the projections (applies migrations first).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(StoreArgs),
    /// Mint a bearer token for operators and tests.
    Token(TokenArgs),
    /// Print a tenant's live events and eligibility changes from NATS, one line each.
    Watch(WatchArgs),
    /// Auditor's tools: verify the hash chains, export the history.
    #[command(subcommand)]
    Audit(crate::audit::AuditCommand),
    /// Rebuild projections from position 0 into fresh tables and swap them in, live.
    Replay(crate::projections::replay::ReplayArgs),
}

/// `watch` options.
#[derive(Args, Clone, Debug)]
pub struct WatchArgs {
    /// NATS server; a cluster's servers separated by commas.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// PEM file of the CA that signed the NATS servers' certificates (beside the system's).
    #[arg(long, env = "NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// Tenant id (UUID).
    #[arg(long)]
    pub tenant: Uuid,
    /// Only this admin (UUID); tenant-level events are then left out.
    #[arg(long)]
    pub admin: Option<Uuid>,
    /// First tokens of the subjects.
    #[arg(
        long,
        env = "RECOVERY_NATS_SUBJECT_PREFIX",
        default_value = "recovery.v1"
    )]
    pub subject_prefix: String,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<usize>,
}

/// Connections in the PostgreSQL pool by default: the commands, the appender, both projection
/// runners and the publisher draw on it (16 made commands queue for a connection under load).
pub const DEFAULT_POOL_SIZE: usize = 32;

/// Where the event store lives.
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// PostgreSQL connection string, e.g. postgres://postgres@127.0.0.1:5432/recovery.
    /// Without it, the embedded store in --data-dir is used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory of the embedded store (used when no DATABASE_URL is given).
    #[arg(long, env = "RECOVERY_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Connections in the PostgreSQL pool.
    #[arg(long, env = "RECOVERY_DB_POOL_SIZE", default_value_t = DEFAULT_POOL_SIZE)]
    pub db_pool_size: usize,
}

impl StoreArgs {
    /// The backend these arguments choose. The data directory is made absolute, so that what
    /// names it (the banner's token command, an error) means the same from any directory.
    pub fn store_config(&self) -> StoreConfig {
        match &self.database_url {
            Some(url) => StoreConfig::Postgres {
                url: url.clone(),
                pool_size: self.db_pool_size,
            },
            None => StoreConfig::Embedded {
                data_dir: std::path::absolute(&self.data_dir)
                    .unwrap_or_else(|_| self.data_dir.clone()),
            },
        }
    }
}

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

/// Where the metrics listener listens unless told otherwise: loopback, on the port commonly
/// given to a Prometheus exporter of this kind.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// `--metrics-listen`: the metrics listener's address, or none (`off`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsListen(pub Option<SocketAddr>);

/// Parses `127.0.0.1:9464`, `[::1]:9464`, `localhost:9464` or `off`.
pub fn parse_metrics_listen(s: &str) -> Result<MetricsListen, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(MetricsListen(None));
    }
    parse_listen(s)
        .map(|addr| MetricsListen(Some(addr)))
        .map_err(|e| format!("{e}, or off"))
}

/// Parses an address to listen on: `127.0.0.1:8080`, `[::1]:8080`, or a host name and a port
/// (`localhost:8080`), resolved now; of a name's addresses, the first IPv4 one if it has one
/// (`localhost` is `127.0.0.1` then, whatever order the resolver gives).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let s = s.trim();
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let shape = || format!("{s:?} is not an address like 127.0.0.1:8080 or localhost:8080");
    if !s
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    {
        return Err(shape());
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", shape()))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(shape)
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

/// The JWT secret.
#[derive(Args, Clone)]
pub struct SecretArgs {
    /// Shared HS256 secret for bearer tokens (at least 32 bytes). Required with DATABASE_URL;
    /// with the embedded store, a random one is kept in the data directory when none is given.
    #[arg(
        long = "jwt-secret",
        env = "RECOVERY_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
}

/// The file in the data directory that keeps the embedded mode's generated secret.
pub const SECRET_FILE: &str = "jwt-secret";

/// What [`SecretArgs::resolve`] does when the embedded store's secret file does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingSecret {
    /// Generate one: `serve`, the zero-setup start.
    Generate,
    /// Refuse: `token` run in the wrong directory would otherwise make a secret of its own and
    /// sign tokens that no server accepts.
    Refuse,
}

impl SecretArgs {
    /// The secret to sign and check tokens with, checked for length.
    pub fn resolve(&self, store: &StoreConfig, missing: MissingSecret) -> anyhow::Result<Vec<u8>> {
        match (&self.jwt_secret, store) {
            (Some(s), _) => {
                anyhow::ensure!(
                    s.len() >= MIN_SECRET_BYTES,
                    "RECOVERY_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long (got {})",
                    s.len()
                );
                Ok(s.clone().into_bytes())
            }
            (None, StoreConfig::Embedded { data_dir }) => match load_secret(data_dir)? {
                Some(secret) => Ok(secret),
                None if missing == MissingSecret::Generate => create_secret(data_dir),
                None => anyhow::bail!(
                    "no token secret at {}: `serve` generates it in its data directory; pass that \
                     directory with --data-dir (or set RECOVERY_JWT_SECRET)",
                    data_dir.join(SECRET_FILE).display()
                ),
            },
            (None, StoreConfig::Postgres { .. }) => {
                anyhow::bail!("RECOVERY_JWT_SECRET (or --jwt-secret) is required with DATABASE_URL")
            }
        }
    }
}

/// The secret kept in `data_dir`, checked for length; `None` when there is no such file. Any
/// other failure to read it (a directory in its place, no permission) names the file.
fn load_secret(data_dir: &std::path::Path) -> anyhow::Result<Option<Vec<u8>>> {
    use std::io::ErrorKind;
    let path = data_dir.join(SECRET_FILE);
    let secret = match std::fs::read(&path) {
        Ok(existing) => existing.trim_ascii().to_vec(),
        // Not a directory: a part of the data directory's path is a file; creating the
        // directory says so.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(None);
        }
        Err(e) => anyhow::bail!("cannot read the token secret {}: {e}", path.display()),
    };
    anyhow::ensure!(
        secret.len() >= MIN_SECRET_BYTES,
        "the token secret in {} must be at least {MIN_SECRET_BYTES} bytes long (got {})",
        path.display(),
        secret.len()
    );
    Ok(Some(secret))
}

/// Generates a secret and keeps it in `data_dir`, readable by its owner only.
fn create_secret(data_dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let path = data_dir.join(SECRET_FILE);
    crate::store::sqlite::create_data_dir(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    // Three random UUIDs: 366 random bits from the operating system's generator.
    let secret: String = (0..3)
        .map(|_| Uuid::new_v4().simple().to_string())
        .collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())?;
    Ok(secret.into_bytes())
}

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
    #[arg(long = "role", required = true)]
    pub roles: Vec<Role>,
    /// Lifetime: seconds, or a number with s, m, h or d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    #[command(flatten)]
    pub secret: SecretArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Parses `90`, `90s`, `15m`, `1h`, `7d`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 1h or 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("unknown unit {unit:?}; use s, m, h or d")),
    };
    if secs == 0 {
        return Err("the lifetime must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

/// A URL without its password (or token), or a list of them separated by commas (a NATS
/// cluster's servers), each without.
pub fn redact_url(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            // `user:password`; a NATS URL's lone user is a token, all secret.
            let nats = ["nats", "tls", "ws", "wss"].contains(&&url[..scheme]);
            let shown = match creds.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None if nats => "***".to_owned(),
                None => creds.to_owned(),
            };
            format!("{}{shown}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl fmt::Debug for StoreArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreArgs")
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("data_dir", &self.data_dir)
            .field("db_pool_size", &self.db_pool_size)
            .finish()
    }
}

impl fmt::Debug for SecretArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretArgs { jwt_secret: *** }")
    }
}

impl fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeArgs")
            .field("store", &self.store)
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "***"))
            .field("secret", &self.secret)
            .field("nats_url", &self.nats_url.as_deref().map(redact_url))
            .field("nats_ca", &self.nats_ca)
            .field("freshness_timeout_ms", &self.freshness_timeout_ms)
            .field("max_tenant_domains", &self.max_tenant_domains)
            .field("plain_positions", &self.plain_positions)
            .field("no_projections", &self.no_projections)
            .field("publish", &self.publish)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_take_units_and_refuse_nonsense() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_ttl("0").is_err() && parse_ttl("1w").is_err() && parse_ttl("h").is_err());
    }

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("nats://u:secret@n1:4222,nats://u:secret@n2:4222,nats://n3"),
            "nats://u:***@n1:4222,nats://u:***@n2:4222,nats://n3"
        );
        assert_eq!(redact_url("nats://s3cr3t@n1:4222"), "nats://***@n1:4222");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        let args = SecretArgs {
            jwt_secret: Some("s3cr3t".into()),
        };
        assert!(!format!("{args:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_listen_address_may_name_its_host() {
        assert_eq!(
            parse_listen("localhost:8081").unwrap(),
            "127.0.0.1:8081".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:8081").unwrap(),
            "[::1]:8081".parse().unwrap()
        );
        assert_eq!(
            parse_listen(" 0.0.0.0:80 ").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        for bad in [
            "localhost",
            "8081",
            ":8081",
            "localhost:99999",
            "no such host.invalid:80",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
        let metrics = parse_metrics_listen("localhost:9464").unwrap();
        assert_eq!(metrics.0, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn the_metrics_listener_is_on_loopback_unless_moved_or_off() {
        let serve = |args: &[&str]| match Cli::try_parse_from(
            ["recovery-info", "serve"].iter().chain(args),
        ) {
            Ok(Cli {
                command: Command::Serve(serve),
                ..
            }) => serve,
            other => panic!("{args:?}: {other:?}"),
        };
        // Unless the environment of the test run says otherwise.
        if std::env::var_os("RECOVERY_METRICS_LISTEN").is_none() {
            let default = serve(&[]).metrics_listen.0.unwrap();
            assert!(default.ip().is_loopback() && default.port() == 9464);
        }
        let moved = serve(&["--metrics-listen", "10.0.0.5:9100"]).metrics_listen;
        assert_eq!(moved.0, Some("10.0.0.5:9100".parse().unwrap()));
        assert_eq!(serve(&["--metrics-listen", "off"]).metrics_listen.0, None);
        assert!(parse_metrics_listen("on").is_err() && parse_metrics_listen("9464").is_err());
    }

    #[test]
    fn the_metrics_token_never_reaches_the_logs() {
        let token = "metrics-token-metrics-token-0123456789";
        let Ok(Cli {
            command: Command::Serve(serve),
            ..
        }) = Cli::try_parse_from(["recovery-info", "serve", "--metrics-token", token])
        else {
            panic!("serve --metrics-token does not parse");
        };
        assert!(serve.metrics_token().unwrap().is_some());
        assert!(!format!("{serve:?}").contains(token));
    }
}
