//! Spawns the app on port 0 against a fresh database, and speaks its API.

#![allow(dead_code)]

pub mod mail;
pub mod nats;
pub mod oidc;
pub mod postgres;
pub mod tls;

#[allow(unused_imports)]
pub use tls::certificates;

use recovery_info::http::auth::{JwtKeys, Role};
use recovery_info::http::metrics::MetricsToken;
use recovery_info::projections::runner::RunnerConfig;
use recovery_info::publish::PublisherConfig;
use recovery_info::server::{self, Server, ServerConfig};
use recovery_info::store::keys::KekSource;
use recovery_info::store::{EventLog, ProjectionStorage};
use recovery_info::store::{Store, StoreConfig};
use reqwest::{Method, Response};
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// The PostgreSQL server the tests use, without a database name.
pub fn pg_url() -> String {
    std::env::var("TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A plain connection to PostgreSQL at `url`, for a test's SQL behind the service's back.
pub async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL must run for the tests: use scripts/test");
    tokio::spawn(conn);
    client
}

/// A port nothing listens on now, for a server a test starts itself.
/// A field of a process's `/proc/{pid}/status` (`VmHWM`, `THP_enabled`, ...), trimmed; `None`
/// when the process or the field is not there.
pub fn proc_status(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Creates an empty database and returns its URL. Its name carries this process's id, so that
/// the first call of a later run drops what an earlier run left behind (`cargo test` run
/// directly has no `scripts/test` to drop them afterwards).
pub async fn fresh_database() -> String {
    let pid = std::process::id();
    let name = format!("ri_test_{pid}_{}", Uuid::new_v4().simple());
    let client = pg_client(&format!("{}/postgres", pg_url())).await;
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT.get_or_init(|| drop_left_behind(&client)).await;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    format!("{}/{name}", pg_url())
}

/// Drops the test databases of test processes that are gone, when PostgreSQL runs on this
/// machine (elsewhere a process id says nothing). A database still in use is left alone.
async fn drop_left_behind(client: &tokio_postgres::Client) {
    let url = pg_url();
    if !(url.contains("@127.0.0.1") || url.contains("@localhost")) {
        return;
    }
    let Ok(rows) = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'ri\\_test\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let owner = name
            .strip_prefix("ri_test_")
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        let gone = owner.is_some_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        if gone {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
                .await;
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub tenant: Uuid,
    pub store_config: StoreConfig,
    pub data_dir: DataDirGuard,
    pub client: reqwest::Client,
    pub keys: JwtKeys,
    pub server: Server,
}

/// The store a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Embedded,
}

#[derive(Clone)]
pub struct Options {
    pub run_projections: bool,
    pub freshness_timeout: Duration,
    pub publisher: Option<PublisherConfig>,
    /// Global positions as numbers (the suite's assertions are written against them); the
    /// sealed tokens the service shows by default are tested in `positions.rs`.
    pub plain_positions: bool,
    /// The metrics listener's address: by default a free port on loopback.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub metrics_token: Option<MetricsToken>,
    /// OpenID issuers whose tokens the app accepts (beside the suite's HS256 secret).
    pub oidc: Option<recovery_info::http::auth::oidc::OidcConfig>,
    pub step_up: recovery_info::http::auth::StepUp,
    /// Whether the suite's own HS256 tokens ([`SECRET`]) are accepted.
    pub own_tokens: bool,
    /// When the service signs checkpoints, with what key.
    pub checkpoints: recovery_info::audit::checkpoints::CheckpointConfig,
    /// The notices to the old contact (default: on, no channel).
    pub notifier: Option<recovery_info::notify::NotifierConfig>,
    /// The console's development sign-in.
    pub dev_sign_in: bool,
    /// The console's OpenID client id (with `oidc`).
    pub console_client_id: Option<String>,
    /// Rates and caps (default: none).
    pub limits: recovery_info::http::limits::LimitsConfig,
    /// HSTS and CORS (default: neither).
    pub edge: recovery_info::http::Edge,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            run_projections: true,
            freshness_timeout: Duration::from_secs(5),
            publisher: None,
            plain_positions: true,
            metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
            metrics_token: None,
            oidc: None,
            step_up: Default::default(),
            own_tokens: true,
            checkpoints: Default::default(),
            notifier: Some(Default::default()),
            dev_sign_in: false,
            console_client_id: None,
            limits: Default::default(),
            edge: Default::default(),
        }
    }
}

/// A fresh, empty store of `backend`: a new database, or a new data directory.
pub async fn fresh_store(backend: Backend) -> StoreConfig {
    match backend {
        Backend::Postgres => StoreConfig::Postgres {
            url: fresh_database().await,
            pool_size: 16,
            kek: KekSource::Generated,
        },
        Backend::Embedded => StoreConfig::Embedded {
            data_dir: std::env::temp_dir().join(format!("ri_test_{}", Uuid::new_v4().simple())),
            kek: KekSource::Generated,
        },
    }
}

/// The app on a fresh store of `backend`.
pub async fn spawn_backend(backend: Backend) -> TestApp {
    spawn_store(fresh_store(backend).await, Options::default()).await
}

/// Runs each listed `async fn name(backend: Backend)` as a test on both backends: the
/// conformance suite.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name($crate::support::Backend::Postgres).await })*
        }
        mod embedded {
            $(#[tokio::test] async fn $name() { super::$name($crate::support::Backend::Embedded).await })*
        }
    };
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let database_url = fresh_database().await;
    spawn_on(database_url, options).await
}

/// Two replicas of the service on one fresh PostgreSQL database, acting for the same tenant.
pub async fn two_replicas() -> (TestApp, TestApp) {
    two_replicas_with(Options::default()).await
}

/// [`two_replicas`], both started with `options`.
pub async fn two_replicas_with(options: Options) -> (TestApp, TestApp) {
    let database_url = fresh_database().await;
    let a = spawn_on(database_url.clone(), options.clone()).await;
    let mut b = spawn_on(database_url, options).await;
    b.tenant = a.tenant;
    (a, b)
}

/// Starts the app on an existing PostgreSQL database.
pub async fn spawn_on(database_url: String, options: Options) -> TestApp {
    let store = StoreConfig::Postgres {
        url: database_url,
        pool_size: 16,
        kek: KekSource::Generated,
    };
    spawn_store(store, options).await
}

/// Starts the app on a store.
pub async fn spawn_store(store: StoreConfig, options: Options) -> TestApp {
    let server = server::start(ServerConfig {
        store: store.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: options.metrics_listen,
        metrics_token: options.metrics_token,
        jwt_secret: options.own_tokens.then(|| SECRET.as_bytes().to_vec()),
        oidc: options.oidc,
        step_up: options.step_up,
        freshness_timeout: options.freshness_timeout,
        settings_limits: Default::default(),
        plain_positions: options.plain_positions,
        runner: RunnerConfig::default(),
        run_projections: options.run_projections,
        publisher: options.publisher,
        checkpoints: options.checkpoints,
        notifier: options.notifier,
        dev_sign_in: options.dev_sign_in,
        console_client_id: options.console_client_id,
        limits: options.limits,
        edge: options.edge,
    })
    .await
    .expect("start the service");
    TestApp {
        base: format!("http://{}", server.addr),
        tenant: Uuid::now_v7(),
        data_dir: DataDirGuard(match &store {
            StoreConfig::Embedded { data_dir, .. } => Some(data_dir.clone()),
            StoreConfig::Postgres { .. } => None,
        }),
        store_config: store,
        client: reqwest::Client::new(),
        keys: JwtKeys::new(SECRET.as_bytes()),
        server,
    }
}

/// Removes an embedded test store's directory when the test ends.
pub struct DataDirGuard(Option<std::path::PathBuf>);

impl Drop for DataDirGuard {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl DataDirGuard {
    /// Removes the embedded store's data directory of `config` when dropped.
    pub fn of(config: &StoreConfig) -> Self {
        match config {
            StoreConfig::Embedded { data_dir, .. } => DataDirGuard(Some(data_dir.clone())),
            StoreConfig::Postgres { .. } => DataDirGuard(None),
        }
    }
}

impl TestApp {
    /// Leaves the embedded store's data directory in place when the app drops (for a next
    /// app on the same store).
    pub fn keep_data(&mut self) {
        self.data_dir.0.take();
    }

    /// The PostgreSQL URL of this app's database (PostgreSQL apps only).
    pub fn database_url(&self) -> String {
        match &self.store_config {
            StoreConfig::Postgres { url, .. } => url.clone(),
            StoreConfig::Embedded { .. } => panic!("not a PostgreSQL app"),
        }
    }

    /// Waits until every projection's checkpoint (in the store) reaches the log's head.
    pub async fn caught_up(&self) {
        let head = self.store().head().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for p in recovery_info::store::projections::Projection::ALL {
            while self.store().checkpoint(p).await.unwrap() < head {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{p:?} did not catch up"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    pub fn store(&self) -> &Store {
        &self.server.app.store
    }

    /// A token of this app's tenant.
    pub fn token(&self, subject: &str, roles: &[Role]) -> String {
        self.token_for(self.tenant, subject, roles)
    }

    pub fn token_for(&self, tenant: Uuid, subject: &str, roles: &[Role]) -> String {
        self.keys.mint(tenant, subject, roles, 600).unwrap()
    }

    /// A token of an authentication admin of this tenant.
    pub fn admin_token(&self) -> String {
        self.token("helpdesk-1", &[Role::AuthenticationAdmin])
    }

    /// A token with every role (for reading what a test wrote).
    pub fn all_roles(&self) -> String {
        self.token(
            "root",
            &[
                Role::AuthenticationAdmin,
                Role::Auditor,
                Role::ResetService,
                Role::Dashboard,
            ],
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/v1/tenants/{}{}", self.base, self.tenant, path)
    }

    pub fn admin_path(&self, admin: Uuid, rest: &str) -> String {
        self.url(&format!("/admins/{admin}{rest}"))
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        token: &str,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.client.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request")
    }

    pub async fn add(&self, admin: Uuid, kind: &str, value: &str) -> Response {
        self.send(
            Method::POST,
            &self.admin_path(admin, "/methods"),
            &self.admin_token(),
            Some(serde_json::json!({"kind": kind, "value": value})),
        )
        .await
    }

    /// Adds a method and returns its id; panics on failure.
    pub async fn add_ok(&self, admin: Uuid, kind: &str, value: &str) -> String {
        let r = self.add(admin, kind, value).await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "{body}");
        body["method"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn change(&self, admin: Uuid, method: &str, value: &str) -> Response {
        self.send(
            Method::PATCH,
            &self.admin_path(admin, &format!("/methods/{method}")),
            &self.admin_token(),
            Some(serde_json::json!({"value": value})),
        )
        .await
    }

    pub async fn remove(&self, admin: Uuid, method: &str) -> Response {
        self.send(
            Method::DELETE,
            &self.admin_path(admin, &format!("/methods/{method}")),
            &self.admin_token(),
            None,
        )
        .await
    }

    pub async fn get_json(&self, url: &str) -> Value {
        let r = self.send(Method::GET, url, &self.all_roles(), None).await;
        assert_eq!(r.status(), 200, "GET {url}");
        r.json().await.unwrap()
    }

    /// The contact view, at least as fresh as the log's head.
    pub async fn view(&self, admin: Uuid) -> Value {
        let head = self.store().head().await.unwrap();
        self.get_json(&self.admin_path(admin, &format!("/methods?min_position={head}")))
            .await
    }

    /// A `GET` of one of the service's own paths (`/healthz`, `/readyz`, …) on the API's
    /// listener, without a token.
    pub async fn get_service(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// A `GET` of `path` on the metrics listener.
    pub async fn get_metrics_listener(&self, path: &str) -> Response {
        let addr = self.server.metrics_addr.expect("a metrics listener");
        self.client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap()
    }

    /// The text of `/metrics`, from the metrics listener.
    pub async fn metrics(&self) -> String {
        let r = self.get_metrics_listener("/metrics").await;
        assert_eq!(r.status(), 200, "/metrics on the metrics listener");
        r.text().await.unwrap()
    }

    /// Eligibility at least as fresh as the log's head.
    pub async fn eligibility(&self, admin: Uuid) -> Value {
        let head = self.store().head().await.unwrap();
        self.get_json(&self.admin_path(admin, &format!("/reset-eligibility?min_position={head}")))
            .await
    }

    pub async fn history(&self, admin: Uuid) -> Vec<Value> {
        self.get_json(&self.admin_path(admin, "/history")).await["events"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Puts settings and checks they were accepted.
    pub async fn put_settings_ok(&self, body: Value) {
        let r = self.put_settings(body).await;
        assert_eq!(r.status(), 200);
    }

    pub async fn put_settings(&self, body: Value) -> Response {
        self.send(
            Method::PUT,
            &self.url("/settings"),
            &self.admin_token(),
            Some(body),
        )
        .await
    }
}

/// The string `field` of each entry of the array `list` of `value`, in order.
pub fn each<'a>(value: &'a Value, list: &str, field: &str) -> Vec<&'a str> {
    value[list]
        .as_array()
        .unwrap_or_else(|| panic!("no array {list:?} in {value}"))
        .iter()
        .map(|entry| entry[field].as_str().unwrap())
        .collect()
}

/// The id of the method of `kind` in a contact view.
pub fn method_id(view: &Value, kind: &str) -> String {
    view["methods"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["kind"] == kind))
        .and_then(|m| m["id"].as_str())
        .unwrap_or_else(|| panic!("no {kind} in {view}"))
        .to_owned()
}

/// Reads a problem+json answer, checking its content type, status and code.
pub async fn assert_problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status, "expected {status} {code}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(ct, "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// Runs `command`, which must succeed; its output is in the failure's message.
pub fn succeeds(command: &mut std::process::Command) -> std::process::Output {
    let what = format!("{command:?}");
    let out = command.output().unwrap_or_else(|e| {
        panic!("cannot run {what}: {e} (scripts/test installs what the tests run)")
    });
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Reads an SSE response until `n` events arrived; returns their `id:` and data.
pub async fn read_sse(
    r: &mut reqwest::Response,
    n: usize,
    timeout: Duration,
) -> Vec<(String, Value)> {
    read_sse_named(r, n, timeout)
        .await
        .into_iter()
        .map(|(_, id, data)| (id, data))
        .collect()
}

/// The next `n` events of an SSE response as (`event:` name, `id:` or `""` when the message has
/// none, `data:` JSON).
pub async fn read_sse_named(
    r: &mut reqwest::Response,
    n: usize,
    timeout: Duration,
) -> Vec<(String, String, Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while events.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let chunk = tokio::time::timeout(left, r.chunk())
            .await
            .expect("SSE events in time")
            .unwrap()
            .expect("stream open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
            };
            let data = field("data:").and_then(|d| serde_json::from_str(d).ok());
            if let Some(data) = data {
                let name = field("event:").unwrap_or("message").to_owned();
                events.push((name, field("id:").unwrap_or("").to_owned(), data));
            }
        }
    }
    events
}

/// The binary with the store of `config` in its environment.
pub fn bin(config: &StoreConfig, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_recovery-info"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("RECOVERY_DATA_DIR")
        .env("RUST_LOG", "warn");
    let kek = match config {
        StoreConfig::Postgres { url, kek, .. } => {
            cmd.env("DATABASE_URL", url);
            kek
        }
        StoreConfig::Embedded { data_dir, kek } => {
            cmd.env("RECOVERY_DATA_DIR", data_dir);
            kek
        }
    };
    cmd.env_remove("RECOVERY_KEK")
        .env_remove("RECOVERY_KEK_FILE");
    match kek {
        KekSource::Generated => {}
        KekSource::File(path) => {
            cmd.env("RECOVERY_KEK_FILE", path);
        }
        KekSource::Value(text) => {
            cmd.env("RECOVERY_KEK", text);
        }
    }
    cmd
}

/// Runs the binary with the store of `config`.
pub fn run(config: &StoreConfig, args: &[&str]) -> std::process::Output {
    bin(config, args).output().expect("run the binary")
}

/// Runs SQL statements on the store of `config`, outside the service (on the embedded store,
/// through a connection of this process: callers do not read its files otherwise).
pub async fn execute_sql(config: &StoreConfig, statements: &[&str]) {
    match config {
        StoreConfig::Postgres { url, .. } => {
            let db = pg_client(url).await;
            for s in statements {
                db.batch_execute(s).await.unwrap();
            }
        }
        StoreConfig::Embedded { data_dir, .. } => {
            let c =
                rusqlite::Connection::open(data_dir.join(recovery_info::store::sqlite::DB_FILE))
                    .unwrap();
            c.busy_timeout(Duration::from_secs(5)).unwrap();
            for s in statements {
                c.execute_batch(s).unwrap();
            }
        }
    }
}
