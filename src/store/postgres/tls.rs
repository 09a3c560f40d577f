//! TLS to PostgreSQL.
//!
//! `sslmode=require` in `DATABASE_URL` (or libpq's `verify-ca` / `verify-full`, taken as the
//! same) turns it on, and then the server's certificate is always verified — its chain against
//! the system's root certificates and the PEM file of `sslrootcert` (libpq's parameter, e.g.
//! a managed database's CA), and its name against the URL's host — so that TLS means the
//! server is the one named, not only that the bytes are encrypted. Without `sslmode`, or with
//! `disable` or `prefer`, the connection is plain: the service never falls back from TLS to
//! plain text, and never accepts a certificate it cannot verify.

use crate::config::redact_url;
use crate::store::StoreError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the service's connections to PostgreSQL are made.
#[derive(Clone)]
pub enum Tls {
    Plain,
    Verified(MakeRustlsConnect),
}

/// The connection settings of `url` and how to secure them.
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, Tls), StoreError> {
    let malformed = |e: &dyn std::fmt::Display| {
        StoreError::Config(format!(
            "DATABASE_URL is malformed ({}): {e}",
            redact_url(url)
        ))
    };
    let (url, ca_file) = take_ssl_parameters(url).map_err(|e| malformed(&e))?;
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| malformed(&e))?;
    if config.get_ssl_mode() != SslMode::Require {
        if ca_file.is_some() {
            return Err(StoreError::Config(
                "DATABASE_URL gives sslrootcert without sslmode=require (or verify-full)".into(),
            ));
        }
        config.ssl_mode(SslMode::Disable);
        return Ok((config, Tls::Plain));
    }
    let connector = MakeRustlsConnect::new(client_config(ca_file.as_deref())?);
    Ok((config, Tls::Verified(connector)))
}

/// `url` without `sslrootcert` (which tokio-postgres does not take) and with libpq's
/// `verify-ca` / `verify-full` as `require`; and the CA file it named.
fn take_ssl_parameters(url: &str) -> Result<(String, Option<String>), String> {
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        // The key=value form: passed on as it is.
        return Ok((url.to_owned(), None));
    }
    let mut parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let mut ca_file = None;
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(k, v)| match (k.as_ref(), v.as_ref()) {
            ("sslrootcert", _) => {
                ca_file = Some(v.into_owned());
                None
            }
            ("sslmode", "verify-ca" | "verify-full") => Some((k.into_owned(), "require".into())),
            _ => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    if pairs.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Ok((parsed.to_string(), ca_file))
}

/// The system's root certificates, read once per process. (A store parses its URL once, for
/// its pool and its dedicated connections alike, so `sslrootcert` is read when it connects: a
/// CA rotated on disk is taken at the next start.)
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<CertificateDer<'static>>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// Verifies servers against the system's roots and the certificates of `ca_file`.
fn client_config(ca_file: Option<&str>) -> Result<rustls::ClientConfig, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in system_roots() {
        // A system certificate rustls cannot use is skipped, as every TLS client does.
        let _ = roots.add(cert.clone());
    }
    if let Some(path) = ca_file {
        let unreadable =
            |e: &dyn std::fmt::Display| StoreError::Config(format!("sslrootcert {path}: {e}"));
        let mut found = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
            roots
                .add(cert.map_err(|e| unreadable(&e))?)
                .map_err(|e| unreadable(&e))?;
            found += 1;
        }
        if found == 0 {
            return Err(unreadable(&"no certificate in the file"));
        }
    }
    if roots.is_empty() {
        return Err(StoreError::Config(
            "sslmode=require, but there is no root certificate to verify the server with: \
             give its CA with sslrootcert=/path/to/ca.pem"
                .into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_ssl_parameters_are_taken_out_or_translated() {
        let (url, ca) = take_ssl_parameters(
            "postgres://u:p@db:5432/r?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:p@db:5432/r?sslmode=require&application_name=x"
        );
        assert_eq!(ca.as_deref(), Some("/etc/ca.pem"));
        let (url, ca) = take_ssl_parameters("postgres://db/r?sslrootcert=ca.pem").unwrap();
        assert_eq!(
            (url.as_str(), ca.as_deref()),
            ("postgres://db/r", Some("ca.pem"))
        );
        assert_eq!(
            take_ssl_parameters("host=db user=u").unwrap(),
            ("host=db user=u".to_owned(), None)
        );
    }

    #[test]
    fn tls_is_used_only_when_required_and_a_ca_file_needs_it() {
        let (config, tls) = parse("postgres://db/r").unwrap();
        assert!(matches!(tls, Tls::Plain));
        assert_eq!(
            config.get_ssl_mode(),
            SslMode::Disable,
            "prefer: no TLS attempt"
        );
        let (_, tls) = parse("postgres://db/r?sslmode=disable").unwrap();
        assert!(matches!(tls, Tls::Plain));
        assert!(parse("postgres://db/r?sslrootcert=/nonexistent").is_err());
        let Err(e) = parse("postgres://u:s3cr3t@db/r?sslmode=require&sslrootcert=/nonexistent")
        else {
            panic!("an unreadable CA file is refused");
        };
        assert!(e.to_string().contains("/nonexistent"), "{e}");
        let Err(e) = parse("postgres://u:s3cr3t@db/r?sslmode=bogus") else {
            panic!("an unknown sslmode is refused");
        };
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }
}
