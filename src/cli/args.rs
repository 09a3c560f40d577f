//! What several commands share: where the store is, the token secret, and the parsers of
//! durations, addresses and of the library's enums.

use crate::config::{self, DEFAULT_POOL_SIZE, LogFormat, MissingSecret, redact_url};
use crate::store::StoreConfig;
use crate::store::keys::KekSource;
use clap::Args;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// File of the key-encryption keys that wrap the admins' data keys (`<id> <base64 of 32
    /// bytes>` per line, the last one active; docs/privacy.md). Without it (or RECOVERY_KEK),
    /// the embedded store keeps a generated one in --data-dir and PostgreSQL in the database.
    #[arg(long, env = "RECOVERY_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// The key-encryption keys themselves, as in a --kek-file (`;` between entries).
    #[arg(
        long = "kek",
        env = "RECOVERY_KEK",
        hide_env_values = true,
        conflicts_with = "kek_file"
    )]
    pub kek: Option<String>,
}

/// The key that signs the log's checkpoints (docs/audit.md "Checkpoints").
#[derive(Args, Clone, Debug)]
pub struct SigningArgs {
    /// File of the Ed25519 key that signs checkpoints (`PRIVATE+KEY+<name>+<hash>+<base64>`,
    /// as `audit keygen` writes it). Without it the embedded store keeps a generated one in
    /// --data-dir, and PostgreSQL one in the database (development only: whoever can write
    /// the database could then sign as the log).
    #[arg(long, env = "RECOVERY_AUDIT_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// The log's name (the checkpoints' origin line) for a key generated here, e.g.
    /// `recovery.example.com/log`.
    #[arg(long, env = "RECOVERY_AUDIT_LOG_NAME", default_value = "recovery-info")]
    pub log_name: String,
}

impl SigningArgs {
    /// The signer these arguments choose for `store`.
    pub async fn signer(
        &self,
        store: &crate::store::Store,
        config: &StoreConfig,
    ) -> anyhow::Result<(
        crate::audit::note::NoteSigner,
        crate::audit::tree::SignerSource,
    )> {
        crate::audit::tree::signer(
            store,
            config,
            self.signing_key_file.as_deref(),
            &self.log_name,
        )
        .await
    }
}

impl StoreArgs {
    /// The backend these arguments choose. The data directory is made absolute, so that what
    /// names it (the banner's token command, an error) means the same from any directory.
    pub fn store_config(&self) -> StoreConfig {
        let kek = match (&self.kek_file, &self.kek) {
            (Some(path), _) => KekSource::File(path.clone()),
            (None, Some(text)) => KekSource::Value(text.clone()),
            (None, None) => KekSource::Generated,
        };
        match &self.database_url {
            Some(url) => StoreConfig::Postgres {
                url: url.clone(),
                pool_size: self.db_pool_size,
                kek,
            },
            None => StoreConfig::Embedded {
                data_dir: std::path::absolute(&self.data_dir)
                    .unwrap_or_else(|_| self.data_dir.clone()),
                kek,
            },
        }
    }
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

impl SecretArgs {
    /// The secret to sign and check tokens with ([`config::jwt_secret`]: the flag, else the
    /// embedded store's file).
    pub fn resolve(&self, store: &StoreConfig, missing: MissingSecret) -> anyhow::Result<Vec<u8>> {
        let data_dir = match store {
            StoreConfig::Embedded { data_dir, .. } => Some(data_dir.as_path()),
            StoreConfig::Postgres { .. } => None,
        };
        config::jwt_secret(self.jwt_secret.as_deref(), data_dir, missing)
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
            .field("kek_file", &self.kek_file)
            .field("kek", &self.kek.as_ref().map(|_| "***"))
            .finish()
    }
}

impl fmt::Debug for SecretArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretArgs { jwt_secret: *** }")
    }
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

/// A value parser for an enum of the library, which knows nothing of the command line: each of
/// `values` by its `name`, with the help `--help` shows for it (clap's `ValueEnum` derive would
/// take it from the variant's doc comment).
pub fn one_of<T: Copy + Send + Sync + 'static>(
    values: &'static [(T, Option<&'static str>)],
    name: fn(T) -> &'static str,
) -> impl TypedValueParser<Value = T> {
    let choices = values
        .iter()
        .map(|&(value, help)| PossibleValue::new(name(value)).help(help));
    PossibleValuesParser::new(choices).map(move |chosen| {
        let found = values.iter().find(|&&(value, _)| name(value) == chosen);
        // The parser above accepts these names and no other.
        found.expect("a name of one of the values").0
    })
}

/// `--log-format`: `text` or `json`.
pub fn log_format() -> impl TypedValueParser<Value = LogFormat> {
    one_of(
        &[(LogFormat::Text, None), (LogFormat::Json, None)],
        |f| match f {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        },
    )
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
    fn the_jwt_secret_never_reaches_the_logs() {
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
}
