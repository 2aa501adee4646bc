//! Steps on remote hosts, over the system OpenSSH client. One ControlMaster per host (its socket
//! in a short private directory, named by ssh's own hash `%C`; `ControlPersist` bounded; every
//! master closed at the end), `BatchMode=yes` so nothing ever waits for a password, and the
//! user's ssh_config (or `[ssh] config`, passed as `-F`), agent, ProxyJump and known_hosts
//! honoured: host keys are checked as ssh is configured to check them, never turned off here.
//!
//! The remote side is a fixed bash prelude given as ssh's command, so the command line (local or
//! remote, as `ps` shows it) never holds a step's command or a secret. The step itself, the
//! secrets as `export` lines and the working directory reach the prelude on the session's stdin,
//! ended by a NUL byte. What follows on stdin is a lifeline: one line naming a signal, or the end
//! of stdin (this process gone, the session dropped), ends the step's process group on the host,
//! then SIGKILL after a grace period. The step runs with stdin from /dev/null.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Exit, Runner, Spawn};

/// How often the clock, the interrupt flag and ssh's exit are looked at while no output comes.
const POLL: Duration = Duration::from_millis(50);
/// After asking the host to stop the step: how long before this side gives up on the session
/// (the host's own grace is 2 s; the rest is for a slow link).
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The remote prelude, run by the login shell as `exec bash -c '...'`: no single quote inside.
/// `set -m` gives the step a process group of its own; the watcher (also in its own group) waits
/// for a signal name or the end of stdin; `s` records that a stop is under way, so the prelude
/// lets the watcher finish (SIGKILL after 2 s) rather than end it.
const PRELUDE: &str = concat!(
    "trap \"s=1\" USR1; ",
    "IFS= read -r -d \"\" x || exit 254; ",
    "set -m; ",
    "(exec </dev/null; eval \"$x\") & c=$!; ",
    "(IFS= read -r g; kill -USR1 $$; kill -s \"${g:-TERM}\" -- -$c; ",
    "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do ",
    "sleep 0.1; kill -0 -- -$c || exit 0; done; kill -KILL -- -$c) >/dev/null 2>&1 & w=$!; set +m; ",
    "while wait $c; r=$?; [ $r -gt 128 ] && kill -0 $c 2>/dev/null; do :; done; ",
    "if [ -z \"$s\" ]; then kill -- -$w 2>/dev/null; else wait $w; fi; ",
    "exit $r"
);

/// How every ssh of a run is invoked.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// `[ssh] config`: passed as `ssh -F`; `None` leaves ssh to read the user's own.
    pub config: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// `ServerAliveInterval`; a host that misses three answers in a row is gone.
    pub alive_interval: Duration,
    /// How long an idle master outlives its last session (bounded, so a crash leaves none for
    /// long).
    pub persist: Duration,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            config: None,
            connect_timeout: Duration::from_secs(10),
            alive_interval: Duration::from_secs(5),
            persist: Duration::from_secs(60),
        }
    }
}

/// A host as a runbook names it: `web-1`, `deploy@10.0.0.12:2222`, `[fe80::1]:22`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl Destination {
    /// Parse a host name; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Destination, String> {
        if text.is_empty() {
            return Err("an empty host name".into());
        }
        if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("a host name with {c:?} in it"));
        }
        if text.starts_with('-') {
            return Err("a host name starting with '-' (ssh would read it as an option)".into());
        }
        let (user, rest) = match text.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
            Some(_) => return Err("an empty user before '@'".into()),
            None => (None, text),
        };
        let (host, port) = split_port(rest)?;
        if host.is_empty() || host.starts_with('-') {
            return Err("no host name after the user".into());
        }
        // Hosts are put into commands as `{{host}}`: only characters no shell treats specially.
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if let Some(c) = user.iter().flat_map(|u| u.chars()).find(|c| !plain(*c)) {
            return Err(format!("a user name with {c:?} in it"));
        }
        if let Some(c) = host.chars().find(|c| !plain(*c) && !matches!(c, ':' | '%')) {
            return Err(format!("a host name with {c:?} in it"));
        }
        Ok(Destination { user, host: host.to_string(), port })
    }

    /// What ssh is given: the name as is, or an `ssh://` URI when a port is set.
    fn arg(&self) -> String {
        let user = self.user.as_deref().map_or(String::new(), |u| format!("{u}@"));
        match self.port {
            Some(p) if self.host.contains(':') => format!("ssh://{user}[{}]:{p}", self.host),
            Some(p) => format!("ssh://{user}{}:{p}", self.host),
            None => format!("{user}{}", self.host),
        }
    }
}

fn split_port(rest: &str) -> Result<(&str, Option<u16>), String> {
    if let Some(inner) = rest.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Err("a '[' with no ']'".into());
        };
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("{after:?} after ']'")),
        };
    }
    match rest.split_once(':') {
        // More than one ':' is an IPv6 address without a port.
        Some((_, p)) if p.contains(':') => Ok((rest, None)),
        Some((host, p)) => Ok((host, Some(port(p)?))),
        None => Ok((rest, None)),
    }
}

fn port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("port {text:?} (expected a number from 1 to 65535)")),
    }
}

/// The masters of one run: a private directory for their sockets, and the hosts connected so
/// far, each closed (`ssh -O exit`) when the run is done or this is dropped.
pub struct Masters {
    dir: PathBuf,
    options: SshOptions,
    opened: Mutex<BTreeSet<String>>,
}

impl Masters {
    /// A private (0700) socket directory, short enough for a Unix socket path (`%C` is 40
    /// characters; the limit is about 100).
    pub fn new(options: SshOptions) -> Result<Arc<Masters>> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir() && p.as_os_str().len() < 40)
            .unwrap_or_else(std::env::temp_dir);
        let dir = private_dir(&base)?;
        Ok(Arc::new(Masters { dir, options, opened: Mutex::new(BTreeSet::new()) }))
    }

    /// A runner for `host`; nothing is connected yet.
    pub fn host(self: &Arc<Self>, host: &str) -> Result<Ssh> {
        let dest = Destination::parse(host)
            .map_err(|e| anyhow::anyhow!("host {host:?} is not usable: {e}"))?;
        Ok(Ssh { masters: Arc::clone(self), name: host.to_string(), dest })
    }

    /// ssh with this run's options, ready for a destination.
    fn ssh(&self) -> Command {
        let o = &self.options;
        let mut cmd = Command::new("ssh");
        if let Some(config) = &o.config {
            cmd.arg("-F").arg(config);
        }
        let opts = [
            "BatchMode=yes".to_string(),
            format!("ConnectTimeout={}", o.connect_timeout.as_secs().max(1)),
            format!("ServerAliveInterval={}", o.alive_interval.as_secs().max(1)),
            "ServerAliveCountMax=3".to_string(),
            "ControlMaster=auto".to_string(),
            format!("ControlPersist={}", o.persist.as_secs().max(1)),
            format!("ControlPath={}/%C", self.dir.display()),
        ];
        for opt in opts {
            cmd.arg("-o").arg(opt);
        }
        cmd.arg("-T");
        cmd
    }

    /// Close every master this run opened and remove the socket directory.
    pub fn close_all(&self) {
        let hosts: BTreeSet<String> =
            std::mem::take(&mut *self.opened.lock().expect("not poisoned"));
        let closing: Vec<Child> = hosts
            .iter()
            .filter_map(|dest| {
                let mut cmd = self.ssh();
                cmd.args(["-O", "exit", "--", dest]);
                cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()
            })
            .collect();
        for mut child in closing {
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn opened(&self, dest: &str) {
        self.opened.lock().expect("not poisoned").insert(dest.to_string());
    }
}

impl Drop for Masters {
    fn drop(&mut self) {
        self.close_all();
    }
}

fn private_dir(base: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let seed = u64::from(std::process::id()) << 32;
    for i in 0..100u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        let dir = base.join(format!("rb-ssh-{:x}", (seed ^ nanos).wrapping_add(i) & 0xffff_ffff));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot create a private directory for ssh sockets in {}",
                        base.display()
                    )
                });
            }
        }
    }
    bail!("cannot find a free name for ssh's socket directory in {}", base.display())
}

/// Why a host could not be used at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach {host} over ssh: {reason}; nothing was run there (a retry is safe)")]
pub struct Unreachable {
    pub host: String,
    pub reason: String,
}

/// Why a step's session ended without the step's own exit status.
#[derive(Debug, thiserror::Error)]
#[error(
    "lost the ssh connection to {host} while the step ran ({reason}); whether the step finished there is unknown: check the host before a retry"
)]
pub struct ConnectionLost {
    pub host: String,
    pub reason: String,
}

/// One host of the run.
pub struct Ssh {
    masters: Arc<Masters>,
    name: String,
    dest: Destination,
}

impl Ssh {
    /// Open (or reuse) this host's master: the check that the host is reachable, its key
    /// known and the login accepted, before any step runs there.
    pub fn connect(&self) -> Result<(), Unreachable> {
        let dest = self.dest.arg();
        let mut cmd = self.masters.ssh();
        cmd.args(["--", &dest, "exit 0"]);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.unreachable(format!("cannot start ssh: {e}")))?;
        self.masters.opened(&dest);
        if out.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&out.stderr);
        let reason = said.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("ssh failed");
        Err(self.unreachable(reason.trim().to_string()))
    }

    fn unreachable(&self, reason: String) -> Unreachable {
        Unreachable { host: self.name.clone(), reason }
    }

    /// Whether this host's master is up (`ssh -O check`).
    pub fn master_alive(&self) -> bool {
        let mut cmd = self.masters.ssh();
        cmd.args(["-O", "check", "--", &self.dest.arg()]);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        cmd.status().is_ok_and(|s| s.success())
    }

    fn start(&self) -> Result<(Child, std::io::PipeReader)> {
        let (reader, writer) = std::io::pipe().context("cannot make a pipe for ssh's output")?;
        let mut cmd = self.masters.ssh();
        cmd.args(["--", &self.dest.arg(), &format!("exec bash -c '{PRELUDE}'")]);
        cmd.stdin(Stdio::piped())
            .stdout(writer.try_clone().context("cannot share ssh's output pipe")?)
            .stderr(writer)
            // Its own group: the terminal's Ctrl-C reaches only us, and we decide what the
            // remote step gets.
            .process_group(0);
        let child = cmd.spawn().context("cannot start ssh (is OpenSSH's client installed?)")?;
        self.masters.opened(&self.dest.arg());
        Ok((child, reader))
    }
}

impl Runner for Ssh {
    fn target(&self) -> &str {
        &self.name
    }

    fn run(&self, spawn: &Spawn<'_>, on_output: &mut dyn FnMut(&[u8])) -> Result<Exit> {
        let started = Instant::now();
        let script = script(spawn)?;
        let (mut child, reader) = self.start()?;
        let stdin = child.stdin.take().context("ssh's stdin")?;
        let lifeline = lifeline(stdin, script);
        let chunks = read_on_a_thread(reader);
        let deadline = spawn.timeout.map(|t| started + t);
        let watch = Watch { deadline, interrupt: spawn.interrupt, lifeline: &lifeline };
        let stop = pump(&mut child, &chunks, &watch, on_output)?;
        drop(lifeline);
        let status = child.wait().context("ssh's exit")?;
        let exit = Exit {
            code: status.code(),
            signal: std::os::unix::process::ExitStatusExt::signal(&status),
            timed_out: stop == Some(Stop::Timeout),
            interrupted: stop == Some(Stop::Interrupt),
            duration: started.elapsed(),
        };
        if stop.is_none() && exit.code == Some(255) && !self.master_alive() {
            let reason = "ssh exited 255 and the host's master connection is gone".to_string();
            return Err(ConnectionLost { host: self.name.clone(), reason }.into());
        }
        Ok(exit)
    }
}

/// What the prelude evaluates: the secrets and `RUNBOOK_*` values as `export` lines, the working
/// directory, then the command. Sent on stdin, never on a command line.
fn script(spawn: &Spawn<'_>) -> Result<Vec<u8>> {
    let mut s = String::new();
    for (name, value) in spawn.env {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("environment name {name:?} cannot be exported on a remote host");
        }
        s.push_str(&format!("export {name}={}\n", quote(value)));
    }
    if let Some(dir) = spawn.cwd {
        let dir = quote(&dir.to_string_lossy());
        s.push_str(&format!(
            "cd -- {dir} || {{ echo \"runbook: the working directory \"{dir}\" does not exist on this host\" >&2; exit 1; }}\n"
        ));
    }
    s.push_str(spawn.command);
    if s.contains('\0') {
        bail!("the command holds a NUL byte, which bash cannot run; nothing was run");
    }
    let mut bytes = s.into_bytes();
    bytes.push(0);
    Ok(bytes)
}

/// `'...'` for bash: nothing inside is expanded.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The session's stdin, on its own thread: the script first, then held open until a stop is
/// asked for (a signal name is written) or the run is done with it (dropped).
struct Lifeline {
    tx: Option<mpsc::Sender<&'static str>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lifeline {
    fn stop(&self, signal: &'static str) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(signal);
        }
    }
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lifeline(mut stdin: std::process::ChildStdin, script: Vec<u8>) -> Lifeline {
    let (tx, rx) = mpsc::channel::<&'static str>();
    let thread = std::thread::spawn(move || {
        if stdin.write_all(&script).and_then(|()| stdin.flush()).is_err() {
            return;
        }
        // Held open until told to stop (then closed: the host ends the group, SIGKILL after
        // its grace) or until the run drops us after ssh has exited.
        if let Ok(signal) = rx.recv() {
            let _ = stdin.write_all(format!("{signal}\n").as_bytes());
        }
    });
    Lifeline { tx: Some(tx), thread: Some(thread) }
}

fn read_on_a_thread(mut reader: std::io::PipeReader) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::sync_channel(16);
    std::thread::spawn(move || {
        // Small: one buffer per host at once, and ssh hands output on in pieces of at most 32 KiB.
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    });
    rx
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Stop {
    Timeout,
    Interrupt,
}

struct Watch<'a> {
    deadline: Option<Instant>,
    interrupt: &'static std::sync::atomic::AtomicBool,
    lifeline: &'a Lifeline,
}

/// Hand output on until ssh exits and its pipe is drained; on a timeout or an interrupt, ask the
/// host to end the step's group, and end the local ssh if the host does not answer in time.
fn pump(
    child: &mut Child,
    chunks: &mpsc::Receiver<Vec<u8>>,
    watch: &Watch<'_>,
    on_output: &mut dyn FnMut(&[u8]),
) -> Result<Option<Stop>> {
    let mut stop = None;
    let mut give_up_at: Option<Instant> = None;
    loop {
        match chunks.recv_timeout(POLL) {
            Ok(chunk) => on_output(&chunk),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(stop),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        if stop.is_none() {
            let why = if watch.interrupt.load(Ordering::SeqCst) {
                Some((Stop::Interrupt, "INT"))
            } else if watch.deadline.is_some_and(|d| now >= d) {
                Some((Stop::Timeout, "TERM"))
            } else {
                None
            };
            if let Some((why, signal)) = why {
                watch.lifeline.stop(signal);
                stop = Some(why);
                give_up_at = Some(now + STOP_WAIT);
            }
        }
        if give_up_at.is_some_and(|t| now >= t) {
            // The host did not answer (a dead link): end our side; the host's own lifeline
            // ends the step when the session's end reaches it.
            let _ = child.kill();
            give_up_at = None;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            // ssh is gone: what is left in the pipe is all there is.
            while let Ok(chunk) = chunks.recv_timeout(POLL) {
                on_output(&chunk);
            }
            return Ok(stop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_user_host_and_port() {
        let d = Destination::parse("deploy@10.0.0.12:2222").unwrap();
        assert_eq!(d.user.as_deref(), Some("deploy"));
        assert_eq!(d.host, "10.0.0.12");
        assert_eq!(d.port, Some(2222));
        assert_eq!(d.arg(), "ssh://deploy@10.0.0.12:2222");
        assert_eq!(Destination::parse("web-1").unwrap().arg(), "web-1");
        assert_eq!(Destination::parse("[fe80::1]:22").unwrap().arg(), "ssh://[fe80::1]:22");
        assert_eq!(Destination::parse("fe80::1").unwrap().arg(), "fe80::1");
    }

    #[test]
    fn destinations_that_ssh_would_misread_are_refused() {
        let bad = ["", "-oProxyCommand=x", "a b", "web\n1", "@web", "web:0", "web:99999", "u@-x"];
        for bad in bad.into_iter().chain(["web;id", "$(id)", "a'b", "web/1", "u$x@web"]) {
            assert!(Destination::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn quoting_keeps_every_character() {
        assert_eq!(quote("it's $(x)"), "'it'\\''s $(x)'");
    }

    #[test]
    fn prelude_has_no_single_quote() {
        assert!(!PRELUDE.contains('\''));
    }
}
