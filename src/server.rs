//! Startup: bind the listener, connect and migrate the store, start the projections, serve the
//! API.

use crate::app::App;
use crate::http::{self, HttpState, auth::JwtKeys};
use crate::projections::runner::{Projections, RunnerConfig};
use crate::publish::{Live, PublisherConfig};
use crate::store::{Store, StoreConfig};
use anyhow::Context;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Everything `serve` needs, already validated.
#[derive(Clone)]
pub struct ServerConfig {
    pub store: StoreConfig,
    pub listen: SocketAddr,
    pub jwt_secret: Vec<u8>,
    pub freshness_timeout: Duration,
    pub runner: RunnerConfig,
    /// Whether this process runs the projections (an API-only replica does not).
    pub run_projections: bool,
    /// NATS JetStream publishing and the eligibility service (none: SSE only).
    pub publisher: Option<PublisherConfig>,
}

/// A running service.
pub struct Server {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    pub app: App,
    shutdown: Option<oneshot::Sender<()>>,
    http: JoinHandle<std::io::Result<()>>,
    projection_tasks: Vec<JoinHandle<()>>,
    live: Live,
}

/// Connects, migrates, starts the projections and serves the API.
pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
    // Refuse a configuration that cannot work before anything is started.
    crate::publish::check_store(config.publisher.as_ref(), &config.store)?;
    // Bound before anything starts that a failure would have to tear down: a port in use is
    // refused with its one line, not with projection batches cancelled by the exit as well.
    // Connections that arrive while the store migrates wait in the backlog.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // The recorder first: what the projections and the publisher record before the listener
    // serves (the publisher's leadership, say) would otherwise go to no recorder and be lost.
    let metrics = crate::telemetry::metrics_handle();
    let store = Store::open(&config.store)
        .await
        .with_context(|| format!("cannot open the store ({})", config.store.describe()))?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    let (projections, projection_tasks) = if config.run_projections {
        Projections::spawn(store.clone(), config.runner)
    } else {
        (Projections::external(store.clone()), Vec::new())
    };
    let app = App::new(store, projections, config.freshness_timeout);
    let live = match Live::start(&app, &config.store, config.publisher.as_ref()).await {
        Ok(live) => live,
        Err(e) => {
            for t in &projection_tasks {
                t.abort();
            }
            return Err(e).context("cannot start live publishing");
        }
    };
    let state = HttpState::new(
        app.clone(),
        JwtKeys::new(&config.jwt_secret),
        metrics,
        live.log.clone(),
        live.stream_shutdown(),
    );
    let (tx, rx) = oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        let service = http::service(state);
        axum::serve(listener, tower::make::Shared::new(service))
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    tracing::info!(%addr, "listening");
    Ok(Server {
        addr,
        app,
        shutdown: Some(tx),
        http,
        projection_tasks,
        live,
    })
}

impl Server {
    /// Stops accepting requests, lets the ones in flight finish, and stops the projections
    /// (a batch in flight rolls back and is redone by the next start).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.live.stop();
        let result = (&mut self.http).await;
        for t in &self.projection_tasks {
            t.abort();
        }
        result??;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.http.abort();
        self.live.stop();
        for t in &self.projection_tasks {
            t.abort();
        }
    }
}
