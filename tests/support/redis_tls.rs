//! A throwaway TLS `redis-server` for one test, with certificates made by `openssl` in its own
//! temporary folder: a CA, a server certificate for 127.0.0.1 signed by it, a client certificate
//! signed by it, and a second CA that signed nothing here (the "wrong CA"). The server listens
//! for TLS on one free port and for plain text on another, which only the test uses to seed
//! and count keys. It asks for a client certificate. Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::redis_server::free_port;

pub struct TlsRedis {
    child: Option<Child>,
    pub tls_port: u16,
    pub plain_port: u16,
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    pub fn start() -> TlsRedis {
        let dir = tempfile::tempdir().expect("temp dir for TLS files");
        let d = dir.path();
        make_ca(d, "ca");
        make_ca(d, "other-ca");
        make_signed(d, "server", "serverAuth");
        make_signed(d, "client", "clientAuth");
        let (tls_port, plain_port) = (free_port(), free_port());
        let file = |name: &str| d.join(name).display().to_string();
        let child = Command::new("redis-server")
            .args(["--port", &plain_port.to_string(), "--tls-port", &tls_port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--tls-cert-file", &file("server.crt"), "--tls-key-file", &file("server.key")])
            .args(["--tls-ca-cert-file", &file("ca.crt"), "--tls-auth-clients", "yes"])
            .arg("--dir")
            .arg(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH");
        super::redis_server::wait_port(plain_port);
        super::redis_server::wait_port(tls_port);
        TlsRedis {
            child: Some(child),
            tls_port,
            plain_port,
            ca: d.join("ca.crt"),
            other_ca: d.join("other-ca.crt"),
            client_cert: d.join("client.crt"),
            client_key: d.join("client.key"),
            dir,
        }
    }

    /// `rediss://127.0.0.1:PORT/0`, without the TLS files (the runbook's keys carry them).
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.tls_port)
    }

    /// A plain-text connection for the test itself.
    pub fn client(&self) -> redis::Connection {
        let url = format!("redis://127.0.0.1:{}/0", self.plain_port);
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().expect("openssl on PATH");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn make_ca(dir: &Path, name: &str) {
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    let subject = format!("/CN=runbook test {name}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn make_signed(dir: &Path, name: &str, usage: &str) {
    let ext = format!(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n"
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}
