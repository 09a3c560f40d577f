//! The zero-setup default: the binary on an embedded store, through a crash, and bad starts.

use crate::support::each;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use uuid::Uuid;

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recovery-info"));
    cmd.env_remove("DATABASE_URL")
        .env_remove("RECOVERY_JWT_SECRET")
        .env_remove("RECOVERY_DATA_DIR")
        .env_remove("RECOVERY_METRICS_TOKEN")
        // Never the default port: tests run side by side.
        .env("RECOVERY_METRICS_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn");
    cmd
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("ri_test_{}", Uuid::new_v4().simple()))
}

/// Starts `serve` on `data_dir` and returns the child and its base URL, read from the banner.
fn serve(data_dir: &Path) -> (Child, String) {
    let (child, base, _) = serve_with_metrics(data_dir, "127.0.0.1:0");
    (child, base)
}

/// [`serve`] with `--metrics-listen metrics_listen`; also returns the metrics listener's base
/// URL from the banner, if it has one.
fn serve_with_metrics(data_dir: &Path, metrics_listen: &str) -> (Child, String, Option<String>) {
    let mut child = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen"])
        .arg(metrics_listen)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a banner").unwrap();
    let base = first
        .strip_prefix("recovery-info listening on ")
        .unwrap_or_else(|| panic!("unexpected banner {first:?}"))
        .to_owned();
    let metrics = lines.next().unwrap().unwrap();
    let metrics = match metrics.strip_prefix("  metrics: ") {
        Some("off") => None,
        Some(url) => Some(url.strip_suffix("/metrics").unwrap().to_owned()),
        None => panic!("unexpected banner line {metrics:?}"),
    };
    let store = lines.next().unwrap().unwrap();
    assert!(store.contains("embedded SQLite"), "{store}");
    assert!(store.contains(&data_dir.display().to_string()), "{store}");
    let tokens = lines.next().unwrap().unwrap();
    assert!(tokens.contains("jwt-secret"), "{tokens}");
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, base, metrics)
}

/// The TCP ports the process `pid` listens on: its sockets (from `/proc/<pid>/fd`) that
/// `/proc/<pid>/net/tcp{,6}` shows in the LISTEN state.
fn listening_ports(pid: u32) -> Vec<u16> {
    let sockets: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is fields[1] (ADDR:PORT in hex), st fields[3] (0A: LISTEN),
            // inode fields[9].
            if fields.len() > 9 && fields[3] == "0A" && sockets.contains(fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports.sort_unstable();
    ports
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn metrics_listen_off_binds_nothing_but_the_api() {
    let data_dir = temp_dir();
    let (mut child, base, metrics) = serve_with_metrics(&data_dir, "off");
    assert_eq!(metrics, None, "the banner says off");
    assert_eq!(listening_ports(child.id()), [port_of(&base)]);
    child.kill().unwrap();
    child.wait().unwrap();

    // Not vacuous: with an address, the process listens there too, and serves the counters.
    let (mut child, base, metrics) = serve_with_metrics(&data_dir, "127.0.0.1:0");
    let metrics = metrics.expect("a metrics listener in the banner");
    let mut expected = vec![port_of(&base), port_of(&metrics)];
    expected.sort_unstable();
    assert_eq!(listening_ports(child.id()), expected);
    let r = reqwest::get(format!("{metrics}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("recovery_"));
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 404, "not on the API's listener");
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
}

fn token(data_dir: &Path, tenant: Uuid, subject: &str, role: &str) -> String {
    let out = binary()
        .args([
            "token",
            "--tenant",
            &tenant.to_string(),
            "--subject",
            subject,
            "--role",
            role,
            "--data-dir",
        ])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn every_acknowledged_event_survives_a_sigkill() {
    let data_dir = temp_dir();
    let (mut child, base) = serve(&data_dir);
    let (tenant, admin) = (Uuid::now_v7(), Uuid::now_v7());
    let token = token(&data_dir, tenant, &admin.to_string(), "self_service");
    let client = reqwest::Client::new();
    let api = format!("{base}/v1/tenants/{tenant}/admins/{admin}");
    let send = async |method: reqwest::Method, path: &str, body: Option<Value>| -> Value {
        let mut req = client
            .request(method, format!("{api}{path}"))
            .bearer_auth(&token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.json().await.unwrap()
    };

    // The help page's flow.
    let phone = send(
        reqwest::Method::POST,
        "/methods",
        Some(json!({"kind": "mobile_phone", "value": "+45 20 12 34 56"})),
    )
    .await;
    let phone = phone["method"]["id"].as_str().unwrap().to_owned();
    let email = send(
        reqwest::Method::POST,
        "/methods",
        Some(json!({"kind": "email", "value": "jane@example.com"})),
    )
    .await;
    // Positions are sealed tokens on the default: handed back as they were given.
    let second = email["position"].as_str().unwrap().to_owned();
    let email = email["method"]["id"].as_str().unwrap().to_owned();
    let e = send(
        reqwest::Method::GET,
        &format!("/reset-eligibility?min_position={second}"),
        None,
    )
    .await;
    assert_eq!(e["eligible"], true);
    send(
        reqwest::Method::PATCH,
        &format!("/methods/{phone}"),
        Some(json!({"value": "+45 31 12 34 99"})),
    )
    .await;
    let last = send(reqwest::Method::DELETE, &format!("/methods/{email}"), None).await;
    let position = last["position"].as_str().unwrap().to_owned();
    let view_before = send(
        reqwest::Method::GET,
        &format!("/methods?min_position={position}"),
        None,
    )
    .await;
    let eligibility_before = send(
        reqwest::Method::GET,
        &format!("/reset-eligibility?min_position={position}"),
        None,
    )
    .await;

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (mut child, base) = serve(&data_dir);
    let api = format!("{base}/v1/tenants/{tenant}/admins/{admin}");
    let get = async |path: &str| -> Value {
        let r = client
            .get(format!("{api}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    };
    let history = get("/history").await;
    let types = each(&history, "events", "type");
    assert_eq!(
        types,
        [
            "MethodAdded",
            "MethodAdded",
            "MethodChanged",
            "MethodRemoved"
        ]
    );
    // The last acknowledged command's position is the fourth event's, and its token still
    // opens after the restart (the key that seals it is kept in the store).
    assert_eq!(history["events"][3]["position"], position.as_str());
    assert_eq!(
        get(&format!("/methods?min_position={position}")).await,
        view_before
    );
    assert_eq!(
        get(&format!("/reset-eligibility?min_position={position}")).await,
        eligibility_before
    );
    assert_eq!(eligibility_before["eligible"], false);

    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
}

fn fails_with_one_line(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn an_unusable_data_dir_fails_at_start_with_one_line() {
    let parent = temp_dir();
    std::fs::create_dir_all(&parent).unwrap();
    let file = parent.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = fails_with_one_line(
        binary()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(file.join("data")),
    );
    assert!(err.contains("data directory"), "{err}");
    let err = fails_with_one_line(
        binary()
            .args(["migrate", "--data-dir"])
            .arg(file.join("data")),
    );
    assert!(err.contains("data directory"), "{err}");
    let _ = std::fs::remove_dir_all(&parent);
}

#[test]
fn a_data_dir_written_by_a_newer_schema_is_refused() {
    let data_dir = temp_dir();
    let out = binary()
        .args(["migrate", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let db =
        rusqlite::Connection::open(data_dir.join(recovery_info::store::sqlite::DB_FILE)).unwrap();
    db.execute(
        "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (99, 'future', 0)",
        [],
    )
    .unwrap();
    drop(db);
    let err = fails_with_one_line(
        binary()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir),
    );
    assert!(err.contains("newer than this build"), "{err}");
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[test]
fn a_malformed_database_url_fails_at_start_with_one_line() {
    let err = fails_with_one_line(
        binary()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:notaport/x")
            .env("RECOVERY_JWT_SECRET", crate::support::SECRET),
    );
    assert!(err.contains("DATABASE_URL"), "{err}");
    let err = fails_with_one_line(binary().args(["serve", "--listen", "127.0.0.1:0"]).env(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    ));
    assert!(err.contains("RECOVERY_JWT_SECRET"), "{err}");
}

#[test]
fn publishing_to_nats_on_the_embedded_store_is_refused_at_start() {
    let data_dir = temp_dir();
    let err = fails_with_one_line(
        binary()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--nats-url",
                "nats://127.0.0.1:1",
                "--data-dir",
            ])
            .arg(&data_dir),
    );
    assert!(err.contains("needs the PostgreSQL store"), "{err}");
    let _ = std::fs::remove_dir_all(&data_dir);
}
