//! A private `nats-server -js` per test: its own port and store directory, started and
//! stopped (by its PID) by the test.

use std::process::{Child, Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

/// A `nats-server -js` of this test only: its own port and store directory.
pub struct PrivateNats {
    pub port: u16,
    pub dir: std::path::PathBuf,
    /// A configuration file to run with, and the environment it reads.
    config: Option<(std::path::PathBuf, Vec<(String, String)>)>,
    child: Option<Child>,
}

pub fn nats_binary() -> String {
    std::env::var("TEST_NATS_SERVER_BIN").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server".into()
        } else {
            "nats-server".into()
        }
    })
}

impl PrivateNats {
    pub async fn start() -> Self {
        let mut nats = PrivateNats::unstarted();
        nats.resume().await;
        nats
    }

    /// A port and a store directory, no server yet.
    fn unstarted() -> Self {
        let dir = std::env::temp_dir().join(format!("ri-nats-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        PrivateNats {
            port: super::free_port(),
            dir,
            config: None,
            child: None,
        }
    }

    /// A server with the users of `deploy/nats/authorization.conf`, their passwords from `env`.
    pub async fn start_with_authorization(env: &[(&str, &str)]) -> Self {
        PrivateNats::start_with_config(
            |dir| {
                let include = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/deploy/nats/authorization.conf"
                );
                std::fs::copy(include, dir.join("authorization.conf")).unwrap();
                "include ./authorization.conf".into()
            },
            env,
        )
        .await
    }

    /// A server run with a configuration file: its address, JetStream in its directory, and
    /// what `more` writes (given the directory), the environment `env`.
    pub async fn start_with_config(
        more: impl FnOnce(&std::path::Path) -> String,
        env: &[(&str, &str)],
    ) -> Self {
        let mut nats = PrivateNats::unstarted();
        let config = nats.dir.join("server.conf");
        std::fs::write(
            &config,
            format!(
                "host: 127.0.0.1\nport: {}\njetstream {{ store_dir: {:?} }}\n{}\n",
                nats.port,
                nats.dir.join("js"),
                more(&nats.dir)
            ),
        )
        .unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        nats.config = Some((config, env));
        nats.resume().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and store.
    pub async fn resume(&mut self) {
        let mut command = Command::new(nats_binary());
        match &self.config {
            Some((config, env)) => {
                command.arg("-c").arg(config).envs(env.iter().cloned());
            }
            None => {
                command
                    .args([
                        "-a",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-js",
                        "-sd",
                    ])
                    .arg(&self.dir);
            }
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private nats-server did not start");
    }

    /// Stops the server (the one this test started, by its PID).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
