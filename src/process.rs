//! The one place that spawns step commands: `bash -c` in its own process group, output read as
//! it comes, a timeout or Ctrl-C ending every process the step started: its group, background
//! children and those that ignore SIGTERM (SIGKILL at the end of the grace period), and children
//! that left the group with setsid (found by a marker in their environment; runbook is their
//! subreaper, so they stay its descendants and are reaped). After a normal exit, what the step
//! left running on purpose (a daemon) keeps running.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

pub mod table;

/// Set in every spawned command's environment, unique to that spawn: how its processes are found
/// once they have left its process group.
pub const SPAWN_VAR: &str = "RUNBOOK_SPAWN";

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

/// `bash` as found on PATH once: spawning by its full path spares every step the failed
/// `execve` of each PATH entry before it (posix_spawnp walks PATH in the child).
fn bash() -> &'static std::path::Path {
    static BASH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BASH.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join("bash"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| "bash".into())
    })
}

/// Run `command`, handing each piece of its merged stdout and stderr to `on_output` as it comes.
pub fn run(spawn: &Spawn<'_>, on_output: &mut dyn FnMut(&[u8])) -> Result<Exit> {
    let started = Instant::now();
    reap_adopted();
    if let Some(dir) = spawn.cwd
        && !dir.is_dir()
    {
        anyhow::bail!(
            "the working directory {} does not exist; nothing was run (a retry is safe once it does)",
            crate::term::path(dir)
        );
    }
    let mut expr = duct::cmd(bash(), ["-c", spawn.command])
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
    let marker = spawn_marker();
    expr = expr.env(SPAWN_VAR, &marker);
    let reader = crate::signals::unblocked(|| expr.reader())
        .with_context(|| format!("cannot start `bash -c {}`", spawn.command))?;
    let reader = Arc::new(reader);
    let pgid = reader.pids().first().copied().unwrap_or(0) as i32;
    let step = StepProcesses {
        pgid,
        marker: format!("{SPAWN_VAR}={marker}"),
        seen: RefCell::new(HashSet::new()),
    };
    let chunks = read_on_a_thread(Arc::clone(&reader));
    let deadline = spawn.timeout.map(|t| started + t);
    let stop = pump(&reader, &chunks, &step, deadline, spawn.interrupt, on_output)?;
    let output = match reader.try_wait()? {
        Some(output) => output.status,
        None => {
            // Only after an I/O error on the pipe: end the group and collect its exit.
            step.signal_all(Signal::SIGKILL);
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
/// it); at the deadline or on an interrupt, stop every process of the step and wait for them.
fn pump(
    reader: &duct::ReaderHandle,
    chunks: &mpsc::Receiver<std::io::Result<Vec<u8>>>,
    step: &StepProcesses,
    deadline: Option<Instant>,
    interrupt: &AtomicBool,
    on_output: &mut dyn FnMut(&[u8]),
) -> Result<Option<Stop>> {
    let mut stopping: Option<Stopping> = None;
    let mut exited_at: Option<Instant> = None;
    let mut open = true;
    loop {
        if open {
            match chunks.recv_timeout(POLL) {
                Ok(Ok(chunk)) => on_output(&chunk),
                Ok(Err(e)) => return Err(e).context("cannot read the step's output"),
                Err(mpsc::RecvTimeoutError::Disconnected) if stopping.is_none() => {
                    step.adopt_leftovers();
                    return Ok(None);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        } else {
            std::thread::sleep(POLL);
        }
        let now = Instant::now();
        if stopping.is_none() {
            stopping = Stopping::begin(step, now, deadline, interrupt);
        }
        if let Some(stop) = &mut stopping {
            if stop.over(step, reader, now) {
                return Ok(Some(stop.why));
            }
            continue;
        }
        if exited_at.is_none() && matches!(reader.try_wait(), Ok(Some(_))) {
            exited_at = Some(now);
        }
        if exited_at.is_some_and(|t| now >= t + AFTER_EXIT) {
            step.adopt_leftovers();
            return Ok(None);
        }
    }
}

/// A step being stopped: SIGTERM to all its processes, SIGKILL to those left at the end of the
/// grace period, and the wait until none is left.
struct Stopping {
    why: Stop,
    kill_at: Instant,
    killed: bool,
}

/// After the SIGKILL, how long processes get to vanish before the step is given up on (one in
/// uninterruptible sleep cannot be helped, and must not hang the run).
const AFTER_KILL: Duration = Duration::from_secs(3);

impl Stopping {
    fn begin(
        step: &StepProcesses,
        now: Instant,
        deadline: Option<Instant>,
        interrupt: &AtomicBool,
    ) -> Option<Stopping> {
        let why = if interrupt.load(Ordering::SeqCst) {
            Stop::Interrupt
        } else if deadline.is_some_and(|d| now >= d) {
            Stop::Timeout
        } else {
            return None;
        };
        step.signal_all(Signal::SIGTERM);
        Some(Stopping { why, kill_at: now + GRACE, killed: false })
    }

    /// Whether every process of the step is gone (bash's exit collected too).
    fn over(&mut self, step: &StepProcesses, reader: &duct::ReaderHandle, now: Instant) -> bool {
        if !self.killed && now >= self.kill_at {
            step.signal_all(Signal::SIGKILL);
            self.killed = true;
        }
        step.reap();
        let bash_done = matches!(reader.try_wait(), Ok(Some(_)));
        (bash_done && step.alive().is_empty()) || (self.killed && now >= self.kill_at + AFTER_KILL)
    }
}

/// Every process a step started: its process group, and whoever carries its marker in the
/// environment (a child that left the group with setsid, or a daemon of bash's).
pub(crate) struct StepProcesses {
    pgid: i32,
    marker: String,
    /// Processes of the step seen alive: when they die as our (adopted) children, we reap them.
    seen: RefCell<HashSet<i32>>,
}

impl StepProcesses {
    /// The step's processes that still run (zombies are done and left out).
    fn alive(&self) -> Vec<i32> {
        let marker = self.marker.as_str();
        let found: Vec<i32> = table::entries()
            .into_iter()
            .filter(|e| !e.zombie && (e.pgrp == self.pgid || table::has_env(e.pid, &[marker])))
            .map(|e| e.pid)
            .collect();
        self.seen.borrow_mut().extend(found.iter().copied());
        found
    }

    fn signal_all(&self, signal: Signal) {
        kill_group(self.pgid, signal);
        for pid in self.alive() {
            // A process that is already gone gives ESRCH, which is what we want.
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Collect the exit of every process of the step that died as our child, bash excepted
    /// (its exit is duct's to collect). Being the subreaper, we inherit the orphans.
    fn reap(&self) {
        self.seen.borrow_mut().retain(|&pid| pid == self.pgid || !reaped(pid));
    }

    /// After a normal exit, what bash left running on purpose is ours once bash is gone: note it,
    /// so that its exit is collected later rather than left as a zombie.
    /// Only our own children can be left to reap (as subreaper we inherit the step's orphans,
    /// setsid ones included), so this reads the kernel's list of them instead of the whole
    /// process table, which cost every step hundreds of file reads.
    ///
    /// Only those carrying this spawn's marker: our other children (another host's step running
    /// at the same time, an ssh master, a watch command) belong to a `Child` handle that collects
    /// their exit itself, and reaping them here would steal it.
    fn adopt_leftovers(&self) {
        let marker = self.marker.as_str();
        let left: Vec<i32> = table::own_children()
            .into_iter()
            .filter(|p| *p != self.pgid && table::has_env(*p, &[marker]))
            .collect();
        ADOPTED.lock().unwrap_or_else(|e| e.into_inner()).extend(left);
    }
}

/// Processes a step left running on purpose, whose exit we collect when they end.
static ADOPTED: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Collect the exit of adopted daemons that have ended, so none lingers as a zombie.
fn reap_adopted() {
    ADOPTED.lock().unwrap_or_else(|e| e.into_inner()).retain(|&pid| !reaped(pid));
}

/// Whether `pid` is no longer ours to wait for: reaped now, or not (or no longer) our child.
fn reaped(pid: i32) -> bool {
    !matches!(waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive))
}

/// Orphans of the step's processes are re-parented to us instead of init, so they can still be
/// found, stopped and reaped. Failing that (an old kernel), the group and the environment scan
/// still find them. Called by the commands that run steps, not by `run` itself: a test process
/// that calls `run` must not start adopting (and never reaping) everyone's orphans.
pub fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    });
}

/// A value no other spawn of any run shares, for `RUNBOOK_SPAWN`.
fn spawn_marker() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("{}.{n}", std::process::id())
}

pub fn kill_group(pgid: i32, signal: Signal) {
    // A group that is gone gives ESRCH, which is fine.
    let _ = killpg(Pid::from_raw(pgid), signal);
}
