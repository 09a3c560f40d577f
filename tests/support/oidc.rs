//! An OpenID issuer of a test's own on loopback: a real HTTP server serving a discovery
//! document and a JWKS, signing tokens with keys the test generates (openssl), which it can
//! rotate, and which can go down and come back on the same port.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// One signing key of the issuer.
struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
    /// The public key, PEM (for the HS256 confusion attack).
    public_pem: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    keys: Vec<Key>,
    /// Requests for the key set.
    jwks_fetches: usize,
    /// The claims of whoever signs in at `/authorize` (none: it refuses), and the audience.
    login: Option<(String, Value)>,
    /// Codes given out: code → (PKCE challenge, client id, redirect URI, `max_age` asked).
    codes: std::collections::HashMap<String, (String, String, String, Option<String>)>,
    /// The `/authorize` requests' query strings, in order.
    authorizations: Vec<String>,
}

type Shared = (String, Arc<Mutex<Inner>>);

/// `GET /authorize`: signs the configured user in at once (no page) and sends the browser
/// back with a code bound to the PKCE challenge.
async fn authorize(
    State((_, inner)): State<Shared>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut inner = inner.lock().unwrap();
    inner.authorizations.push(raw.unwrap_or_default());
    let (Some(challenge), Some("S256"), Some(redirect), Some(client)) = (
        q.get("code_challenge"),
        q.get("code_challenge_method").map(String::as_str),
        q.get("redirect_uri"),
        q.get("client_id"),
    ) else {
        return (axum::http::StatusCode::BAD_REQUEST, "PKCE S256 required").into_response();
    };
    let code = Uuid::new_v4().simple().to_string();
    inner.codes.insert(
        code.clone(),
        (
            challenge.clone(),
            client.clone(),
            redirect.clone(),
            q.get("max_age").cloned(),
        ),
    );
    let state = q.get("state").cloned().unwrap_or_default();
    axum::response::Redirect::to(&format!("{redirect}?code={code}&state={state}")).into_response()
}

/// `POST /token`: the code for a token, if the verifier matches the challenge.
async fn token(
    State((url, inner)): State<Shared>,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use base64::Engine;
    use sha2::Digest;
    let cors = [(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")];
    let inner_ref = inner.clone();
    let mut inner = inner_ref.lock().unwrap();
    let Some((challenge, client, redirect, _)) =
        form.get("code").and_then(|c| inner.codes.remove(c))
    else {
        return (axum::http::StatusCode::BAD_REQUEST, cors, "unknown code").into_response();
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    if computed != challenge
        || form.get("client_id") != Some(&client)
        || form.get("redirect_uri") != Some(&redirect)
    {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            cors,
            "PKCE or client mismatch",
        )
            .into_response();
    }
    let Some((audience, more)) = inner.login.clone() else {
        return (axum::http::StatusCode::FORBIDDEN, cors, "nobody signs in").into_response();
    };
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": url, "aud": audience, "iat": now, "nbf": now, "exp": now + 3600,
        "auth_time": now, "jti": Uuid::new_v4().to_string(),
    });
    if let (Some(c), Value::Object(more)) = (claims.as_object_mut(), more) {
        c.extend(more);
    }
    let key = &inner.keys[0];
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    let access = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
    (
        cors,
        axum::Json(json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600})),
    )
        .into_response()
}

/// See the module documentation.
pub struct TestIssuer {
    pub url: String,
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    server: Option<tokio::task::JoinHandle<()>>,
    dir: std::path::PathBuf,
}

async fn discovery(
    State((url, _)): State<(String, Arc<Mutex<Inner>>)>,
) -> (
    [(axum::http::HeaderName, &'static str); 1],
    axum::Json<Value>,
) {
    // Read by browsers too (the console's sign-in): any origin.
    (
        [(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        axum::Json(json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks"),
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
            "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
            "code_challenge_methods_supported": ["S256"],
        })),
    )
}

async fn jwks(State((_, inner)): State<(String, Arc<Mutex<Inner>>)>) -> axum::Json<JwkSet> {
    let mut inner = inner.lock().unwrap();
    inner.jwks_fetches += 1;
    axum::Json(JwkSet {
        keys: inner.keys.iter().map(|k| k.jwk.clone()).collect(),
    })
}

impl TestIssuer {
    /// An issuer with one RS256 key, serving on a free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = std::env::temp_dir().join(format!("ri-oidc-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut issuer = TestIssuer {
            url: format!("http://{addr}"),
            addr,
            inner: Arc::default(),
            server: None,
            dir,
        };
        issuer.add_key(Algorithm::RS256);
        issuer.serve(listener);
        issuer
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", axum::routing::post(token))
            .with_state((self.url.clone(), self.inner.clone()));
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    /// Who signs in at `/authorize` from now on: a token for `audience` with `claims` more.
    pub fn sign_in_as(&self, audience: &str, claims: Value) {
        self.inner.lock().unwrap().login = Some((audience.to_owned(), claims));
    }

    /// The query strings `/authorize` was asked with, in order.
    pub fn authorizations(&self) -> Vec<String> {
        self.inner.lock().unwrap().authorizations.clone()
    }

    /// Stops answering: connections to its port are refused.
    pub fn go_down(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Answers again, on the same port.
    pub async fn come_back(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(64).unwrap();
        self.serve(listener);
    }

    /// Generates a key for `alg` (RS256, PS256: RSA 2048; ES256: P-256) and publishes it;
    /// returns its `kid`.
    pub fn add_key(&self, alg: Algorithm) -> String {
        let kid = format!("k-{}", Uuid::new_v4().simple());
        let private = self.dir.join(format!("{kid}.pem"));
        let public = self.dir.join(format!("{kid}.pub.pem"));
        let algorithm: &[&str] = match alg {
            Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            _ => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        };
        super::succeeds(
            std::process::Command::new("openssl")
                .arg("genpkey")
                .args(algorithm)
                .arg("-out")
                .arg(&private),
        );
        super::succeeds(
            std::process::Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(&private)
                .arg("-out")
                .arg(&public),
        );
        // DER, which jsonwebtoken reads without its PEM feature: PKCS#1 for RSA, PKCS#8 for
        // EC.
        let der = self.dir.join(format!("{kid}.der"));
        let to_der: &[&str] = match alg {
            Algorithm::ES256 => &["pkcs8", "-topk8", "-nocrypt", "-outform", "DER"],
            _ => &["rsa", "-traditional", "-outform", "DER"],
        };
        super::succeeds(
            std::process::Command::new("openssl")
                .args(to_der)
                .arg("-in")
                .arg(&private)
                .arg("-out")
                .arg(&der),
        );
        let der = std::fs::read(&der).unwrap();
        let encoding = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_der(&der),
            _ => EncodingKey::from_rsa_der(&der),
        };
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.clone());
        self.inner.lock().unwrap().keys.push(Key {
            kid: kid.clone(),
            alg,
            encoding,
            jwk,
            public_pem: std::fs::read(&public).unwrap(),
        });
        kid
    }

    /// Stops publishing the key `kid`.
    pub fn remove_key(&self, kid: &str) {
        self.inner.lock().unwrap().keys.retain(|k| k.kid != kid);
    }

    /// The first key's `kid`.
    pub fn first_kid(&self) -> String {
        self.inner.lock().unwrap().keys[0].kid.clone()
    }

    /// How many times the key set was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.inner.lock().unwrap().jwks_fetches
    }

    /// `claims` signed with the key `kid`, its algorithm and `kid` in the header.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let inner = self.inner.lock().unwrap();
        let key = inner
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .expect("a key of the issuer");
        let mut header = Header::new(key.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    /// `claims` signed HS256 with the key `kid`'s *public* key as the secret, `kid` in the
    /// header: the algorithm confusion attack.
    pub fn sign_confused(&self, kid: &str, claims: &Value) -> String {
        let inner = self.inner.lock().unwrap();
        let key = inner.keys.iter().find(|k| k.kid == kid).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&key.public_pem)).unwrap()
    }

    /// The claims of a token of this issuer for `audience`, valid for an hour, signed in now.
    pub fn claims(&self, audience: &str, more: Value) -> Value {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": self.url, "aud": audience, "iat": now, "nbf": now, "exp": now + 3600,
            "auth_time": now, "jti": Uuid::new_v4().to_string(),
        });
        if let (Some(claims), Value::Object(more)) = (claims.as_object_mut(), more) {
            claims.extend(more);
        }
        claims
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.go_down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A token of `alg: none`: the header and payload, no signature.
pub fn unsigned(claims: &Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}
