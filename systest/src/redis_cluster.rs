//! A real Redis Cluster of the test's own (3 masters, 3 replicas, each a
//! `redis-server` child process on free ports), so a test can kill a master
//! and watch its replica take over without disturbing any other test.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use uuid::Uuid;

pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

struct Node {
    port: u16,
    child: Option<Child>,
}

/// A port free for the node and for its cluster bus (port + 10000).
fn free_port_pair() -> anyhow::Result<u16> {
    for _ in 0..200 {
        let probe = TcpListener::bind("127.0.0.1:0")?;
        let port = probe.local_addr()?.port();
        drop(probe);
        if port > 55_000 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
    }
    bail!("no free port pair for a Redis Cluster node")
}

fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .context("running redis-cli (apt-get install redis-tools)")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl RedisCluster {
    /// Starts six nodes and joins them into a cluster; returns once every
    /// slot is served and each master has its replica.
    pub async fn start() -> anyhow::Result<RedisCluster> {
        let dir = std::env::temp_dir().join(format!("tasklog-cluster-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..6 {
            let port = free_port_pair()?;
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir)?;
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                // Quick failure detection; a replica may always take over.
                .args(["--cluster-node-timeout", "1000"])
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting redis-server (apt-get install redis-server)")?;
            cluster.nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        for node in &cluster.nodes {
            wait_for(Duration::from_secs(10), "a node to answer", || {
                Ok(cli(node.port, &["ping"])?.contains("PONG"))
            })
            .await?;
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .context("redis-cli --cluster create")?;
        if !created.status.success() {
            bail!(
                "creating the cluster: {}",
                String::from_utf8_lossy(&created.stdout)
            );
        }
        cluster.wait_healthy(Duration::from_secs(30)).await?;
        // A failover needs each replica streaming from its master.
        let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
        wait_for(Duration::from_secs(30), "three replicas in sync", || {
            let mut synced = 0;
            for port in &ports {
                let info = cli(*port, &["info", "replication"])?;
                if info.contains("role:slave") && info.contains("master_link_status:up") {
                    synced += 1;
                }
            }
            Ok(synced == 3)
        })
        .await?;
        Ok(cluster)
    }

    /// Seed nodes, as `REDIS_CLUSTER_URLS` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn live_port(&self) -> anyhow::Result<u16> {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .map(|n| n.port)
            .context("no node left")
    }

    /// The port of the master that serves `key`'s slot now.
    pub fn master_of(&self, key: &str) -> anyhow::Result<u16> {
        let port = self.live_port()?;
        let slot: u16 = cli(port, &["cluster", "keyslot", key])?.trim().parse()?;
        for line in cli(port, &["cluster", "nodes"])?.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let mut ends = range.split('-').filter_map(|p| p.parse::<u16>().ok());
                match (ends.next(), ends.next()) {
                    (Some(a), Some(b)) => (a..=b).contains(&slot),
                    (Some(a), None) => a == slot,
                    _ => false,
                }
            });
            if serves {
                let addr = fields[1].split('@').next().unwrap_or_default();
                return addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .context("a node address without a port");
            }
        }
        bail!("no master serves slot {slot}")
    }

    /// SIGKILL to one node: no shutdown, nothing flushed to its replica
    /// beyond what replication had already sent.
    pub fn kill(&mut self, port: u16) {
        for node in &mut self.nodes {
            if node.port == port {
                if let Some(mut child) = node.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }

    /// Waits until another node than `old` serves `key`'s slot as master
    /// (the replica promoted after `old` failed), then for a healthy cluster.
    pub async fn wait_failover(
        &self,
        key: &str,
        old: u16,
        within: Duration,
    ) -> anyhow::Result<u16> {
        wait_for(within, "a replica promoted", || {
            Ok(self.master_of(key).is_ok_and(|port| port != old))
        })
        .await?;
        self.wait_healthy(within).await?;
        self.master_of(key)
    }

    /// Waits until the cluster answers for every slot again.
    pub async fn wait_healthy(&self, within: Duration) -> anyhow::Result<()> {
        let ports: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect();
        wait_for(within, "cluster_state:ok on every live node", || {
            for port in &ports {
                if !cli(*port, &["cluster", "info"])?.contains("cluster_state:ok") {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await
    }
}

async fn wait_for(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if check().unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("waited {within:?} for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
