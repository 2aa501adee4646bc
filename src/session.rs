//! What every command that writes to a run needs, in one place and in one order: the run lock
//! and the team's lock taken *before* the run's state is read (so two rollbacks, or a rollback
//! and a resume, never both act on the same state), the journal opened with its team mirror and
//! a torn tail cut off, `lock_taken` journalled, and the signal handlers installed.

use std::path::Path;

use anyhow::Result;

use crate::Refused;
use crate::journal::lock::{self, Holder, RunLock};
use crate::journal::{Event, RunStarted, RunState, Writer, reader, shared};
use crate::signals;

/// A run opened for writing. The locks are held until it is dropped.
pub struct Session {
    pub state: RunState,
    pub journal: Writer,
    pub locks: Locks,
}

/// The locks a session holds; dropping them releases them.
pub struct Locks {
    pub run: RunLock,
    team: Option<shared::RedisLock>,
}

/// Where a run's team services are, when its runbook has them (`[lock]`, `[store]`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Team<'a> {
    pub lock_redis: Option<&'a str>,
    pub store_redis: Option<&'a str>,
}

impl Session {
    /// A new run: take the locks, then write `run_started` and the events that must precede the
    /// first step (a gate override).
    pub fn start(
        state_dir: &Path,
        run_dir: &Path,
        started: RunStarted,
        team: Team<'_>,
        preamble: Vec<Event>,
    ) -> Result<Session> {
        let locks = Locks::take(state_dir, &started, team)?;
        let mut journal = Writer::open(&run_dir.join("journal.jsonl"), 0)?;
        mirror(&mut journal, team, &started);
        let first = journal.append(Event::RunStarted(started))?;
        let mut state = reader::from_records(run_dir, vec![first])?;
        for event in locks.taken_event().into_iter().chain(preamble) {
            state.apply(journal.append(event)?);
        }
        signals::install();
        Ok(Session { state, journal, locks })
    }

    /// An existing run (`resume`, `rollback`): its first event names the lock; the lock is taken,
    /// and only then is the state read. A damaged line that is not the last refuses, unless the
    /// operator accepts it (journalled).
    pub fn reopen(
        state_dir: &Path,
        run_dir: &Path,
        started: &RunStarted,
        team: Team<'_>,
        accept_damage: bool,
    ) -> Result<Session> {
        let locks = Locks::take(state_dir, started, team)?;
        let state = reader::read(run_dir)?;
        refuse_damage(&state, accept_damage)?;
        let mut journal = Writer::open(&run_dir.join("journal.jsonl"), state.last_seq)?;
        mirror(&mut journal, team, started);
        let mut session = Session { state, journal, locks };
        if session.journal.dropped_tail > 0 {
            let bytes = session.journal.dropped_tail;
            session.record(Event::TornTailDropped { bytes })?;
        }
        if accept_damage && !session.state.damaged.is_empty() {
            let lines = session.state.damaged.clone();
            session.record(Event::DamageAccepted { lines })?;
        }
        if let Some(event) = session.locks.taken_event() {
            session.record(event)?;
        }
        signals::install();
        Ok(session)
    }

    fn record(&mut self, event: Event) -> Result<()> {
        let record = self.journal.append(event)?;
        self.state.apply(record);
        Ok(())
    }
}

impl Locks {
    fn take(state_dir: &Path, started: &RunStarted, team: Team<'_>) -> Result<Locks> {
        let holder = Holder {
            operator: crate::operator(),
            host: crate::host(),
            pid: std::process::id(),
            since: chrono::Utc::now(),
            run_id: started.run_id.clone(),
        };
        let env = started.env.as_deref();
        let run = lock::acquire(&lock::lock_path(state_dir, &started.name, env), &holder)?;
        let team = match team.lock_redis {
            Some(url) => Some(shared::acquire(url, &started.name, env, &holder)?),
            None => None,
        };
        Ok(Locks { run, team })
    }

    /// `lock_taken`, when the team's lock is held: its fencing token orders every holder ever.
    fn taken_event(&self) -> Option<Event> {
        self.team.as_ref().map(|t| Event::LockTaken {
            redis: crate::secret::redact(t.url()).into_owned(),
            fencing_token: t.fencing_token,
        })
    }
}

fn mirror(journal: &mut Writer, team: Team<'_>, started: &RunStarted) {
    if let Some(url) = team.store_redis {
        journal.mirror_to(shared::Mirror::connect(url, &started.name, &started.run_id));
    }
}

/// Lines that cannot be read in the middle of a journal are damage, not a crash: the steps they
/// described may be missing from the state, and going on could skip or repeat one.
fn refuse_damage(state: &RunState, accept: bool) -> Result<()> {
    if state.damaged.is_empty() || accept {
        return Ok(());
    }
    let lines: Vec<String> = state.damaged.iter().map(|n| n.to_string()).collect();
    Err(Refused(format!(
        "the journal of run {} has lines that cannot be read: {} (not a torn last line, which a crash can leave, but damage). The steps they described may be missing, so going on could skip an undo or repeat a step. Look at {}, repair it if you can, or pass --accept-damaged-journal to go on with what can be read (this is recorded). Nothing was run",
        state.id,
        lines.join(", "),
        state.dir.join("journal.jsonl").display()
    ))
    .into())
}
