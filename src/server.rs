//! Startup: connect and migrate the store, start the projections, bind and serve the API and
//! the metrics.

use crate::app::App;
use crate::audit::checkpoints::{self, CheckpointConfig, CheckpointPublisher};
use crate::audit::tree::{self, SignerSource};
use crate::domain::SettingsLimits;
use crate::http::auth::oidc::{Oidc, OidcConfig};
use crate::http::auth::{Authenticator, JwtKeys, StepUp};
use crate::http::metrics::MetricsToken;
use crate::http::{self, HttpState, error::ApiError, positions::Positions};
use crate::projections::runner::{Projections, RunnerConfig};
use crate::publish::{Live, PublisherConfig, rpc};
use crate::store::Maintenance;
use crate::store::{Store, StoreConfig};
use anyhow::Context;
use axum::extract::Request;
use axum::response::Response;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::Service;

/// Everything `serve` needs, already validated.
#[derive(Clone)]
pub struct ServerConfig {
    pub store: StoreConfig,
    pub listen: SocketAddr,
    /// The metrics listener's address (`/metrics`, `/healthz`, `/readyz`); none: no such
    /// listener.
    pub metrics_listen: Option<SocketAddr>,
    /// With it, `/metrics` on the API's listener too, for requests bearing it.
    pub metrics_token: Option<MetricsToken>,
    /// The service's own HS256 secret: its tokens are accepted (with an OpenID issuer, only
    /// when it is given).
    pub jwt_secret: Option<Vec<u8>>,
    /// The organisation's OpenID issuers, whose tokens are accepted.
    pub oidc: Option<OidcConfig>,
    /// What a write of security info needs of the sign-in.
    pub step_up: StepUp,
    pub freshness_timeout: Duration,
    /// Bounds on what a tenant's settings may hold.
    pub settings_limits: SettingsLimits,
    /// Show tenants the global log positions as numbers rather than sealed tokens.
    pub plain_positions: bool,
    pub runner: RunnerConfig,
    /// Whether this process runs the projections (an API-only replica does not).
    pub run_projections: bool,
    /// NATS JetStream publishing and the eligibility service (none: SSE only).
    pub publisher: Option<PublisherConfig>,
    /// The key that signs the log's checkpoints, and when (where projections run).
    pub checkpoints: CheckpointConfig,
    /// The console's development sign-in (only without an OpenID issuer, with the service's
    /// own secret).
    pub dev_sign_in: bool,
    /// The console's OpenID client id (a public client, PKCE; redirect URI: the service's
    /// origin and `/`); with an issuer, the console signs in there.
    pub console_client_id: Option<String>,
    /// Rates per token and source address, and the cap of streams per tenant.
    pub limits: crate::http::limits::LimitsConfig,
    /// HSTS and CORS.
    pub edge: crate::http::Edge,
    /// The notices to the old contact (where projections run; none: off).
    pub notifier: Option<crate::notify::NotifierConfig>,
}

/// A running service.
pub struct Server {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The metrics listener's address actually bound, when there is one.
    pub metrics_addr: Option<SocketAddr>,
    pub app: App,
    /// The verifier key of the checkpoints this server signs.
    pub audit_key: crate::audit::note::NoteVerifier,
    /// One for each listener.
    shutdown: Vec<oneshot::Sender<()>>,
    http: JoinHandle<std::io::Result<()>>,
    metrics_http: Option<JoinHandle<std::io::Result<()>>>,
    projection_tasks: Vec<JoinHandle<()>>,
    /// The OpenID issuers' key refresh, when there are issuers.
    key_refresh: Option<JoinHandle<()>>,
    live: Live,
}

/// Binds, connects, migrates, starts the projections and serves the API and the metrics.
pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
    no_transparent_huge_pages();
    // Refuse a configuration that cannot work before anything is started.
    crate::publish::check_store(config.publisher.as_ref(), &config.store)?;
    // Bound before anything starts that a failure would have to tear down: a port in use is
    // refused with its one line, not with projection batches cancelled by the exit as well.
    // Connections that arrive while the store migrates wait in the backlog.
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(TcpListener::bind(at).await.with_context(|| {
            format!("cannot listen for the metrics on {at} (--metrics-listen; off for none)")
        })?),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    // The recorder first: what the projections and the publisher record before the listener
    // serves (the publisher's leadership, say) would otherwise go to no recorder and be lost.
    let metrics = crate::telemetry::metrics_handle();
    // The issuers' keys before anything else starts: an issuer that cannot be read is an
    // error of the start, with nothing to tear down.
    let oidc = match config.oidc.clone() {
        Some(oidc) => Some(Oidc::start(oidc).await?),
        None => None,
    };
    anyhow::ensure!(
        oidc.is_some() || config.jwt_secret.is_some(),
        "no tokens could be verified: give an OpenID issuer (--oidc-issuer) or a secret \
         (RECOVERY_JWT_SECRET)"
    );
    let auth = Authenticator::new(
        config.jwt_secret.as_deref().map(JwtKeys::new),
        oidc.clone(),
        config.step_up.clone(),
    );
    let store = Store::open(&config.store)
        .await
        .with_context(|| format!("cannot open the store ({})", config.store.describe()))?;
    store
        .cache_for_serving()
        .await
        .context("cannot size the store's cache")?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    let (streams, events) = store
        .seal_legacy_values()
        .await
        .context("cannot seal the values of older events")?;
    if events > 0 {
        tracing::info!(
            streams,
            events,
            "sealed the values of events written before values were sealed; chains re-anchored"
        );
    }
    // A wrong or missing key-encryption key stops the start here, before any read.
    let keyring = store
        .keyring()
        .await
        .context("cannot load the key-encryption keys")?;
    if let (crate::store::StoreConfig::Postgres { kek, .. }, Some(id)) =
        (&config.store, keyring.database_kek())
        && matches!(kek, crate::store::keys::KekSource::Generated)
    {
        tracing::warn!(
            kek_id = id,
            "the key-encryption key is kept in the database beside the data keys it wraps; \
             give --kek-file (or RECOVERY_KEK) in production (docs/privacy.md)"
        );
    }
    if keyring.wrapper().ids().len() > 1 {
        tokio::spawn(rewrap_data_keys(store.clone()));
    }
    let (signer, signer_source) = tree::signer(
        &store,
        &config.store,
        config.checkpoints.key_file.as_deref(),
        &config.checkpoints.log_name,
    )
    .await
    .context("cannot load the key that signs checkpoints")?;
    if signer_source == SignerSource::Database {
        tracing::warn!(
            key = %signer.verifier(),
            "the key that signs checkpoints is kept in the database: whoever can write the \
             database could sign a rewritten log; give --signing-key-file in production \
             (docs/audit.md)"
        );
    }
    let positions = if config.plain_positions {
        Positions::Plain
    } else {
        let key = store
            .server_key(crate::http::positions::KEY_NAME)
            .await
            .context("cannot read the key that seals positions")?;
        Positions::Sealed(std::sync::Arc::new(key))
    };
    let (projections, projection_tasks) = if config.run_projections {
        Projections::spawn(store.clone(), config.runner)
    } else {
        (Projections::external(store.clone()), Vec::new())
    };
    let mut app = App::new(store, projections, config.freshness_timeout);
    app.settings_limits = config.settings_limits;
    let live = match Live::start(&app, &config.store, config.publisher.as_ref(), RPC_ERRORS).await {
        Ok(live) => live,
        Err(e) => {
            for t in &projection_tasks {
                t.abort();
            }
            return Err(e).context("cannot start live publishing");
        }
    };
    let key_refresh = oidc.as_ref().map(Oidc::spawn_refresh);
    let mut projection_tasks = projection_tasks;
    if let (true, Some(notifier)) = (config.run_projections, config.notifier.clone()) {
        projection_tasks.push(crate::notify::spawn(app.store.clone(), notifier));
    }
    if config.run_projections && config.checkpoints.enabled {
        let publisher = match (&live.nats, &config.publisher) {
            (Some(client), Some(p)) => Some(CheckpointPublisher {
                client: client.clone(),
                stream: format!("{}_CHECKPOINTS", p.stream_name),
                subject: format!("{}.audit.checkpoints", p.subject_prefix),
            }),
            _ => None,
        };
        projection_tasks.push(checkpoints::spawn(
            app.store.clone(),
            signer.clone(),
            config.checkpoints.clone(),
            publisher,
        ));
    }
    let state = HttpState::new(
        app.clone(),
        auth,
        metrics,
        config.metrics_token,
        live.log.clone(),
        live.stream_shutdown(),
        positions,
    )
    .with_audit_key(signer.verifier());
    let state = match (
        &config.jwt_secret,
        config.oidc.is_none() && config.dev_sign_in,
    ) {
        (Some(secret), true) => {
            tracing::warn!(
                "the console's development sign-in is on: anyone who reaches this port can \
                 mint a token (configure an OpenID issuer, or --no-dev-sign-in)"
            );
            state.with_dev_sign_in(JwtKeys::new(secret))
        }
        _ => state,
    };
    let state = state
        .with_limits(&config.limits)
        .with_edge(config.edge.clone());
    let state = match (&config.oidc, &config.console_client_id) {
        (Some(oidc), Some(client_id)) if !oidc.issuers.is_empty() => {
            state.with_console_oidc(crate::http::console::ConsoleOidc {
                issuer: oidc.issuers[0].clone(),
                client_id: client_id.clone(),
            })
        }
        _ => state,
    };
    // The rate buckets of keys gone quiet are dropped now and then: memory follows the
    // active tokens and addresses, not every one ever seen.
    let limits = state.limits.clone();
    projection_tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            limits.shrink();
        }
    }));
    let mut shutdown = Vec::new();
    let metrics_http = metrics_listener.map(|listener| {
        let service = http::metrics::service(state.clone());
        serve(listener, service, &mut shutdown)
    });
    let http = serve(listener, http::service(state), &mut shutdown);
    tracing::info!(%addr, metrics = ?metrics_addr, "listening");
    Ok(Server {
        addr,
        metrics_addr,
        app,
        audit_key: signer.verifier(),
        shutdown,
        http,
        metrics_http,
        projection_tasks,
        key_refresh,
        live,
    })
}

/// The HTTP API's reading of failures, for the NATS eligibility service: a reset flow handles
/// both transports alike.
const RPC_ERRORS: rpc::ErrorMapping = rpc::ErrorMapping {
    code_of: |e| ApiError::from(e).code,
    status_of: |code| http::error::problem(code).0.as_u16(),
};

/// Turns transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`, the whole
/// process and its mappings, whatever the machine's THP setting). mimalloc asks for huge pages
/// on its 1 GiB arena (`MADV_HUGEPAGE`), and the kernel's khugepaged then collapses any 2 MiB of
/// it that holds one page in use into a whole huge page, some minutes into a run, at its own
/// pace: the serving process's RSS stepped up by ≈ 15 MiB with no more memory in use
/// (docs/benchmarks.md, "Soak"). A kernel without the flag keeps its setting.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off");
    }
}

/// Serves `service` on `listener` until the sender it adds to `shutdown` fires (or goes), then
/// lets the requests in flight finish.
fn serve<S>(
    listener: TcpListener,
    service: S,
    shutdown: &mut Vec<oneshot::Sender<()>>,
) -> JoinHandle<std::io::Result<()>>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let (tx, rx) = oneshot::channel::<()>();
    shutdown.push(tx);
    tokio::spawn(async move {
        axum::serve(http::listener::ApiListener(listener), WithPeer(service))
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    })
}

/// Makes a connection's service: `service`, with the peer's address as `ConnectInfo` in every
/// request's extensions (the limits per source address read it).
#[derive(Clone)]
struct WithPeer<S>(S);

impl<'a, S: Clone> Service<axum::serve::IncomingStream<'a, http::listener::ApiListener>>
    for WithPeer<S>
{
    type Response =
        tower_http::add_extension::AddExtension<S, axum::extract::ConnectInfo<SocketAddr>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(
        &mut self,
        stream: axum::serve::IncomingStream<'a, http::listener::ApiListener>,
    ) -> Self::Future {
        let peer = axum::extract::ConnectInfo(*stream.remote_addr());
        std::future::ready(Ok(tower_http::add_extension::AddExtension::new(
            self.0.clone(),
            peer,
        )))
    }
}

impl Server {
    /// Stops accepting requests on both listeners, lets the ones in flight finish, and stops
    /// the projections (a batch in flight rolls back and is redone by the next start).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for tx in self.shutdown.drain(..) {
            let _ = tx.send(());
        }
        self.live.stop();
        let result = (&mut self.http).await;
        let metrics_result = match self.metrics_http.as_mut() {
            Some(metrics_http) => metrics_http.await,
            None => Ok(Ok(())),
        };
        for t in self.projection_tasks.iter().chain(&self.key_refresh) {
            t.abort();
        }
        result??;
        metrics_result??;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.http.abort();
        if let Some(metrics_http) = &self.metrics_http {
            metrics_http.abort();
        }
        self.live.stop();
        for t in self.projection_tasks.iter().chain(&self.key_refresh) {
            t.abort();
        }
    }
}

/// Moves the data keys wrapped by an older KEK to the active one, a batch at a time, until none
/// is left (KEK rotation: docs/privacy.md); a failed batch is retried after a pause.
async fn rewrap_data_keys(store: Store) {
    use crate::store::Maintenance;
    let mut total = 0u64;
    loop {
        match store.rewrap_data_keys(500).await {
            Ok(0) => {
                tracing::info!(
                    rewrapped = total,
                    "data keys: every one is wrapped by the active key-encryption key"
                );
                return;
            }
            Ok(n) => {
                total += n;
                tracing::info!(
                    rewrapped = total,
                    "data keys: rewrapping under the active key-encryption key"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "data keys: rewrap failed; retrying in 10 s");
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            }
        }
    }
}
