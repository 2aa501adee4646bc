//! A throwaway `redis-server` for one test: started from PATH on a free port, with no
//! persistence, and killed when dropped. Tests never touch a Redis on 6379.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub password: Option<String>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(None)
    }

    pub fn start_with_password(password: &str) -> RedisServer {
        Self::start_with(Some(password.to_string()))
    }

    /// A new, empty server on the port of one that was killed: the same URL, no data.
    pub fn restart_on(port: u16) -> RedisServer {
        Self::start_on(None, port)
    }

    fn start_with(password: Option<String>) -> RedisServer {
        Self::start_on(password, free_port())
    }

    fn start_on(password: Option<String>, port: u16) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--enable-debug-command", "local", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd.spawn().expect("redis-server must be on PATH (just setup installs it)");
        let server = RedisServer { child: Some(child), port, password, _dir: dir };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        wait_port(self.port);
    }

    /// `redis://127.0.0.1:PORT/DB`, with the password when the server has one.
    pub fn url(&self, db: u8) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/{db}", self.port),
            None => format!("redis://127.0.0.1:{}/{db}", self.port),
        }
    }

    pub fn client(&self, db: u8) -> redis::Connection {
        redis::Client::open(self.url(db)).unwrap().get_connection().unwrap()
    }

    /// SIGKILL the server, to test what a step does when Redis goes away.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Until something accepts connections on `port` (a server just started), or panic after 10 s.
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server did not start on port {port}");
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}
