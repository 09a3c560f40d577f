//! Real peers for the notices: an SMTP server (aiosmtpd, `smtp_sink.py`) and an HTTP receiver
//! for the SMS webhook, both on loopback, both recording what arrived.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use super::free_port;

/// One message the SMTP server accepted.
#[derive(Clone, Debug)]
pub struct Mail {
    pub to: Vec<String>,
    pub message_id: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The message as it came over the wire.
    pub raw: String,
}

/// aiosmtpd on a port of its own, writing what it accepts into a directory.
pub struct SmtpSink {
    pub port: u16,
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl SmtpSink {
    /// A running server.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let mut sink = Self::stopped(env);
        sink.restart();
        sink
    }

    /// One whose port is reserved but that does not listen yet ([`SmtpSink::restart`]).
    pub fn stopped(env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("ri_smtp_{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        SmtpSink {
            port: free_port(),
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port.
    pub fn restart(&mut self) {
        self.stop();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&self.dir)
            .arg(self.port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (scripts/test installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        self.child = Some(child);
    }

    /// Stops it (SIGKILL, by its own pid).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The messages accepted so far, in the order they came.
    pub fn messages(&self) -> Vec<Mail> {
        let mut files: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|eml| {
                let meta: Value = serde_json::from_str(
                    &std::fs::read_to_string(eml.with_extension("json")).unwrap(),
                )
                .unwrap();
                let text = |k: &str| meta[k].as_str().unwrap_or_default().to_owned();
                Mail {
                    to: meta["to"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_owned())
                        .collect(),
                    message_id: text("message_id"),
                    subject: text("subject"),
                    text: text("text"),
                    html: text("html"),
                    raw: String::from_utf8_lossy(&std::fs::read(&eml).unwrap()).into_owned(),
                }
            })
            .collect()
    }

    /// Whether a message's DATA arrived and waits for its answer (with SMTP_SINK_DELAY).
    pub fn received_pending(&self) -> usize {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "received"))
            .count()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One request the webhook receiver got.
#[derive(Clone, Debug)]
pub struct Hook {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Hook {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

/// An HTTP server that records every POST; answers 500 while `failing`.
pub struct WebhookReceiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Hook>>>,
    pub failing: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let (r, f) = (received.clone(), failing.clone());
        let app = axum::Router::new().route(
            "/sms",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (r, f) = (r.clone(), f.clone());
                async move {
                    if f.load(Ordering::SeqCst) {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    r.lock().unwrap().push(Hook { headers, body });
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sms", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        WebhookReceiver {
            url,
            received,
            failing,
            task,
        }
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
