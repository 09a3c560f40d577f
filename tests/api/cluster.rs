//! The relay on a three-node JetStream cluster started from `deploy/nats/cluster.conf`: the
//! stream is scaled to three copies and publishing goes on, exactly once and in order, after the
//! stream's leader node is stopped.

use crate::publish::published_exactly_once;
use crate::support::nats::nats_binary;
use crate::support::{Options, free_port, spawn_app_with};
use async_nats::jetstream;
use recovery_info::publish::PublisherConfig;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Three `nats-server` processes of this test only, each run with the deploy's config file.
struct NatsCluster {
    names: Vec<String>,
    client_ports: Vec<u16>,
    children: Vec<Option<Child>>,
    dir: std::path::PathBuf,
}

impl NatsCluster {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("ri-natsc-{}", Uuid::new_v4().simple()));
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nats/cluster.conf");
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let names: Vec<String> = (1..=3).map(|i| format!("n{i}")).collect();
        let mut children = Vec::new();
        for i in 0..3 {
            let store = dir.join(&names[i]);
            std::fs::create_dir_all(&store).unwrap();
            let mut cmd = Command::new(nats_binary());
            cmd.args(["-c", config])
                .env("NATS_NAME", &names[i])
                .env("NATS_HOST", "127.0.0.1")
                .env("NATS_PORT", client_ports[i].to_string())
                .env("NATS_CLUSTER_PORT", route_ports[i].to_string())
                .env("NATS_STORE", &store)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            for (j, port) in route_ports.iter().enumerate() {
                cmd.env(
                    format!("NATS_ROUTE_{}", j + 1),
                    format!("nats-route://127.0.0.1:{port}"),
                );
            }
            children.push(Some(cmd.spawn().expect("nats-server must be installed")));
        }
        let cluster = NatsCluster {
            names,
            client_ports,
            children,
            dir,
        };
        cluster.wait_for_a_metadata_leader().await;
        cluster
    }

    /// Every node's client URL, separated by commas (as `NATS_URL` takes them).
    fn url(&self) -> String {
        self.client_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn servers(&self) -> Vec<String> {
        self.url().split(',').map(str::to_owned).collect()
    }

    /// JetStream answers account requests once the cluster has elected its metadata leader.
    async fn wait_for_a_metadata_leader(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // `$JS.API.INFO` answers with an error until the metadata leader is elected.
            if let Ok(client) = async_nats::ConnectOptions::new()
                .request_timeout(Some(Duration::from_millis(500)))
                .connect(self.servers())
                .await
                && let Ok(reply) = client.request("$JS.API.INFO", "".into()).await
                && !String::from_utf8_lossy(&reply.payload).contains("\"error\"")
            {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster formed no JetStream");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the node named `name` (a process this test started, by its PID).
    fn stop(&mut self, name: &str) {
        let i = self.names.iter().position(|n| n == name).unwrap();
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for name in self.names.clone() {
            self.stop(&name);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_three_copy_stream_keeps_publishing_exactly_once_when_its_leader_node_stops() {
    let mut cluster = NatsCluster::start().await;
    let js = jetstream::new(async_nats::connect(cluster.servers()).await.unwrap());
    // A one-copy stream, as a deployment on one NATS node would have left it: the relay
    // configured for three copies scales it up.
    let one_copy = jetstream::stream::Config {
        name: "RECOVERY_EVENTS".into(),
        subjects: vec![
            "recovery.v1.events.>".into(),
            "recovery.v1.eligibility.>".into(),
        ],
        num_replicas: 1,
        ..Default::default()
    };
    // A cluster that has just formed, on a busy machine, may take longer than a request's
    // timeout to place a stream: try again until it is there.
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = js.create_stream(one_copy.clone()).await {
        if js.get_stream("RECOVERY_EVENTS").await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no stream on the cluster: {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let app = spawn_app_with(Options {
        publisher: Some(PublisherConfig {
            replicas: 3,
            ack_timeout: Duration::from_secs(2),
            poll_interval: Duration::from_millis(200),
            leader_retry: Duration::from_millis(300),
            ..PublisherConfig::new(cluster.url())
        }),
        ..Options::default()
    })
    .await;
    let admins: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    for (i, a) in admins.iter().enumerate() {
        app.add_ok(*a, "mobile_phone", &format!("+45 20 12 34 5{i}"))
            .await;
    }
    published_exactly_once(&app, &js, Duration::from_secs(30)).await;

    let mut stream = js.get_stream("RECOVERY_EVENTS").await.unwrap();
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.config.num_replicas, 3);
    let placement = info.cluster.expect("a clustered stream");
    assert_eq!(
        placement.replicas.len(),
        2,
        "two copies beside the leader's"
    );
    let leader = placement.leader.expect("a stream leader");

    // The node holding the stream's leader goes away; the other two elect a new leader (NATS
    // 2.9 takes ≈ 10 s here) and the relay, which knows all three, goes on from the stream's
    // tip.
    cluster.stop(&leader);
    for (i, a) in admins.iter().enumerate() {
        app.add_ok(*a, "email", &format!("admin{i}@example.com"))
            .await;
    }
    let messages = published_exactly_once(&app, &js, Duration::from_secs(60)).await;
    assert_eq!(crate::publish::events_of(&messages).len(), 2 * admins.len());
    let info = stream.info().await.unwrap();
    let now_leading = info.cluster.as_ref().and_then(|c| c.leader.clone());
    assert!(
        now_leading.is_some() && now_leading != Some(leader),
        "{now_leading:?}"
    );
}
