//! The one place that spawns step commands: `bash -c` in its own process group, output read as
//! it comes, a timeout or Ctrl-C ending the whole group (grandchildren included).

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long a process group gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// How often the watchdog looks at the interrupt flag.
const POLL: Duration = Duration::from_millis(50);

pub struct Spawn<'a> {
    pub command: &'a str,
    pub cwd: Option<&'a Path>,
    pub timeout: Option<Duration>,
    pub env: &'a [(String, String)],
    /// Set by the signal handler: stop the step.
    pub interrupt: &'static AtomicBool,
}

#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub interrupted: bool,
    pub duration: Duration,
}

impl Exit {
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            _ if self.timed_out => "timed out; its process group was killed".into(),
            _ if self.interrupted => "interrupted; its process group was stopped".into(),
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "ended without an exit code".into(),
        }
    }
}

/// Why the watchdog ended the group.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Timeout,
    Interrupt,
}

/// Run `command`, handing each piece of its merged stdout and stderr to `on_output` as it comes.
pub fn run(spawn: &Spawn<'_>, on_output: &mut dyn FnMut(&[u8])) -> Result<Exit> {
    let started = Instant::now();
    let mut expr = duct::cmd("bash", ["-c", spawn.command])
        .stderr_to_stdout()
        .stdin_null()
        .unchecked()
        .before_spawn(|cmd| {
            // Its own group, so one signal reaches every process the step started, and the
            // terminal's Ctrl-C reaches only us: we decide what the step gets.
            cmd.process_group(0);
            Ok(())
        });
    if let Some(dir) = spawn.cwd {
        expr = expr.dir(dir);
    }
    for (k, v) in spawn.env {
        expr = expr.env(k, v);
    }
    let reader =
        expr.reader().with_context(|| format!("cannot start `bash -c {}`", spawn.command))?;
    let pgid = reader.pids().first().copied().unwrap_or(0) as i32;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let deadline = spawn.timeout.map(|t| started + t);
    let interrupt = spawn.interrupt;
    let watchdog = std::thread::spawn(move || watch(pgid, deadline, interrupt, &done_rx));
    let read_result = pump(&reader, on_output);
    let _ = done_tx.send(());
    let stop = watchdog.join().unwrap_or(None);
    read_result?;
    let output = reader.try_wait()?.context("the step's process did not report its exit")?;
    Ok(Exit {
        code: output.status.code(),
        signal: output.status.signal(),
        timed_out: stop == Some(Stop::Timeout),
        interrupted: stop == Some(Stop::Interrupt),
        duration: started.elapsed(),
    })
}

fn pump(mut reader: &duct::ReaderHandle, on_output: &mut dyn FnMut(&[u8])) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => on_output(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("cannot read the step's output"),
        }
    }
}

/// Wait for the step to finish; end its group at the deadline or on an interrupt.
fn watch(
    pgid: i32,
    deadline: Option<Instant>,
    interrupt: &AtomicBool,
    done: &mpsc::Receiver<()>,
) -> Option<Stop> {
    loop {
        if interrupt.load(Ordering::SeqCst) {
            stop_group(pgid, libc::SIGINT, done);
            return Some(Stop::Interrupt);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            stop_group(pgid, libc::SIGTERM, done);
            return Some(Stop::Timeout);
        }
        let wait = deadline.map_or(POLL, |d| (d - now).min(POLL));
        match done.recv_timeout(wait) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Signal the group; if it has not finished after the grace period, SIGKILL it.
fn stop_group(pgid: i32, first: i32, done: &mpsc::Receiver<()>) {
    if pgid <= 0 {
        return;
    }
    kill_group(pgid, first);
    if done.recv_timeout(GRACE).is_err() {
        kill_group(pgid, libc::SIGKILL);
    }
}

pub fn kill_group(pgid: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; a group that is gone gives ESRCH, which is fine.
    unsafe {
        libc::killpg(pgid, signal);
    }
}
