//! Real `sshd` hosts for the tests: one `sshd` per host, each in a network namespace of its own
//! (`ip netns` + a veth pair, an address in 198.18.0.0/15, the range set aside for benchmarks),
//! key authentication with a key generated for the fleet, and a generated `ssh_config` and
//! `known_hosts` (host keys are checked, never turned off). Where namespaces are not permitted,
//! each `sshd` listens on a loopback port instead, and the fleet says so on stderr.
//!
//! A fleet cleans up only what it made: its own `sshd` pids, its namespaces and veths, its slot
//! files. Nothing is found or ended by name.

use std::fs::OpenOptions;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where a fleet's hosts listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each host in its own network namespace, with its own address.
    Netns,
    /// Namespaces are not permitted here: each host is an `sshd` on a loopback port.
    Loopback,
}

/// Slot files: one per namespace in use on this machine, so parallel tests (and other test
/// processes) never pick the same names or addresses.
const SLOTS: &str = "/tmp/runbook-test-netns";
const SLOT_COUNT: usize = 16384;

/// One host: an `sshd` this fleet started.
pub struct Host {
    /// The name the generated ssh_config knows it by (`h1`, `h2`, ...).
    pub name: String,
    pub addr: String,
    pub port: u16,
    sshd: Option<Child>,
    net: Option<Net>,
}

/// The namespace and veth of one host, and the slot file that reserves them.
struct Net {
    netns: String,
    /// The veth end in the test's own namespace: taking it down cuts the host off.
    veth: String,
    slot: PathBuf,
}

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub mode: Mode,
    pub hosts: Vec<Host>,
    /// The generated ssh_config: pass it as `[ssh] config` or `ssh -F`.
    pub config: PathBuf,
}

impl Fleet {
    /// Start `n` hosts named `h1`..`hN`.
    pub fn start(n: usize) -> Fleet {
        ensure_privsep_dir();
        let dir = tempfile::tempdir().expect("temp dir for the fleet");
        keygen(&dir.path().join("id_ed25519"));
        // Sessions get a home of their own: bash reads ~/.bashrc for commands run by sshd, and
        // this machine's may do anything (and be slow).
        std::fs::create_dir(dir.path().join("home")).unwrap();
        let public = std::fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();
        std::fs::write(dir.path().join("authorized_keys"), public).unwrap();
        let mode = if netns_permitted() { Mode::Netns } else { Mode::Loopback };
        if mode == Mode::Loopback {
            eprintln!(
                "sshd fleet: network namespaces are not permitted here; hosts are sshd on loopback ports"
            );
        }
        let config = dir.path().join("ssh_config");
        let mut fleet = Fleet { dir, mode, hosts: Vec::new(), config };
        for i in 1..=n {
            let host = fleet.start_host(i);
            fleet.hosts.push(host);
        }
        fleet.write_client_files();
        for host in &fleet.hosts {
            wait_listening(&host.addr, host.port);
        }
        fleet
    }

    pub fn names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    fn start_host(&self, i: usize) -> Host {
        let name = format!("h{i}");
        let key = self.dir.path().join(format!("host_{i}"));
        keygen(&key);
        let (addr, port, net) = match self.mode {
            Mode::Netns => {
                let (net, addr) = Net::create();
                (addr, 22, Some(net))
            }
            Mode::Loopback => ("127.0.0.1".to_string(), free_port(), None),
        };
        let conf = self.dir.path().join(format!("sshd_{i}.conf"));
        std::fs::write(&conf, self.sshd_config(&key, &addr, port)).unwrap();
        let mut cmd = match &net {
            Some(net) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &net.netns]);
                c.arg("/usr/sbin/sshd");
                c
            }
            None => Command::new("/usr/sbin/sshd"),
        };
        // `ip netns exec` execs sshd, so the pid kept here is sshd's own.
        cmd.args(["-D", "-e", "-f"]).arg(&conf).stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(Stdio::null());
        let sshd = cmd.spawn().expect("start sshd (openssh-server; scripts/test.sh installs it)");
        Host { name, addr, port, sshd: Some(sshd), net }
    }

    fn sshd_config(&self, key: &Path, addr: &str, port: u16) -> String {
        let d = self.dir.path().display();
        format!(
            "Port {port}\nListenAddress {addr}\nHostKey {}\nAuthorizedKeysFile {d}/authorized_keys\n\
             StrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nPidFile none\nLogLevel ERROR\n\
             MaxSessions 200\nMaxStartups 200\nAcceptEnv none\nSetEnv HOME={d}/home\n",
            key.display()
        )
    }

    /// The ssh_config and known_hosts a client needs: every host by name, the fleet's key, its
    /// host keys checked strictly.
    fn write_client_files(&self) {
        let d = self.dir.path();
        let user = whoami();
        let mut config = String::new();
        let mut known = String::new();
        for (i, h) in self.hosts.iter().enumerate() {
            config.push_str(&format!(
                "Host {}\n  HostName {}\n  Port {}\n  User {user}\n",
                h.name, h.addr, h.port
            ));
            let key = std::fs::read_to_string(d.join(format!("host_{}.pub", i + 1))).unwrap();
            let key: Vec<&str> = key.split_whitespace().take(2).collect();
            let host =
                if h.port == 22 { h.addr.clone() } else { format!("[{}]:{}", h.addr, h.port) };
            known.push_str(&format!("{host} {}\n", key.join(" ")));
        }
        config.push_str(&format!(
            "Host *\n  IdentityFile {}/id_ed25519\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
             UserKnownHostsFile {}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  \
             StrictHostKeyChecking yes\n",
            d.display(),
            d.display()
        ));
        std::fs::write(&self.config, config).unwrap();
        std::fs::write(d.join("known_hosts"), known).unwrap();
    }

    /// Cut host `i` (0-based) off the network: its veth goes down. Netns mode only.
    pub fn link_down(&self, i: usize) {
        let net = self.hosts[i].net.as_ref().expect("link_down needs namespaces");
        ip(&["link", "set", &net.veth, "down"]);
    }

    pub fn link_up(&self, i: usize) {
        let net = self.hosts[i].net.as_ref().expect("link_up needs namespaces");
        ip(&["link", "set", &net.veth, "up"]);
    }

    /// Stop host `i`'s sshd (the listener; sessions it already forked go on until they end).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.hosts[i].sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.stop(i);
            if let Some(net) = self.hosts[i].net.take() {
                net.remove();
            }
        }
    }
}

impl Net {
    /// Reserve a free slot and build its namespace: a veth pair with a /30 between them.
    fn create() -> (Net, String) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        std::fs::create_dir_all(SLOTS).unwrap();
        let start = std::process::id() as usize * 97 + NEXT.fetch_add(1, Ordering::SeqCst) * 7;
        for k in (0..SLOT_COUNT).map(|j| (start + j) % SLOT_COUNT) {
            let slot = Path::new(SLOTS).join(k.to_string());
            if OpenOptions::new().write(true).create_new(true).open(&slot).is_err() {
                continue;
            }
            let net = Net { netns: format!("rbt-{k}"), veth: format!("rbh{k}"), slot };
            if !try_ip(&["netns", "add", &net.netns]) {
                // A namespace of this name is left over from a test process that was killed:
                // keep its slot reserved and take another.
                continue;
            }
            let inner = format!("rbn{k}");
            let base = k * 4;
            let outer_addr = format!("198.18.{}.{}", base >> 8, (base & 255) + 1);
            let addr = format!("198.18.{}.{}", base >> 8, (base & 255) + 2);
            ip(&["link", "add", &net.veth, "type", "veth", "peer", "name", &inner]);
            ip(&["link", "set", &inner, "netns", &net.netns]);
            ip(&["addr", "add", &format!("{outer_addr}/30"), "dev", &net.veth]);
            ip(&["link", "set", &net.veth, "up"]);
            let inside = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &net.netns, "ip"];
                all.extend_from_slice(args);
                ip(&all);
            };
            inside(&["addr", "add", &format!("{addr}/30"), "dev", &inner]);
            inside(&["link", "set", &inner, "up"]);
            inside(&["link", "set", "lo", "up"]);
            return (net, addr);
        }
        panic!("no free network namespace slot in {SLOTS}");
    }

    fn remove(self) {
        // Every process still in the namespace is one of ours (a session of our sshd whose
        // client went away): end them by pid, then the namespace.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.netns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        // Deleting the namespace destroys its veth end, and with it the pair.
        try_ip(&["link", "del", &self.veth]);
        try_ip(&["netns", "del", &self.netns]);
        let _ = std::fs::remove_file(&self.slot);
    }
}

/// Whether this process may create network namespaces (root, or a user namespace that allows it).
fn netns_permitted() -> bool {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("rbt-probe-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    let ok = try_ip(&["netns", "add", &name]);
    if ok {
        try_ip(&["netns", "del", &name]);
    }
    ok
}

fn try_ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "runbook-test", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed");
}

/// sshd refuses to start without its privilege separation directory.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.exists() {
        let _ = std::fs::create_dir_all(dir);
    }
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

fn wait_listening(addr: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect((addr, port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("sshd did not start listening on {addr}:{port}");
}
