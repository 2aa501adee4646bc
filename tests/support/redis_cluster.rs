//! A throwaway Redis Cluster for one test: N primaries (`redis-server --cluster-enabled yes` on
//! free ports, the bus on another free port via `--cluster-port`), joined with
//! `redis-cli --cluster create ... --cluster-yes`, and killed when dropped. A node can be killed
//! and restarted on its port with its own nodes.conf, so it rejoins with the slots it had; with
//! `persistent`, its keys come back too (AOF, fsync always), as a real primary's would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_server::{free_port, wait_port};

pub struct ClusterNode {
    child: Option<Child>,
    pub port: u16,
    bus_port: u16,
    dir: tempfile::TempDir,
    persistent: bool,
}

impl ClusterNode {
    fn start(persistent: bool) -> ClusterNode {
        let dir = tempfile::tempdir().expect("temp dir for a cluster node");
        let mut node =
            ClusterNode { child: None, port: free_port(), bus_port: free_port(), dir, persistent };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
            .args(["--cluster-port", &self.bus_port.to_string(), "--cluster-node-timeout", "3000"])
            .args(["--enable-debug-command", "local", "--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        self.child = Some(cmd.spawn().expect("redis-server must be on PATH"));
        wait_port(self.port);
    }

    pub fn client(&self) -> redis::Connection {
        let url = format!("redis://127.0.0.1:{}/0", self.port);
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
}

impl RedisCluster {
    pub fn start(primaries: usize) -> RedisCluster {
        Self::create(primaries, false)
    }

    /// Nodes that keep their keys across a kill and restart (AOF with fsync always).
    pub fn start_persistent(primaries: usize) -> RedisCluster {
        Self::create(primaries, true)
    }

    fn create(primaries: usize, persistent: bool) -> RedisCluster {
        let nodes: Vec<ClusterNode> =
            (0..primaries).map(|_| ClusterNode::start(persistent)).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli must be on PATH");
        assert!(out.status.success(), "redis-cli --cluster create: {out:?}");
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// The URL of the first node: any node of a cluster leads to all of them.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.nodes[0].port)
    }

    /// Until every running node says `cluster_state:ok` and knows every slot's owner.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            loop {
                let info: String =
                    redis::cmd("CLUSTER").arg("INFO").query(&mut node.client()).unwrap_or_default();
                if info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster not ok on {}: {info}", node.port);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The node that owns `slot` now, by index.
    pub fn owner(&self, slot: u16) -> usize {
        let primaries =
            runbook::steps::flush::cluster_primaries(&mut self.nodes[0].client(), "127.0.0.1")
                .expect("CLUSTER SLOTS");
        let owner = primaries
            .iter()
            .find(|p| p.slots.iter().any(|(s, e)| (*s..=*e).contains(&slot)))
            .expect("every slot has an owner");
        self.nodes.iter().position(|n| n.port == owner.port).expect("a node of this cluster")
    }

    /// SET `prefix:0` .. `prefix:count-1` (value `value:N`), each on the node owning its slot,
    /// through raw pipelined RESP: a million keys in a few seconds even in a debug build.
    pub fn load(&self, prefix: &str, count: u64) {
        let owners = self.slot_owners();
        let mut streams: Vec<TcpStream> = self
            .nodes
            .iter()
            .map(|n| TcpStream::connect(("127.0.0.1", n.port)).expect("connect to a node"))
            .collect();
        let mut start = 0;
        while start < count {
            let end = (start + 20_000).min(count);
            let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); self.nodes.len()];
            let mut sent = vec![0usize; self.nodes.len()];
            for i in start..end {
                let key = format!("{prefix}:{i}");
                let value = format!("value:{i}");
                let node = owners[runbook::steps::flush::key_slot(key.as_bytes()) as usize];
                let buf = &mut bufs[node];
                write!(
                    buf,
                    "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                    key.len(),
                    value.len()
                )
                .unwrap();
                sent[node] += 1;
            }
            for (node, stream) in streams.iter_mut().enumerate() {
                stream.write_all(&bufs[node]).unwrap();
                let mut replies = vec![0u8; sent[node] * 5];
                stream.read_exact(&mut replies).unwrap();
                assert!(replies.chunks(5).all(|r| r == b"+OK\r\n"), "SET refused on node {node}");
            }
            start = end;
        }
    }

    fn slot_owners(&self) -> Vec<usize> {
        let mut owners = vec![0; 16384];
        let primaries =
            runbook::steps::flush::cluster_primaries(&mut self.nodes[0].client(), "127.0.0.1")
                .expect("CLUSTER SLOTS");
        for p in primaries {
            let node = self.nodes.iter().position(|n| n.port == p.port).expect("a node");
            for (s, e) in p.slots {
                owners[s as usize..=e as usize].fill(node);
            }
        }
        owners
    }

    /// The keys matching `pattern` on each node, by SCAN.
    pub fn count_per_node(&self, pattern: &str) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|n| {
                let mut c = n.client();
                let keys: Vec<Vec<u8>> = redis::Commands::scan_match(&mut c, pattern)
                    .unwrap()
                    .filter_map(Result::ok)
                    .collect();
                keys.len()
            })
            .collect()
    }

    pub fn count(&self, pattern: &str) -> usize {
        self.count_per_node(pattern).iter().sum()
    }

    /// Move `slots` slots from node `from` to node `to`, keys and all, the way
    /// `redis-cli --cluster reshard` does it.
    pub fn reshard(&self, from: usize, to: usize, slots: u32) {
        let id = |n: usize| self.node_id(n);
        let out = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{}", self.nodes[0].port)])
            .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster reshard");
        assert!(out.status.success(), "reshard: {out:?}");
        self.wait_ok();
    }

    /// SIGKILL node `n`.
    pub fn kill(&mut self, n: usize) {
        self.nodes[n].kill();
    }

    /// Start node `n` again on its port with its nodes.conf (and, when persistent, its keys).
    pub fn restart(&mut self, n: usize) {
        self.nodes[n].spawn();
        self.wait_ok();
    }

    /// Keys on every node, by DBSIZE (cheap enough to poll while a flush runs).
    pub fn count_from_dbsize(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| redis::cmd("DBSIZE").query::<u64>(&mut n.client()).unwrap_or(0))
            .sum()
    }

    fn node_id(&self, n: usize) -> String {
        redis::cmd("CLUSTER").arg("MYID").query(&mut self.nodes[n].client()).unwrap()
    }

    /// Leave `slot` half-way from node `from` to node `to` (MIGRATING there, IMPORTING here), as
    /// a resharding interrupted mid-slot would: commands for its missing keys get ASK answers.
    pub fn start_migration(&self, slot: u16, from: usize, to: usize) {
        let set = |node: usize, state: &str, other: usize| {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(self.node_id(other))
                .query(&mut self.nodes[node].client())
                .unwrap();
        };
        set(to, "IMPORTING", from);
        set(from, "MIGRATING", to);
    }
}
