//! Settings resolved before a command starts, from plain values: the token secret (its
//! length, the embedded store's generated file), the data directory, the log format, defaults,
//! and URLs as they may be logged. The command line (`cli`) parses flags and environment into
//! these; this module imports nothing of the crate, so every layer may use it.

use std::path::Path;
use uuid::Uuid;

/// The shortest accepted `RECOVERY_JWT_SECRET`, in bytes (HS256 wants at least 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Connections in the PostgreSQL pool by default: the commands, the appender, the projection
/// runner and the publisher draw on it (16 made commands queue for a connection under load).
pub const DEFAULT_POOL_SIZE: usize = 32;

/// The file in the data directory that keeps the embedded mode's generated secret.
pub const SECRET_FILE: &str = "jwt-secret";

/// What [`jwt_secret`] does when the embedded store's secret file does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingSecret {
    /// Generate one: `serve`, the zero-setup start.
    Generate,
    /// Refuse: `token` run in the wrong directory would otherwise make a secret of its own and
    /// sign tokens that no server accepts.
    Refuse,
}

/// The secret to sign and check tokens with, checked for length: `explicit`
/// (`RECOVERY_JWT_SECRET`) when there is one; otherwise the one kept in `data_dir`, the embedded
/// store's data directory (`None`: the store is PostgreSQL, which keeps no secret).
pub fn jwt_secret(
    explicit: Option<&str>,
    data_dir: Option<&Path>,
    missing: MissingSecret,
) -> anyhow::Result<Vec<u8>> {
    match (explicit, data_dir) {
        (Some(s), _) => {
            anyhow::ensure!(
                s.len() >= MIN_SECRET_BYTES,
                "RECOVERY_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes long (got {})",
                s.len()
            );
            Ok(s.as_bytes().to_vec())
        }
        (None, Some(data_dir)) => match load_secret(data_dir)? {
            Some(secret) => Ok(secret),
            None if missing == MissingSecret::Generate => create_secret(data_dir),
            None => anyhow::bail!(
                "no token secret at {}: `serve` generates it in its data directory; pass that \
                 directory with --data-dir (or set RECOVERY_JWT_SECRET)",
                data_dir.join(SECRET_FILE).display()
            ),
        },
        (None, None) => {
            anyhow::bail!("RECOVERY_JWT_SECRET (or --jwt-secret) is required with DATABASE_URL")
        }
    }
}

/// The secret kept in `data_dir`, checked for length; `None` when there is no such file. Any
/// other failure to read it (a directory in its place, no permission) names the file.
fn load_secret(data_dir: &Path) -> anyhow::Result<Option<Vec<u8>>> {
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
fn create_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let path = data_dir.join(SECRET_FILE);
    create_data_dir(data_dir)
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

/// Creates the data directory, and its missing parents, readable by its owner only: it holds
/// personal data and the token secret. An existing directory is left as it is (the files in it
/// are the owner's only).
pub fn create_data_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
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

/// Writes a new file that only its owner may read (a key), refusing to replace one, and syncs
/// it to the disk.
pub fn write_secret_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
