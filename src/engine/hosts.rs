//! Steps `on` a group of hosts, inside the engine: a block rolled out by `crate::fleet`, every
//! start and finish journalled with its host (the journal keeps one writer: the workers hand
//! their events to this thread), the failure budget's verdict turned into the usual failure
//! policy, and the rollback of a host's steps run over ssh on that host: per host newest step
//! first, hosts in reverse batch order.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;

use super::operator::{ABORT, Answer, Question, ROLLBACK, RUN, SKIP};
use super::rollback::Undo;
use super::{Engine, Next};
use crate::fleet::{BlockOutcome, BlockRun, Fleet, HostEnd, Report};
use crate::journal::{Event, Outcome};
use crate::plan::{HostWork, Plan, PlannedStep, Work};
use crate::rollout::{Block, all_hosts, blocks};
use crate::runbook::model::RollbackScope;
use crate::runner::LOCAL;
use crate::runner::ssh::SshOptions;
use crate::signals;
use crate::steps::{StepContext, StepResult};

/// Where each host stands after the journal so far.
#[derive(Debug, Default)]
pub struct HostTable {
    /// Hosts that failed (a step failed on them, or they could not be reached), in order.
    pub failed: Vec<String>,
    /// (step, host) pairs whose last attempt passed.
    pub ok: BTreeSet<(usize, String)>,
}

/// The hosts' standing, from the journal's events alone.
pub fn host_table(records: &[crate::journal::Record]) -> HostTable {
    let mut last: BTreeMap<String, bool> = BTreeMap::new();
    let mut table = HostTable::default();
    for r in records {
        match &r.event {
            Event::StepFinished { step, target, outcome, .. } if target != LOCAL => {
                let ok = *outcome == Outcome::Ok;
                last.insert(target.clone(), ok);
                if ok {
                    table.ok.insert((*step, target.clone()));
                } else {
                    table.ok.remove(&(*step, target.clone()));
                }
            }
            Event::HostUnreachable { target, .. } => {
                last.insert(target.clone(), false);
            }
            Event::RollbackFinished { step, target, ok: true, .. } if target != LOCAL => {
                table.ok.remove(&(*step, target.clone()));
            }
            _ => {}
        }
    }
    table.failed = last.into_iter().filter(|(_, ok)| !ok).map(|(h, _)| h).collect();
    table
}

impl Engine<'_> {
    /// The block that `idx` starts (a step `on` a group, up to `end`), rolled out over its
    /// hosts. Returns what comes next and the index after the block.
    pub(super) fn hosts_block(&mut self, idx: usize, end: usize) -> Result<(Next, usize)> {
        let plan = self.plan();
        let all = blocks(&plan.steps);
        let Some(mut block) = all.iter().find(|b| b.steps.contains(&idx)).cloned() else {
            anyhow::bail!("step {} is on hosts but in no block (a bug)", plan.steps[idx].number);
        };
        block.steps.retain(|i| *i >= idx && *i < end);
        let after = block.steps.last().map_or(idx + 1, |i| i + 1);
        self.show_block(plan, &block);
        let (first, last) = numbers(plan, &block);
        let q = Question {
            text: &format!(
                "Run steps {first}-{last} on {} hosts of {}?",
                block.hosts.len(),
                block.group
            ),
            choices: &[RUN, SKIP, ABORT],
            unattended: Some(RUN),
        };
        match self.ask_and_record(Some(first), q, true)? {
            Answer::Chose(RUN) => {}
            Answer::Chose(SKIP) => {
                self.incomplete = true;
                for i in &block.steps {
                    let reason = "skipped by the operator".to_string();
                    self.record(Event::StepSkipped { step: plan.steps[*i].number, reason })?;
                }
                return Ok((Next::Continue, after));
            }
            Answer::Interrupted => return Ok((Next::Stop(self.interrupted(None)?), after)),
            Answer::Chose(_) => return Ok((Next::Stop(self.abort(first)?), after)),
        }
        Ok((self.run_hosts(plan, &block, false)?, after))
    }

    /// Roll a block out and apply the budget's verdict. `retry`: the failed hosts' second
    /// chance (`resume --failed-hosts`): they are not left out, and their earlier failures do not
    /// count against the budget again.
    fn run_hosts(&mut self, plan: &Plan, block: &Block, retry: bool) -> Result<Next> {
        let total = all_hosts(&blocks(&plan.steps)).len();
        let outcome = self.roll_out(plan, block, plan.rollout.budget(total), retry)?;
        self.after_rollout(plan, block, &outcome, total)
    }

    /// `runbook resume RUN --failed-hosts`: every block again, on the hosts that failed only,
    /// each from the step it failed at. Steps that run here are not run again.
    pub fn resume_failed_hosts(&mut self) -> Result<super::RunEnd> {
        let failed = host_table(&self.state.records).failed;
        let id = self.state.id.clone();
        if failed.is_empty() {
            return Err(crate::Refused(format!("run {id} has no failed hosts to retry")).into());
        }
        if self.state.rolling_back {
            return Err(crate::Refused(format!(
                "run {id} was rolled back (or is rolling back); its failed hosts are not retried. `runbook resume {id}` finishes a rollback"
            ))
            .into());
        }
        self.say(&format!("Retrying the failed hosts of run {id}: {}", failed.join(", ")));
        self.record_takeover("resume", None)?;
        let plan = self.plan();
        for mut block in blocks(&plan.steps) {
            block.hosts.retain(|h| failed.contains(h));
            if block.hosts.is_empty() {
                continue;
            }
            self.show_block(plan, &block);
            if let Next::Stop(end) = self.run_hosts(plan, &block, true)? {
                return self.finish(end);
            }
        }
        self.finish(super::RunEnd::SUCCEEDED)
    }

    /// Whether the step at `idx` runs on hosts.
    pub(super) fn on_hosts(&self, idx: usize) -> bool {
        self.plan.and_then(|p| p.steps.get(idx)).is_some_and(|s| s.on.is_some())
    }

    /// A run stopped inside a block of host steps: the block goes on from its start, per host.
    /// A host whose step was in flight runs that step again; a host that finished a step does not
    /// run it again; a host that failed stays failed (`resume --failed-hosts` retries those).
    pub(super) fn resume_hosts(&mut self, idx: usize, end: usize) -> Result<Next> {
        let plan = self.plan();
        let start = blocks(&plan.steps)
            .into_iter()
            .find(|b| b.steps.contains(&idx))
            .and_then(|b| b.steps.first().copied())
            .unwrap_or(idx);
        let table = host_table(&self.state.records);
        let done: BTreeSet<&str> = table.ok.iter().map(|(_, h)| h.as_str()).collect();
        self.say(&format!(
            "  step {} stopped on hosts; going on per host ({} hosts had finished a step, {} failed)",
            plan.steps[idx].number,
            done.len(),
            table.failed.len()
        ));
        self.forward(start..end)
    }

    fn show_block(&self, plan: &Plan, block: &Block) {
        let (first, last) = numbers(plan, block);
        let head =
            format!("▶ steps {first}-{last} on {} ({} hosts)", block.group, block.hosts.len());
        self.say(&self.ui.bold(&head));
        for i in &block.steps {
            let s = &plan.steps[*i];
            self.say(&format!(
                "  {}. {}  $ {}",
                s.number,
                s.title,
                self.masker.mask(&s.work.summary())
            ));
        }
        let total = all_hosts(&blocks(&plan.steps)).len();
        self.say(&self.ui.dim(&format!("  {}", plan.rollout.describe(total))));
    }

    /// Journal the rollout's shape, then run it, journalling every report as it comes.
    fn roll_out(
        &mut self,
        plan: &Plan,
        block: &Block,
        budget: usize,
        retry: bool,
    ) -> Result<BlockOutcome> {
        let table = host_table(&self.state.records);
        let batches: Vec<Vec<String>> =
            plan.rollout.batches(&block.hosts).iter().map(|b| b.to_vec()).collect();
        self.record(Event::RolloutStarted {
            group: block.group.clone(),
            steps: block.steps.iter().map(|i| plan.steps[*i].number).collect(),
            batches,
            budget,
            ssh_config: plan.ssh.config.as_ref().map(|p| p.display().to_string()),
            connect_timeout_ms: millis(plan.ssh.connect_timeout),
            keepalive_ms: millis(plan.ssh.alive_interval),
            rollback: plan.rollout.rollback,
        })?;
        self.sync()?;
        let fleet = self.take_fleet()?;
        let done = block
            .steps
            .iter()
            .flat_map(|i| block.hosts.iter().map(move |h| (*i, h.clone())))
            .filter(|(i, h)| table.ok.contains(&(plan.steps[*i].number, h.clone())))
            .collect();
        let skip: BTreeSet<String> =
            if retry { BTreeSet::new() } else { table.failed.iter().cloned().collect() };
        let env = self.env.clone();
        let run = BlockRun {
            plan,
            block,
            fleet: &fleet,
            env: &env,
            run_dir: self.run_dir(),
            done,
            failed_before: skip.len(),
            skip,
            budget,
            interrupt: &signals::INTERRUPTED,
        };
        let ui = self.ui;
        let outcome = crate::fleet::run_block(&run, ui, &mut |r| self.record_report(plan, r));
        self.hosts = Some(fleet);
        outcome
    }

    fn take_fleet(&mut self) -> Result<Fleet> {
        match self.hosts.take() {
            Some(fleet) => Ok(fleet),
            None => Fleet::new(self.ssh_options()),
        }
    }

    /// How hosts are reached: this run's plan, or (rolling back a past run) what its journal
    /// recorded when its hosts were first used.
    fn ssh_options(&self) -> SshOptions {
        if let Some(plan) = self.plan {
            return plan.ssh.clone();
        }
        let recorded = self.state.records.iter().rev().find_map(|r| match &r.event {
            Event::RolloutStarted { ssh_config, connect_timeout_ms, keepalive_ms, .. } => {
                Some((ssh_config.clone(), *connect_timeout_ms, *keepalive_ms))
            }
            _ => None,
        });
        let defaults = SshOptions::default();
        match recorded {
            Some((config, connect, keepalive)) => SshOptions {
                config: config.map(Into::into),
                connect_timeout: Duration::from_millis(connect),
                alive_interval: Duration::from_millis(keepalive),
                ..defaults
            },
            None => defaults,
        }
    }

    /// One worker's report, journalled: a start is durable before the worker goes on.
    fn record_report(&mut self, plan: &Plan, report: &Report) -> Result<()> {
        match report {
            Report::Unreachable { host, reason } => {
                let step = plan.steps.iter().find(|s| on_host(s, host).is_some());
                self.record(Event::HostUnreachable {
                    step: step.map_or(0, |s| s.number),
                    target: host.clone(),
                    reason: reason.clone(),
                })
            }
            Report::Started { host, step, attempt, log } => {
                let hw = plan.steps.get(step - 1).and_then(|s| on_host(s, host));
                let Some(hw) = hw else { anyhow::bail!("step {step} has no host {host}") };
                self.record(Event::StepStarted {
                    step: *step,
                    target: host.clone(),
                    attempt: *attempt,
                    work: hw.work.clone(),
                    rollback: hw.rollback.clone(),
                    verify: hw.verify_rollback.clone(),
                    log: log.clone(),
                })?;
                self.sync()
            }
            Report::Finished { host, step, attempt, result } => {
                self.record_host_finish(host, *step, *attempt, result)
            }
        }
    }

    fn record_host_finish(
        &mut self,
        host: &str,
        step: usize,
        attempt: u32,
        r: &StepResult,
    ) -> Result<()> {
        self.record(Event::StepFinished {
            step,
            target: host.to_string(),
            attempt,
            outcome: r.outcome,
            exit_code: r.exit_code,
            duration_ms: r.duration.as_millis() as u64,
            check: self.masker.mask(&r.check).into_owned(),
            output_tail: r.output_tail.clone(),
            details: r.details.clone(),
        })?;
        if r.outcome != Outcome::Ok {
            for line in r.output_tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev() {
                self.say(&format!("    {host} | {line}"));
            }
        }
        Ok(())
    }

    /// The budget's verdict: go on, or the usual failure policy (unattended: roll back).
    fn after_rollout(
        &mut self,
        plan: &Plan,
        block: &Block,
        outcome: &BlockOutcome,
        total: usize,
    ) -> Result<Next> {
        let (first, last) = numbers(plan, block);
        if let Some(step) = outcome.interrupted() {
            return Ok(Next::Stop(self.interrupted(Some(step))?));
        }
        let table = host_table(&self.state.records);
        let budget = plan.rollout.budget(total);
        let failed = &table.failed;
        let done = outcome.hosts.iter().filter(|(_, e)| *e == HostEnd::Done).count();
        let mut line = format!("  steps {first}-{last} on {}: {done} hosts ok", block.group);
        if !failed.is_empty() {
            line.push_str(&format!(
                "; {} failed over the run ({}), the budget allows {budget}",
                failed.len(),
                failed.join(", ")
            ));
        }
        if !outcome.exceeded {
            self.say(&line);
            return Ok(Next::Continue);
        }
        self.say(&self.ui.bad(&line));
        if !outcome.not_started.is_empty() {
            self.say(&format!("  not started: {}", outcome.not_started.join(", ")));
        }
        self.show_state();
        let q = Question {
            text: &format!("{} hosts failed, over the budget of {budget}. What now?", failed.len()),
            choices: &[ROLLBACK, ABORT],
            unattended: Some(ROLLBACK),
        };
        match self.ask(Some(first), q)? {
            Answer::Chose(ROLLBACK) => {
                let reason = format!(
                    "{} hosts failed on steps {first}-{last} ({}), over the budget of {budget}",
                    failed.len(),
                    failed.join(", ")
                );
                Ok(Next::Stop(self.rollback(&reason)?))
            }
            Answer::Interrupted => Ok(Next::Stop(self.interrupted(Some(first))?)),
            Answer::Chose(_) => Ok(Next::Stop(self.abort(first)?)),
        }
    }

    /// The rollback order with hosts in their place: each run of host steps regrouped per host
    /// (newest step first), hosts in reverse order of their first step (reverse batch order);
    /// with `[rollout] rollback = "failed"`, only the failed hosts. Host steps get the rollback
    /// their host recorded.
    pub(super) fn host_order(&self, order: Vec<Undo>) -> Vec<Undo> {
        let failed_only = self.rollback_scope() == RollbackScope::Failed;
        let failed: BTreeSet<String> = host_table(&self.state.records).failed.into_iter().collect();
        let mut out = Vec::with_capacity(order.len());
        let mut run: Vec<Undo> = Vec::new();
        for mut undo in order {
            if undo.target == LOCAL {
                out.extend(regroup(std::mem::take(&mut run)));
                out.push(undo);
                continue;
            }
            if failed_only && !failed.contains(&undo.target) {
                continue;
            }
            let (work, verify) = self.recorded_on_host(undo.step, &undo.target);
            undo.work = work;
            undo.verify = verify;
            run.push(undo);
        }
        out.extend(regroup(run));
        out
    }

    fn rollback_scope(&self) -> RollbackScope {
        if let Some(plan) = self.plan {
            return plan.rollout.rollback;
        }
        self.state
            .records
            .iter()
            .rev()
            .find_map(|r| match &r.event {
                Event::RolloutStarted { rollback, .. } => Some(*rollback),
                _ => None,
            })
            .unwrap_or(RollbackScope::All)
    }

    /// The rollback and verification recorded when `step` last started on `host`.
    fn recorded_on_host(&self, step: usize, host: &str) -> (Option<Work>, Option<Work>) {
        self.state
            .records
            .iter()
            .rev()
            .find_map(|r| match &r.event {
                Event::StepStarted { step: s, target, rollback, verify, .. }
                    if *s == step && target == host =>
                {
                    Some((rollback.clone(), verify.clone()))
                }
                _ => None,
            })
            .unwrap_or((None, None))
    }

    /// Run a rollback (or its verification) of a host step on that host, to the end.
    pub(super) fn run_on_host(
        &mut self,
        host: &str,
        step: usize,
        work: &Work,
        what: &str,
    ) -> StepResult {
        let fleet = match self.take_fleet() {
            Ok(f) => f,
            Err(e) => return StepResult::could_not_run(&e),
        };
        let result = self.run_with_fleet(&fleet, host, step, work, what);
        self.hosts = Some(fleet);
        result
    }

    fn run_with_fleet(
        &self,
        fleet: &Fleet,
        host: &str,
        step: usize,
        work: &Work,
        what: &str,
    ) -> StepResult {
        let ssh = match fleet.runner(host) {
            Ok(ssh) => ssh,
            Err(e) => return StepResult::could_not_run(&e),
        };
        let mut env = self.env.clone();
        env.push(("RUNBOOK_STEP".into(), step.to_string()));
        env.push(("RUNBOOK_HOST".into(), host.to_string()));
        let log = self.run_dir().join(crate::fleet::log_name(step, host, what));
        let ctx = StepContext {
            runner: &*ssh,
            ui: self.ui,
            masker: &self.masker,
            env: &env,
            interrupt: &signals::NEVER,
            log_path: &log,
            echo: true,
            run_dir: None,
            step,
        };
        self.ui.start_spinner(&format!("{what} of step {step} on {host}"));
        let result = crate::steps::execute(work, &crate::runbook::Expect::default(), &ctx);
        self.ui.finish_spinner();
        result.unwrap_or_else(|e| StepResult::could_not_run(&e))
    }
}

impl Undo {
    /// The step as shown in lists: `3`, or `3 on web-1` for a step that ran on a host.
    pub(super) fn label(&self) -> String {
        match self.target.as_str() {
            LOCAL => self.step.to_string(),
            host => format!("{} on {host}", self.step),
        }
    }
}

/// A run of host undos, regrouped: hosts in reverse order of first appearance (the list is newest
/// first, so the host that started last comes first), each host's steps newest first.
fn regroup(run: Vec<Undo>) -> Vec<Undo> {
    let mut hosts: Vec<String> = Vec::new();
    for u in run.iter().rev() {
        if !hosts.contains(&u.target) {
            hosts.push(u.target.clone());
        }
    }
    hosts.reverse();
    let mut out = Vec::with_capacity(run.len());
    let mut rest = run;
    for host in hosts {
        let (mine, others): (Vec<Undo>, Vec<Undo>) =
            rest.into_iter().partition(|u| u.target == host);
        out.extend(mine);
        rest = others;
    }
    out
}

fn on_host<'p>(step: &'p PlannedStep, host: &str) -> Option<&'p HostWork> {
    step.on.as_ref().and_then(|on| on.hosts.iter().find(|h| h.host == host))
}

fn numbers(plan: &Plan, block: &Block) -> (usize, usize) {
    let n = |i: Option<&usize>| i.map_or(0, |i| plan.steps[*i].number);
    (n(block.steps.first()), n(block.steps.last()))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
