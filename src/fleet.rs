//! Steps `on` a group of hosts. A block (consecutive steps on the same group) runs per batch of
//! hosts, canary first: every host of a batch runs the whole block before the next batch starts,
//! up to `concurrency` hosts at once. A failure budget counts failed hosts over the whole run
//! (an unreachable host is a failed host); once it is exceeded no new host starts, the hosts in
//! flight finish, and the engine applies its usual failure policy.
//!
//! Hosts run on worker threads; everything that must be durable or shown (a step's start and
//! finish, a host found unreachable) is handed to the engine's thread, which journals it and
//! answers before the worker goes on, so the journal stays the one writer's and every start is on
//! disk before its step runs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::journal::Outcome;
use crate::plan::{HostWork, Plan, PlannedStep};
use crate::rollout::Block;
use crate::runner::ssh::{Masters, Ssh, SshOptions};
use crate::steps::{self, StepContext, StepResult};
use crate::ui::Ui;

/// The hosts of a run: one ssh runner per host, over the run's masters.
pub struct Fleet {
    masters: Arc<Masters>,
    hosts: Mutex<BTreeMap<String, Arc<Ssh>>>,
}

impl Fleet {
    pub fn new(options: SshOptions) -> Result<Fleet> {
        Ok(Fleet { masters: Masters::new(options)?, hosts: Mutex::new(BTreeMap::new()) })
    }

    /// The runner of `host`, made on first use.
    pub fn runner(&self, host: &str) -> Result<Arc<Ssh>> {
        let mut hosts = self.hosts.lock().map_err(|_| anyhow!("a host thread panicked"))?;
        if let Some(ssh) = hosts.get(host) {
            return Ok(Arc::clone(ssh));
        }
        let ssh = Arc::new(self.masters.host(host)?);
        hosts.insert(host.to_string(), Arc::clone(&ssh));
        Ok(ssh)
    }

    /// Close every master (also done when the fleet is dropped).
    pub fn close(&self) {
        self.masters.close_all();
    }
}

/// What a host's worker hands to the engine's thread, and waits on.
#[derive(Debug)]
pub enum Report {
    /// The host could not be reached: nothing ran there. It counts as failed.
    Unreachable { host: String, reason: String },
    /// A step is about to start on a host: journal it (durably) first.
    Started { host: String, step: usize, attempt: u32, log: String },
    /// A step ended on a host.
    Finished { host: String, step: usize, attempt: u32, result: StepResult },
}

/// How one host's turn at a block ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEnd {
    /// Every step of the block passed.
    Done,
    /// A step failed (after its retries), or the host could not be reached: why, in words.
    Failed { step: Option<usize>, why: String },
    /// Stopped by Ctrl-C or SIGTERM.
    Interrupted { step: usize },
}

/// What a block's rollout came to.
#[derive(Debug, Default)]
pub struct BlockOutcome {
    /// Each host that had its turn, in the order hosts finished.
    pub hosts: Vec<(String, HostEnd)>,
    /// Hosts that never started: the budget was exceeded or the run was interrupted first.
    pub not_started: Vec<String>,
    /// More hosts failed over the run than the budget allows.
    pub exceeded: bool,
}

impl BlockOutcome {
    pub fn failed(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .filter(|(_, e)| matches!(e, HostEnd::Failed { .. }))
            .map(|(h, _)| h.as_str())
            .collect()
    }

    pub fn interrupted(&self) -> Option<usize> {
        self.hosts.iter().find_map(|(_, e)| match e {
            HostEnd::Interrupted { step } => Some(*step),
            _ => None,
        })
    }
}

/// Everything one block's rollout needs.
pub struct BlockRun<'a> {
    pub plan: &'a Plan,
    pub block: &'a Block,
    pub fleet: &'a Fleet,
    /// The secrets and `RUNBOOK_*` values every step gets.
    pub env: &'a [(String, String)],
    pub run_dir: PathBuf,
    /// (step index, host) pairs already done in this run (a resume): not run again.
    pub done: BTreeSet<(usize, String)>,
    /// Hosts that are left out: failed earlier in the run (they count in `failed_before`).
    pub skip: BTreeSet<String>,
    /// Hosts that failed earlier in the run.
    pub failed_before: usize,
    /// How many failed hosts the whole run may have.
    pub budget: usize,
    pub interrupt: &'static AtomicBool,
}

/// A report and the way to answer it.
type Envelope = (Report, mpsc::Sender<Result<()>>);

/// Roll the block out over its hosts, batch by batch. `on_report` runs on this thread for every
/// report, in order; an error from it stops the workers at their next report.
pub fn run_block(
    run: &BlockRun<'_>,
    ui: &Ui,
    on_report: &mut dyn FnMut(&Report) -> Result<()>,
) -> Result<BlockOutcome> {
    let hosts: Vec<String> =
        run.block.hosts.iter().filter(|h| !run.skip.contains(*h)).cloned().collect();
    let batches = run.plan.rollout.batches(&hosts);
    let mut outcome = BlockOutcome::default();
    let stop = AtomicBool::new(false);
    let count = batches.len();
    for (n, batch) in batches.into_iter().enumerate() {
        if stop.load(Ordering::SeqCst) || run.interrupt.load(Ordering::SeqCst) {
            outcome.not_started.extend(batch.iter().cloned());
            continue;
        }
        ui.say(&ui.bold(&format!(
            "  batch {}/{count} on {}: {}",
            n + 1,
            run.block.group,
            batch.join(", ")
        )));
        let ends = run_batch(run, batch, &stop, &outcome, ui, on_report)?;
        summarize_batch(ui, n + 1, &ends);
        for (host, end) in ends {
            match end {
                Some(end) => outcome.hosts.push((host, end)),
                None => outcome.not_started.push(host),
            }
        }
    }
    outcome.exceeded = run.failed_before + outcome.failed().len() > run.budget;
    Ok(outcome)
}

fn summarize_batch(ui: &Ui, n: usize, ends: &[(String, Option<HostEnd>)]) {
    let ok = ends.iter().filter(|(_, e)| *e == Some(HostEnd::Done)).count();
    let failed: Vec<&str> = ends
        .iter()
        .filter(|(_, e)| matches!(e, Some(HostEnd::Failed { .. })))
        .map(|(h, _)| h.as_str())
        .collect();
    let skipped = ends.iter().filter(|(_, e)| e.is_none()).count();
    let mut line = format!("  batch {n}: {ok} ok");
    if !failed.is_empty() {
        line.push_str(&format!(", {} failed ({})", failed.len(), failed.join(", ")));
    }
    if skipped > 0 {
        line.push_str(&format!(", {skipped} not started"));
    }
    let line = if failed.is_empty() { ui.good(&line) } else { ui.bad(&line) };
    ui.say(&line);
}

/// One batch: workers take hosts from a queue until it is empty or the run must stop. Returns
/// each host with how it ended (`None`: never started).
fn run_batch(
    run: &BlockRun<'_>,
    batch: &[String],
    stop: &AtomicBool,
    so_far: &BlockOutcome,
    ui: &Ui,
    on_report: &mut dyn FnMut(&Report) -> Result<()>,
) -> Result<Vec<(String, Option<HostEnd>)>> {
    let queue = Mutex::new(batch.iter().cloned().collect::<VecDeque<String>>());
    let ends: Mutex<Vec<(String, Option<HostEnd>)>> = Mutex::new(Vec::new());
    let failed = std::sync::atomic::AtomicUsize::new(run.failed_before + so_far.failed().len());
    let workers = run.plan.rollout.concurrency.min(batch.len()).max(1);
    let (tx, rx) = mpsc::channel::<Envelope>();
    let mut live = Live::new(ui, batch);
    let result = std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (queue, ends, failed) = (&queue, &ends, &failed);
            scope.spawn(move || {
                while let Some(host) = next_host(queue, stop, run.interrupt) {
                    let end = run_host(run, &host, &tx);
                    if matches!(end, HostEnd::Failed { .. })
                        && failed.fetch_add(1, Ordering::SeqCst) + 1 > run.budget
                    {
                        // Over budget: no new host starts; those in flight finish.
                        stop.store(true, Ordering::SeqCst);
                    }
                    lock(ends).push((host, Some(end)));
                }
            });
        }
        drop(tx);
        serve(&rx, &mut live, on_report)
    });
    live.clear();
    result?;
    let mut ends = ends.into_inner().unwrap_or_default();
    let queue = queue.into_inner().unwrap_or_default();
    ends.extend(queue.into_iter().map(|h| (h, None)));
    Ok(ends)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn next_host(
    queue: &Mutex<VecDeque<String>>,
    stop: &AtomicBool,
    interrupt: &AtomicBool,
) -> Option<String> {
    if stop.load(Ordering::SeqCst) || interrupt.load(Ordering::SeqCst) {
        return None;
    }
    lock(queue).pop_front()
}

/// The engine's side: every report handled in order, each worker answered, the live lines kept
/// up to date, until every worker is done. After an error the workers are told to stop.
fn serve(
    rx: &mpsc::Receiver<Envelope>,
    live: &mut Live,
    on_report: &mut dyn FnMut(&Report) -> Result<()>,
) -> Result<()> {
    let mut failure: Option<anyhow::Error> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((report, answer)) => {
                let result = match &failure {
                    Some(e) => Err(anyhow!("the run stopped: {e:#}")),
                    None => on_report(&report),
                };
                live.update(&report);
                if let Err(e) = &result
                    && failure.is_none()
                {
                    failure = Some(anyhow!("{e:#}"));
                }
                let _ = answer.send(result);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => live.tick(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Send a report to the engine's thread and wait until it is handled.
fn report(tx: &mpsc::Sender<Envelope>, report: Report) -> Result<()> {
    let (answer_tx, answer_rx) = mpsc::channel();
    tx.send((report, answer_tx)).map_err(|_| anyhow!("the run has stopped"))?;
    answer_rx.recv().map_err(|_| anyhow!("the run has stopped"))?
}

/// One host's turn at the block: connect, then each step in order until one fails.
fn run_host(run: &BlockRun<'_>, host: &str, tx: &mpsc::Sender<Envelope>) -> HostEnd {
    let failed = |step, why: String| HostEnd::Failed { step, why };
    let ssh = match run.fleet.runner(host) {
        Ok(ssh) => ssh,
        Err(e) => return failed(None, format!("{e:#}")),
    };
    if let Err(e) = ssh.connect() {
        let reason = e.reason.clone();
        let _ = report(tx, Report::Unreachable { host: host.to_string(), reason });
        return failed(None, e.to_string());
    }
    for &idx in &run.block.steps {
        if run.done.contains(&(idx, host.to_string())) {
            continue;
        }
        let step = &run.plan.steps[idx];
        let Some(work) = step.on.as_ref().and_then(|on| on.hosts.iter().find(|h| h.host == host))
        else {
            return failed(Some(step.number), "the host is not in this step's group".into());
        };
        match run_step(run, step, work, &ssh, tx) {
            Ok(None) => {}
            Ok(Some(end)) => return end,
            Err(e) => return failed(Some(step.number), format!("{e:#}")),
        }
    }
    HostEnd::Done
}

/// A step on one host, with its retries. `None`: it passed.
fn run_step(
    run: &BlockRun<'_>,
    step: &PlannedStep,
    work: &HostWork,
    ssh: &Ssh,
    tx: &mpsc::Sender<Envelope>,
) -> Result<Option<HostEnd>> {
    let host = &work.host;
    let ui = Ui::new();
    let mut env = run.env.to_vec();
    env.push(("RUNBOOK_STEP".into(), step.number.to_string()));
    env.push(("RUNBOOK_HOST".into(), host.clone()));
    for attempt in 1..=step.retries + 1 {
        let what = if attempt == 1 { "run".to_string() } else { format!("run{attempt}") };
        let log = log_name(step.number, host, &what);
        report(
            tx,
            Report::Started { host: host.clone(), step: step.number, attempt, log: log.clone() },
        )?;
        let ctx = StepContext {
            ui: &ui,
            runner: ssh,
            masker: &run.plan.masker,
            env: &env,
            interrupt: run.interrupt,
            log_path: &run.run_dir.join(&log),
            echo: false,
            run_dir: Some(&run.run_dir),
            step: step.number,
        };
        let result = steps::execute(&work.work, &step.expect, &ctx)
            .unwrap_or_else(|e| StepResult::could_not_run(&e));
        let outcome = result.outcome;
        let why = result.check.clone();
        report(tx, Report::Finished { host: host.clone(), step: step.number, attempt, result })?;
        match outcome {
            Outcome::Ok => return Ok(None),
            Outcome::Interrupted => return Ok(Some(HostEnd::Interrupted { step: step.number })),
            Outcome::Failed | Outcome::TimedOut if attempt > step.retries => {
                return Ok(Some(HostEnd::Failed { step: Some(step.number), why }));
            }
            Outcome::Failed | Outcome::TimedOut => {}
        }
    }
    Ok(None)
}

/// A step's log on a host: `logs/02-web-1-run.log` (host names hold no `/`).
pub fn log_name(step: usize, host: &str, what: &str) -> String {
    let safe: String = host.chars().map(|c| if c == ':' { '_' } else { c }).collect();
    format!("logs/{step:02}-{safe}-{what}.log")
}

/// A live line per host of the current batch (step, elapsed, status) on a terminal; without one,
/// a line per finished step.
struct Live {
    multi: Option<indicatif::MultiProgress>,
    bars: BTreeMap<String, (indicatif::ProgressBar, Instant)>,
}

impl Live {
    fn new(ui: &Ui, batch: &[String]) -> Live {
        let interactive = ui.interactive;
        let mut bars = BTreeMap::new();
        let multi = interactive.then(indicatif::MultiProgress::new);
        if let Some(multi) = &multi {
            let style = indicatif::ProgressStyle::with_template("    {prefix:<16} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
            for host in batch {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(host.clone());
                bar.set_message("waiting");
                bars.insert(host.clone(), (bar, Instant::now()));
            }
        }
        Live { multi, bars }
    }

    fn update(&mut self, report: &Report) {
        let line = match report {
            Report::Unreachable { host, reason } => (host, format!("UNREACHABLE: {reason}"), true),
            Report::Started { host, step, attempt, .. } => {
                if let Some((_, started)) = self.bars.get_mut(host) {
                    *started = Instant::now();
                }
                let again =
                    if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                (host, format!("step {step}{again} running"), false)
            }
            Report::Finished { host, step, result, .. } => {
                let took = crate::runbook::duration::human(result.duration);
                let word = match result.outcome {
                    Outcome::Ok => "ok",
                    Outcome::Failed => "FAILED",
                    Outcome::TimedOut => "TIMED OUT",
                    Outcome::Interrupted => "interrupted",
                };
                (host, format!("step {step} {word} ({}, {took})", result.check), true)
            }
        };
        let (host, text, done) = line;
        match self.bars.get(host) {
            Some((bar, _)) => bar.set_message(text.clone()),
            None if done => {
                // Part of the run's record, on stdout; a closed stdout must not stop a deploy.
                use std::io::Write as _;
                let _ = writeln!(std::io::stdout().lock(), "    {host:<16} {text}");
            }
            None => {}
        }
        if done && let Some(multi) = &self.multi {
            let _ = multi.println(format!("    {host:<16} {text}"));
        }
    }

    /// Elapsed time on every running host's line.
    fn tick(&mut self) {
        for (bar, started) in self.bars.values() {
            let msg = bar.message();
            if let Some(base) = msg
                .strip_suffix(" running")
                .or_else(|| msg.rsplit_once(" running ").map(|(b, _)| b))
            {
                let took = crate::runbook::duration::human(started.elapsed());
                bar.set_message(format!("{base} running {took}"));
            }
        }
    }

    fn clear(&mut self) {
        for (bar, _) in self.bars.values() {
            bar.finish_and_clear();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

/// The note's host-by-step table: each host (in the order it first appears) and, for each step
/// that ran on hosts, where that step stands on that host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostGrid {
    /// Step numbers, in order.
    pub steps: Vec<usize>,
    /// Each host with one cell per step: `ok`, `FAILED`, `rolled back`, `unreachable`, ... or
    /// empty when the step never ran there.
    pub rows: Vec<(String, Vec<String>)>,
}

/// The host-by-step table from a run's events alone.
pub fn host_grid(records: &[crate::journal::Record]) -> HostGrid {
    use crate::journal::Event;
    let mut cells: BTreeMap<(String, usize), String> = BTreeMap::new();
    let mut hosts: Vec<String> = Vec::new();
    let mut steps: BTreeSet<usize> = BTreeSet::new();
    let mut mark = |host: &str, step: usize, what: String| {
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_string());
        }
        steps.insert(step);
        cells.insert((host.to_string(), step), what);
    };
    for r in records {
        match &r.event {
            Event::StepStarted { step, target, .. } if target != crate::runner::LOCAL => {
                mark(target, *step, "in flight".into());
            }
            Event::StepFinished { step, target, outcome, .. } if target != crate::runner::LOCAL => {
                mark(target, *step, outcome_word(*outcome).into());
            }
            Event::RollbackFinished { step, target, ok, .. } if target != crate::runner::LOCAL => {
                mark(target, *step, if *ok { "rolled back" } else { "ROLLBACK FAILED" }.into());
            }
            Event::HostUnreachable { step, target, .. } => {
                mark(target, *step, "unreachable".into())
            }
            _ => {}
        }
    }
    let steps: Vec<usize> = steps.into_iter().collect();
    let rows = hosts
        .into_iter()
        .map(|h| {
            let row =
                steps.iter().map(|s| cells.get(&(h.clone(), *s)).cloned().unwrap_or_default());
            let row = row.collect();
            (h, row)
        })
        .collect();
    HostGrid { steps, rows }
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::Failed => "FAILED",
        Outcome::TimedOut => "TIMED OUT",
        Outcome::Interrupted => "interrupted",
    }
}
