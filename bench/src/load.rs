//! The HTTP load generator: keep-alive clients, many admins, a realistic mix of add / change /
//! remove commands, and eligibility queries. Each client owns its admins, so it knows which
//! methods exist and sends only commands the rules allow (a refusal is counted as an error).

use crate::stats::{Latencies, Rate, Rng};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use recovery_info::http::auth::{JwtKeys, Role};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The method kinds the load uses (the alternate phone's ordering rule is left out so that
/// every kind can be added and removed freely).
const KINDS: [&str; 3] = ["mobile_phone", "office_phone", "email"];

/// How long a request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One tenant of the load and its tokens (as `Authorization` values).
pub struct Tenant {
    pub id: Uuid,
    /// `authentication_admin`: manages every admin of the tenant.
    manage: HeaderValue,
    /// `reset_service`: reads eligibility.
    reset: HeaderValue,
}

/// The service under load.
pub struct Service {
    addr: SocketAddr,
    host: HeaderValue,
    pub tenants: Vec<Tenant>,
}

/// A load client: one keep-alive HTTP/1.1 connection, one request at a time (reopened when
/// it breaks). A bare hyper connection rather than a full client library: the load
/// generator shares the machine with the service, and what it spends per request is taken
/// from the service.
pub struct Client {
    addr: SocketAddr,
    host: HeaderValue,
    conn: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Client {
    /// Sends a request; the status and the body (status 0: no answer).
    async fn request(
        &self,
        method: Method,
        uri: Uri,
        token: &HeaderValue,
        body: Option<Bytes>,
    ) -> (u16, Bytes) {
        let mut conn = self.conn.lock().await;
        match tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.exchange(&mut conn, method, uri, token, body),
        )
        .await
        {
            Ok(Ok(answer)) => answer,
            _ => {
                // The connection may be broken or mid-answer: the next request opens another.
                *conn = None;
                (0, Bytes::new())
            }
        }
    }

    async fn exchange(
        &self,
        conn: &mut Option<SendRequest<Full<Bytes>>>,
        method: Method,
        uri: Uri,
        token: &HeaderValue,
        body: Option<Bytes>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let sender = match conn {
            Some(sender) if !sender.is_closed() => sender,
            _ => conn.insert(self.connect().await?),
        };
        sender.ready().await?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, token.clone());
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let response = sender
            .send_request(request.body(Full::new(body.unwrap_or_default()))?)
            .await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

impl Client {
    /// `GET path` with `token` (an `Authorization` value): the status and the body.
    pub async fn get(&self, path: &str, token: &HeaderValue) -> (u16, Bytes) {
        match path.parse::<Uri>() {
            Ok(uri) => self.request(Method::GET, uri, token, None).await,
            Err(_) => (0, Bytes::new()),
        }
    }
}

/// `Bearer <token>` as a header value.
pub fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
}

impl Service {
    pub fn new(addr: SocketAddr, keys: &JwtKeys, tenants: usize) -> anyhow::Result<Self> {
        let mut list = Vec::with_capacity(tenants);
        for _ in 0..tenants {
            let id = Uuid::new_v4();
            let mint = |role| {
                keys.mint(id, &format!("bench-{role:?}"), &[role], 24 * 3600)
                    .context("cannot mint a token")
            };
            list.push(Tenant {
                id,
                manage: bearer(&mint(Role::AuthenticationAdmin)?)?,
                reset: bearer(&mint(Role::ResetService)?)?,
            });
        }
        Ok(Service {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            tenants: list,
        })
    }

    /// A client with one keep-alive connection (opened by its first request).
    pub fn client(&self) -> Client {
        Client {
            addr: self.addr,
            host: self.host.clone(),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    fn admin_url(&self, admin: &AdminSim) -> String {
        format!(
            "/v1/tenants/{}/admins/{}",
            self.tenants[admin.tenant].id, admin.id
        )
    }

    async fn send(
        client: &Client,
        method: Method,
        url: String,
        token: &HeaderValue,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (Ok(uri), Ok(body)) = (
            url.parse::<Uri>(),
            body.map(|b| serde_json::to_vec(&b).map(Bytes::from))
                .transpose(),
        ) else {
            return (0, Value::Null);
        };
        let (status, body) = client.request(method, uri, token, body).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Sends the next command for `admin` and updates what the load knows of it. Returns the
    /// status and the answer's log position.
    pub async fn command(&self, client: &Client, admin: &mut AdminSim, rng: &mut Rng) -> Outcome {
        let url = self.admin_url(admin);
        let token = &self.tenants[admin.tenant].manage;
        let kind = admin.pick(rng);
        let (status, body) = match admin.methods[kind] {
            None => {
                let body = json!({"kind": KINDS[kind], "value": value_for(kind, rng)});
                Self::send(
                    client,
                    Method::POST,
                    format!("{url}/methods"),
                    token,
                    Some(body),
                )
                .await
            }
            Some(id) if rng.below(3) == 0 => {
                Self::send(
                    client,
                    Method::DELETE,
                    format!("{url}/methods/{id}"),
                    token,
                    None,
                )
                .await
            }
            Some(id) => {
                let body = json!({"value": value_for(kind, rng)});
                Self::send(
                    client,
                    Method::PATCH,
                    format!("{url}/methods/{id}"),
                    token,
                    Some(body),
                )
                .await
            }
        };
        let position = body.get("position").and_then(Value::as_u64);
        let code = body.get("code").and_then(Value::as_str).map(str::to_owned);
        match status {
            201 => admin.methods[kind] = method_id(&body),
            200 if body.get("method").is_none() => admin.methods[kind] = None,
            200 => {}
            _ => self.resync(client, admin).await,
        }
        Outcome {
            status,
            position,
            code,
        }
    }

    /// After a refused command, learns the admin's methods from the service.
    async fn resync(&self, client: &Client, admin: &mut AdminSim) {
        let url = format!("{}/methods", self.admin_url(admin));
        let token = &self.tenants[admin.tenant].manage;
        let (status, body) = Self::send(client, Method::GET, url, token, None).await;
        if status != 200 {
            return;
        }
        admin.methods = [None; 3];
        for m in body["methods"].as_array().into_iter().flatten() {
            if let Some(k) = KINDS.iter().position(|k| m["kind"] == *k) {
                admin.methods[k] = m["id"].as_str().and_then(|s| s.parse().ok());
            }
        }
    }

    /// The eligibility URL of `admin`, to parse once (the load generator's own URL parsing
    /// showed in the profile).
    pub fn eligibility_url(&self, admin: &AdminSim) -> anyhow::Result<Uri> {
        Ok(format!("{}/reset-eligibility", self.admin_url(admin)).parse()?)
    }

    /// One eligibility query; returns the status (the body is read, not parsed).
    pub async fn eligibility(&self, client: &Client, admin: &AdminSim, url: Uri) -> u16 {
        let token = &self.tenants[admin.tenant].reset;
        client.request(Method::GET, url, token, None).await.0
    }
}

fn method_id(body: &Value) -> Option<Uuid> {
    body["method"]["id"].as_str().and_then(|s| s.parse().ok())
}

/// A value typed as people type it: a Danish mobile, a Danish landline, or an address.
/// The numbers are drawn from ranges the Danish numbering plan assigns (`2` then any digit
/// then 1–9, and `3` then 0–3 then 1–9, in libphonenumber's metadata), so that the load
/// generator need not parse them itself: it shares the cores with the service, and a number
/// the service refused would show as an error.
fn value_for(kind: usize, rng: &mut Rng) -> String {
    if kind == 2 {
        return format!("bench.{}@example.org", rng.below(1_000_000_000_000));
    }
    let (lead, second) = if kind == 0 {
        ('2', rng.below(10))
    } else {
        ('3', rng.below(4))
    };
    let third = 1 + rng.below(9);
    let d = format!("{:05}", rng.below(100_000));
    format!(
        "+45 {lead}{second} {third}{} {} {}",
        &d[0..1],
        &d[1..3],
        &d[3..5]
    )
}

/// The result of one command.
pub struct Outcome {
    pub status: u16,
    pub position: Option<u64>,
    /// The problem's `code` when the command was refused.
    pub code: Option<String>,
}

impl Outcome {
    /// `"422 invalid_phone_number"`, for the error counts.
    pub fn label(&self) -> String {
        match &self.code {
            Some(code) => format!("{} {code}", self.status),
            None => self.status.to_string(),
        }
    }
}

impl Outcome {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// An admin of the load and the method ids it has (by index into `KINDS`).
#[derive(Clone)]
pub struct AdminSim {
    pub tenant: usize,
    pub id: Uuid,
    methods: [Option<Uuid>; 3],
}

impl AdminSim {
    pub fn new(tenant: usize) -> Self {
        AdminSim {
            tenant,
            id: Uuid::new_v4(),
            methods: [None; 3],
        }
    }

    /// The kind the next command is about: mostly the ones that exist (change or remove),
    /// an absent one about a third of the time (add).
    fn pick(&self, rng: &mut Rng) -> usize {
        let present: Vec<usize> = (0..3).filter(|&k| self.methods[k].is_some()).collect();
        let absent: Vec<usize> = (0..3).filter(|&k| self.methods[k].is_none()).collect();
        let add = present.is_empty() || (!absent.is_empty() && rng.below(3) == 0);
        let from = if add { &absent } else { &present };
        from[rng.below(from.len() as u64) as usize]
    }
}

/// When a phase's measuring starts (after the warm-up, from now) and when it ends.
fn window(warmup: Duration, duration: Duration) -> (Instant, Instant) {
    let measure_from = Instant::now() + warmup;
    (measure_from, measure_from + duration)
}

/// What a command phase produced.
pub struct CommandRun {
    pub rate: Rate,
    pub errors_by_status: BTreeMap<String, usize>,
    pub admins: Vec<AdminSim>,
}

/// Runs `clients` concurrent keep-alive clients sending commands for `duration` (after a
/// warm-up that is not counted), each over `admins_per_client` admins of its own.
pub async fn commands(
    service: &Arc<Service>,
    clients: usize,
    admins_per_client: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<CommandRun> {
    let (measure_from, deadline) = window(warmup, duration);
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let service = service.clone();
        let client = service.client();
        let mut admins: Vec<AdminSim> = (0..admins_per_client)
            .map(|i| AdminSim::new((c + i) % service.tenants.len()))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(c as u64 * 31 + 1);
            let mut lat = Latencies::with_capacity(8192);
            let mut errors = BTreeMap::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let admin = &mut admins[i % admins_per_client];
                i += 1;
                let t = Instant::now();
                let outcome = service.command(&client, admin, &mut rng).await;
                if t < measure_from {
                    continue;
                }
                if outcome.ok() {
                    lat.record(t.elapsed());
                } else {
                    *errors.entry(outcome.label()).or_insert(0) += 1;
                }
            }
            (lat, errors, admins)
        }));
    }
    let mut lat = Latencies::default();
    let mut errors_by_status = BTreeMap::new();
    let mut admins = Vec::new();
    for t in tasks {
        let (l, e, a) = t.await.context("a load client failed")?;
        lat.merge(l);
        for (status, n) in e {
            *errors_by_status.entry(status).or_insert(0) += n;
        }
        admins.extend(a);
    }
    let errors = errors_by_status.values().sum();
    let elapsed = Instant::now().saturating_duration_since(measure_from);
    Ok(CommandRun {
        rate: Rate::new(lat.len(), elapsed, lat, errors),
        errors_by_status,
        admins,
    })
}

/// Runs `clients` concurrent keep-alive clients asking for the eligibility of random admins.
pub async fn eligibility(
    service: &Arc<Service>,
    admins: &Arc<Vec<AdminSim>>,
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let (measure_from, deadline) = window(warmup, duration);
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let service = service.clone();
        let admins = admins.clone();
        let client = service.client();
        let urls = admins
            .iter()
            .map(|a| service.eligibility_url(a))
            .collect::<anyhow::Result<Vec<_>>>()?;
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(c as u64 * 17 + 3);
            let mut lat = Latencies::with_capacity(8192);
            let mut errors = 0;
            while Instant::now() < deadline {
                let i = rng.below(admins.len() as u64) as usize;
                let t = Instant::now();
                let status = service
                    .eligibility(&client, &admins[i], urls[i].clone())
                    .await;
                if t < measure_from {
                    continue;
                }
                if status == 200 {
                    lat.record(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Latencies::default();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.context("a load client failed")?;
        lat.merge(l);
        errors += e;
    }
    let elapsed = Instant::now().saturating_duration_since(measure_from);
    Ok(Rate::new(lat.len(), elapsed, lat, errors))
}

/// The reset flow right after a change: each of `clients` clients sends a command for one of
/// its admins, then asks for that admin's eligibility at least as fresh as the command
/// (`min_position` = the answer's position). Measures the eligibility queries only; a query
/// answered below the position (or not 200) is an error.
pub async fn read_your_writes(
    service: &Arc<Service>,
    clients: usize,
    admins_per_client: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let (measure_from, deadline) = window(warmup, duration);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let service = service.clone();
            tokio::spawn(async move {
                read_your_writes_client(&service, c, admins_per_client, measure_from, deadline)
                    .await
            })
        })
        .collect();
    let mut lat = Latencies::with_capacity(8192 * clients);
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await??;
        lat.merge(l);
        errors += e;
    }
    let elapsed = Instant::now().saturating_duration_since(measure_from);
    Ok(Rate::new(lat.len(), elapsed, lat, errors))
}

/// One client of [`read_your_writes`]: its latencies and its errors.
async fn read_your_writes_client(
    service: &Service,
    c: usize,
    admins_per_client: usize,
    measure_from: Instant,
    deadline: Instant,
) -> anyhow::Result<(Latencies, usize)> {
    let client = service.client();
    let mut admins: Vec<AdminSim> = (0..admins_per_client)
        .map(|i| AdminSim::new((c + i) % service.tenants.len()))
        .collect();
    let mut rng = Rng::new(7 + c as u64);
    let mut lat = Latencies::with_capacity(8192);
    let mut errors = 0;
    let mut i = 0;
    while Instant::now() < deadline {
        let admin = &mut admins[i % admins_per_client];
        i += 1;
        let outcome = service.command(&client, admin, &mut rng).await;
        let Some(position) = outcome.position.filter(|_| outcome.ok()) else {
            continue;
        };
        let url: Uri = format!(
            "{}/reset-eligibility?min_position={position}",
            service.admin_url(admin)
        )
        .parse()?;
        let token = &service.tenants[admin.tenant].reset;
        let t = Instant::now();
        let (status, body) = client.request(Method::GET, url, token, None).await;
        let elapsed = t.elapsed();
        if t < measure_from {
            continue;
        }
        let seen = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|b| b.get("position").and_then(Value::as_u64));
        if status == 200 && seen.is_some_and(|p| p >= position) {
            lat.record(elapsed);
        } else {
            errors += 1;
        }
    }
    Ok((lat, errors))
}
