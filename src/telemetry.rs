//! Logs (tracing, text or JSON) and the Prometheus recorder behind `/metrics`.

use crate::config::LogFormat;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

/// Installs the log subscriber; `RUST_LOG` overrides the default filter: `info`, but warnings
/// only from the NATS client (a NATS outage would otherwise fill the first seconds with its
/// reconnect lines; the relay logs one WARN when publishing stops and one INFO when it resumes).
pub fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours for a terminal only: a log file or a collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // `try_init` fails only if a subscriber is already installed (tests): keep that one.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// How often the recorder's histograms are drained without a scrape ([`metrics_handle`]).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How many times the upkeep has run in this process.
static UPKEEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The process-wide Prometheus recorder, installed on first use, with its upkeep.
///
/// A histogram keeps every sample recorded until the recorder drains it into its summary,
/// which a scrape does, and so does the upkeep. `build_recorder` starts no upkeep of its own:
/// without one, a service whose `/metrics` is not scraped (`--metrics-listen off`, or no
/// Prometheus yet) kept every request's and every append's sample, and its memory grew with
/// every command (the 30 min soak, docs/benchmarks.md). A thread drains them every
/// [`UPKEEP_EVERY`], whatever runtime the process runs.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; ours then just stays empty.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            let started = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                        UPKEEPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot start the metrics upkeep: histograms are drained by scrapes only");
            }
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn histograms_are_drained_without_a_scrape() {
        let _handle = metrics_handle();
        metrics::histogram!("recovery_test_upkeep_seconds").record(0.5);
        let before = UPKEEPS.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + UPKEEP_EVERY * 3;
        while UPKEEPS.load(Ordering::Relaxed) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "no upkeep ran in {:?}",
                UPKEEP_EVERY * 3
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
