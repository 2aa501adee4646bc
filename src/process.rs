//! The one place that spawns step commands: `bash -c` in its own process group, output read as
//! it comes, a timeout or Ctrl-C ending the whole group (grandchildren included).

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long a process group gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// How often the clock, the interrupt flag and bash's exit are looked at while no output comes.
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

/// Why the group was ended.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Timeout,
    Interrupt,
}

/// Once bash has exited, how long output is still read: a process it left in the background (a
/// daemon) may hold the pipe open for ever, and the step is over when bash is.
const AFTER_EXIT: Duration = Duration::from_millis(500);

/// Run `command`, handing each piece of its merged stdout and stderr to `on_output` as it comes.
pub fn run(spawn: &Spawn<'_>, on_output: &mut dyn FnMut(&[u8])) -> Result<Exit> {
    let started = Instant::now();
    if let Some(dir) = spawn.cwd
        && !dir.is_dir()
    {
        anyhow::bail!(
            "the working directory {} does not exist; nothing was run (a retry is safe once it does)",
            dir.display()
        );
    }
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
    let reader = Arc::new(reader);
    let pgid = reader.pids().first().copied().unwrap_or(0) as i32;
    let chunks = read_on_a_thread(Arc::clone(&reader));
    let deadline = spawn.timeout.map(|t| started + t);
    let stop = pump(&reader, &chunks, pgid, deadline, spawn.interrupt, on_output)?;
    let output = match reader.try_wait()? {
        Some(output) => output.status,
        None => {
            // Only after an I/O error on the pipe: end the group and collect its exit.
            kill_group(pgid, libc::SIGKILL);
            reader.kill().ok();
            reader.try_wait()?.context("the step's process did not report its exit")?.status
        }
    };
    Ok(Exit {
        code: output.code(),
        signal: output.signal(),
        timed_out: stop == Some(Stop::Timeout),
        interrupted: stop == Some(Stop::Interrupt),
        duration: started.elapsed(),
    })
}

/// The pipe is read on its own thread so that the loop below can watch the clock, Ctrl-C and
/// bash's exit while no output comes.
fn read_on_a_thread(reader: Arc<duct::ReaderHandle>) -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::sync_channel(16);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match (&*reader).read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.send(Ok(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// Hand output on until the pipe closes (or bash has exited and only background processes hold
/// it); end the group at the deadline or on an interrupt.
fn pump(
    reader: &duct::ReaderHandle,
    chunks: &mpsc::Receiver<std::io::Result<Vec<u8>>>,
    pgid: i32,
    deadline: Option<Instant>,
    interrupt: &AtomicBool,
    on_output: &mut dyn FnMut(&[u8]),
) -> Result<Option<Stop>> {
    let mut stop = None;
    let mut kill_at: Option<Instant> = None;
    let mut exited_at: Option<Instant> = None;
    loop {
        match chunks.recv_timeout(POLL) {
            Ok(Ok(chunk)) => on_output(&chunk),
            Ok(Err(e)) => return Err(e).context("cannot read the step's output"),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(stop),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        if stop.is_none() {
            let why = if interrupt.load(Ordering::SeqCst) {
                Some((Stop::Interrupt, libc::SIGINT))
            } else if deadline.is_some_and(|d| now >= d) {
                Some((Stop::Timeout, libc::SIGTERM))
            } else {
                None
            };
            if let Some((why, signal)) = why {
                kill_group(pgid, signal);
                stop = Some(why);
                kill_at = Some(now + GRACE);
            }
        }
        if kill_at.is_some_and(|k| now >= k) {
            kill_group(pgid, libc::SIGKILL);
            kill_at = None;
        }
        if exited_at.is_none() && matches!(reader.try_wait(), Ok(Some(_))) {
            exited_at = Some(now);
        }
        if exited_at.is_some_and(|t| now >= t + AFTER_EXIT) {
            return Ok(stop);
        }
    }
}

pub fn kill_group(pgid: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; a group that is gone gives ESRCH, which is fine.
    unsafe {
        libc::killpg(pgid, signal);
    }
}
