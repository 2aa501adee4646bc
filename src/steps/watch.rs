//! The `watch` step: follow a log file (like `tail -F`) or a command's output for a while, and fail
//! when lines matching `fail_on` appear more than `max` times; `until` ends the watch early with
//! success.
//!
//! The matching core lives in [`scanner`]; the two sources in [`follow`] (a file, polled: no
//! inotify, so it also works on network filesystems and through rotation) and [`command`] (its own
//! process group, killed whole when the watch ends). This module ties a source to the scanner,
//! the deadline, progress reports and Ctrl-C.

mod command;
mod follow;
mod scanner;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use scanner::{KEEP_CHARS, KEEP_LINES, MAX_LINE};
use scanner::{Scanner, Stop};

/// How often a file is polled for new lines, and the longest a watch takes to notice Ctrl-C.
pub const POLL: Duration = Duration::from_millis(50);
/// Progress is reported at most this often.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone, Debug, PartialEq)]
pub enum WatchSource {
    /// A file followed by name, from its end at the start of the watch.
    File(PathBuf),
    /// A command run by `bash -c` in its own process group; stdout and stderr are both watched,
    /// and the whole group is killed when the watch ends.
    Command(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct WatchSpec {
    pub source: WatchSource,
    pub duration: Duration,
    /// Regexes; a line matching any of them is a match.
    pub fail_on: Vec<String>,
    /// The watch fails when matches exceed this; 0 means the first match fails it.
    pub max: u64,
    /// A regex that ends the watch early, with success.
    pub until: Option<String>,
    /// Environment variables for a command source (the run's secrets, RUNBOOK_RUN_ID).
    pub env: Vec<(String, String)>,
    /// A file source that does not exist yet is waited for (within `duration`) instead of
    /// failing the watch at once: `wait_for_file = true` on the step.
    pub wait_for_file: bool,
}

/// What the engine hears while a watch runs.
pub trait WatchObserver {
    fn on_match(&mut self, line: &str);
    fn on_progress(&mut self, lines: u64, matches: u64);
    /// True once the operator pressed Ctrl-C: the watch stops within [`POLL`].
    fn cancelled(&self) -> bool;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WatchEnd {
    TimeUp,
    Until {
        line: String,
    },
    TooManyMatches,
    Cancelled,
    /// The file did not exist when the watch began, and the step did not say it may appear
    /// later: a mistyped path must not pass as "nothing matched".
    FileMissing,
    /// `wait_for_file`: the file never appeared within the watch's time, so nothing was watched.
    NeverAppeared,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchOutcome {
    pub lines: u64,
    pub bytes: u64,
    pub matches: u64,
    pub end: WatchEnd,
    /// The first [`KEEP_LINES`] matched lines, each cut to [`KEEP_CHARS`] characters.
    pub matched_lines: Vec<String>,
    pub duration_ms: u64,
}

impl WatchOutcome {
    /// The watch ran its course (or saw `until`) without more than `max` matches.
    pub fn passed(&self) -> bool {
        matches!(self.end, WatchEnd::TimeUp | WatchEnd::Until { .. })
    }
}

/// Run a watch to its end. An `Err` means the watch could not be carried out (a bad pattern, an
/// unreadable file, a command that exited early); watching is read-only, so a retry is safe.
pub fn watch(spec: &WatchSpec, obs: &mut dyn WatchObserver) -> Result<WatchOutcome> {
    let scanner = Scanner::new(&spec.fail_on, spec.until.as_deref(), spec.max)?;
    let mut run = Run::new(scanner, spec.duration, obs);
    let end = match &spec.source {
        WatchSource::File(path) => follow::follow(path, spec.wait_for_file, &mut run),
        WatchSource::Command(cmd) => command::follow(cmd, &spec.env, &mut run),
    }
    .context("the watch could not be carried out (it only reads: a retry is safe)")?;
    Ok(run.outcome(end))
}

/// Count the lines of a whole existing file and those matching any of `fail_on`: the matching
/// core of [`watch`] without the following, for benchmarks and one-off checks.
pub fn scan_file(path: &Path, fail_on: &[String]) -> Result<(u64, u64)> {
    let mut scanner = Scanner::new(fail_on, None, u64::MAX)?;
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("cannot open {} to scan it", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = read_some(&mut file, &mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        scanner.feed(&buf[..n], &mut |_| {});
    }
    scanner.finish(&mut |_| {});
    Ok((scanner.lines, scanner.matches))
}

/// `read`, retried on EINTR.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The state one watch shares with its source: scanner, clock, observer.
struct Run<'a> {
    scanner: Scanner,
    started: Instant,
    deadline: Instant,
    last_progress: Instant,
    obs: &'a mut dyn WatchObserver,
}

impl<'a> Run<'a> {
    fn new(scanner: Scanner, duration: Duration, obs: &'a mut dyn WatchObserver) -> Run<'a> {
        let started = Instant::now();
        let deadline =
            started.checked_add(duration).unwrap_or(started + Duration::from_secs(1 << 40));
        Run { scanner, started, deadline, last_progress: started, obs }
    }

    /// Feed bytes from the source; `Some` when the watch is over because of what they held.
    fn feed(&mut self, data: &[u8]) -> Option<WatchEnd> {
        let obs = &mut *self.obs;
        let stop = self.scanner.feed(data, &mut |line| obs.on_match(line));
        self.progress(false);
        stop.map(end_of)
    }

    /// The source ended or was rotated away: its last line counts even without a newline.
    fn finish_stream(&mut self) -> Option<WatchEnd> {
        let obs = &mut *self.obs;
        self.scanner.finish(&mut |line| obs.on_match(line)).map(end_of)
    }

    /// `Some` when the clock or the operator ends the watch.
    fn interrupted(&mut self) -> Option<WatchEnd> {
        self.progress(false);
        if self.obs.cancelled() {
            Some(WatchEnd::Cancelled)
        } else if Instant::now() >= self.deadline {
            Some(WatchEnd::TimeUp)
        } else {
            None
        }
    }

    /// How long to sleep before the next poll: [`POLL`], or less near the deadline.
    fn nap(&self) -> Duration {
        POLL.min(self.deadline.saturating_duration_since(Instant::now()))
    }

    fn progress(&mut self, force: bool) {
        if force || self.last_progress.elapsed() >= PROGRESS_EVERY {
            self.last_progress = Instant::now();
            self.obs.on_progress(self.scanner.lines, self.scanner.matches);
        }
    }

    fn outcome(mut self, end: WatchEnd) -> WatchOutcome {
        self.progress(true);
        let s = self.scanner;
        WatchOutcome {
            lines: s.lines,
            bytes: s.bytes,
            matches: s.matches,
            end,
            matched_lines: s.matched_lines,
            duration_ms: self.started.elapsed().as_millis() as u64,
        }
    }
}

fn end_of(stop: Stop) -> WatchEnd {
    match stop {
        Stop::TooMany => WatchEnd::TooManyMatches,
        Stop::Until(line) => WatchEnd::Until { line },
    }
}

/// Shows matching lines and progress to the operator, keeps them in the step log, and stops the
/// watch on Ctrl-C.
struct EngineObserver<'a, 'c> {
    ctx: &'a super::StepContext<'c>,
    log: std::io::BufWriter<std::fs::File>,
}

impl WatchObserver for EngineObserver<'_, '_> {
    fn on_match(&mut self, line: &str) {
        let line = self.ctx.masker.mask(line);
        let _ = std::io::Write::write_all(&mut self.log, format!("{line}\n").as_bytes());
        let shown = crate::term::escape(&line);
        self.ctx.ui.say(&format!("  {} {shown}", self.ctx.ui.bad("match:")));
    }

    fn on_progress(&mut self, lines: u64, matches: u64) {
        self.ctx.ui.set_spinner_message(format!("watching: {lines} lines seen, {matches} matches"));
    }

    fn cancelled(&self) -> bool {
        self.ctx.interrupt.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Run a watch step for the engine.
pub fn run(spec: &WatchSpec, ctx: &super::StepContext<'_>) -> Result<super::StepResult> {
    let file = crate::private::create(ctx.log_path)
        .with_context(|| format!("cannot create the step log {}", ctx.log_path.display()))?;
    let mut obs = EngineObserver { ctx, log: std::io::BufWriter::new(file) };
    let started = Instant::now();
    let outcome = masked(watch(spec, &mut obs)?, ctx.masker);
    std::io::Write::flush(&mut obs.log).context("cannot write the step log")?;
    let (result, check) = verdict(spec, &outcome);
    Ok(super::StepResult {
        outcome: result,
        exit_code: None,
        duration: started.elapsed(),
        check: ctx.masker.mask(&check).into_owned(),
        output_tail: outcome.matched_lines.join("\n"),
        details: serde_json::to_value(&outcome).ok(),
    })
}

/// The step's outcome and what it saw, in words.
fn verdict(spec: &WatchSpec, outcome: &WatchOutcome) -> (crate::journal::Outcome, String) {
    use crate::journal::Outcome;
    let patterns = spec.fail_on.join(" | ");
    let seen = format!("{} lines, {} matching {patterns}", outcome.lines, outcome.matches);
    let file = match &spec.source {
        WatchSource::File(path) => crate::term::path(path),
        WatchSource::Command(_) => String::new(),
    };
    let took = crate::runbook::duration::human(spec.duration);
    match &outcome.end {
        WatchEnd::TimeUp => {
            (Outcome::Ok, format!("watched the whole time: {seen} (at most {} allowed)", spec.max))
        }
        WatchEnd::Until { line } => {
            (Outcome::Ok, format!("ended early on until: {line:?}; {seen}"))
        }
        WatchEnd::Cancelled => (Outcome::Interrupted, format!("interrupted; {seen}")),
        WatchEnd::TooManyMatches => {
            (Outcome::Failed, format!("{seen}, more than the {} allowed", spec.max))
        }
        WatchEnd::FileMissing => (
            Outcome::Failed,
            format!(
                "{file} does not exist, so there was nothing to watch (is the path right? if the file only appears later, set wait_for_file = true on the step; a retry is safe)"
            ),
        ),
        WatchEnd::NeverAppeared => (
            Outcome::Failed,
            format!(
                "{file} never appeared in {took} (wait_for_file), so nothing was watched (a retry is safe)"
            ),
        ),
    }
}

/// The outcome as it may be recorded: matched lines and the `until` line masked, since the
/// journal, `show --json`, the note and the team stream all read it.
fn masked(mut outcome: WatchOutcome, masker: &crate::secret::Masker) -> WatchOutcome {
    for line in &mut outcome.matched_lines {
        *line = masker.mask(line).into_owned();
    }
    if let WatchEnd::Until { line } = &mut outcome.end {
        *line = masker.mask(line).into_owned();
    }
    outcome
}
