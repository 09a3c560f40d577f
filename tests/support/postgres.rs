//! PostgreSQL servers of a test's own, in temporary directories (a hot standby, a server that
//! requires TLS): its programs, its data directory owned by `postgres`, started and stopped
//! by the test.

use super::{free_port, succeeds};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use uuid::Uuid;

/// The newest installed PostgreSQL's programs (or `TEST_PG_BIN`).
pub fn pg_bin(program: &str) -> PathBuf {
    let dir = std::env::var("TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .expect("PostgreSQL's server programs (scripts/test installs them)")
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("initdb").exists())
                .collect();
            dirs.sort_by_key(|p| {
                p.parent()
                    .and_then(|v| v.file_name())
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse::<u32>().ok())
            });
            dirs.pop().expect("an installed PostgreSQL")
        });
    dir.join(program)
}

pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A PostgreSQL program, run as the `postgres` user when this test runs as root (the server
/// refuses to run as root).
pub fn pg_command(program: &str) -> Command {
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(program));
        c
    } else {
        Command::new(pg_bin(program))
    }
}

/// Runs a PostgreSQL program; it must succeed.
pub fn pg(program: &str, args: &[&str]) -> Output {
    succeeds(pg_command(program).args(args))
}

/// Gives `names` in `dir` to the `postgres` user, when this test runs as root (the server
/// must own its data directory and read its key).
pub fn give_to_postgres(dir: &Path, names: &[&str]) {
    if running_as_root() {
        succeeds(
            Command::new("chown")
                .arg("postgres")
                .args(names)
                .current_dir(dir),
        );
    }
}

/// One server of this test: its data directory and port; stopped (by its data directory) when
/// dropped.
pub struct Server {
    data: String,
    pub port: u16,
}

impl Server {
    pub fn start(data: &Path, socket_dir: &Path) -> Self {
        Server::start_with(data, socket_dir, "")
    }

    /// With more `postgres` options (`-c name=value …`).
    pub fn start_with(data: &Path, socket_dir: &Path, more: &str) -> Self {
        let port = free_port();
        let data = data.to_str().unwrap().to_owned();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off {more}",
            socket_dir.display()
        );
        let log = format!("{data}.log");
        pg(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        );
        Server { data, port }
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .args(["-D", &self.data, "-m", "immediate", "stop"])
            .output();
    }
}

/// A temporary directory the `postgres` user owns; removed when dropped.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ri-standby-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        give_to_postgres(&dir, &["."]);
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new cluster `name` in `dir` (trust authentication on loopback, as `scripts/test`'s).
pub fn init(dir: &Dir, name: &str) -> PathBuf {
    let data = dir.0.join(name);
    pg(
        "initdb",
        &[
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        ],
    );
    data
}
