//! Appends events to a run's journal. Each event is one `write` of one line, so a crash of the
//! process can only tear the last line and loses nothing written before it (the kernel holds
//! it). Durability against a power cut is bought with `fdatasync` at the points where the run
//! acts on the world: `sync` is called before a step, a rollback or a prompt goes on, and at the
//! end. A step's finish and the next step's start so share one `fdatasync`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::Utc;

use super::event::{Event, Record};

pub struct Writer {
    file: File,
    /// The team's stream in Redis, when the runbook has `[store]`.
    mirror: Option<super::shared::Mirror>,
    path: PathBuf,
    seq: u64,
    /// Events written since the last `fdatasync`.
    unsynced: bool,
    /// Bytes of a torn last line cut off when the journal was opened.
    pub dropped_tail: u64,
}

impl Writer {
    /// Open (or create) a journal for appending; `seq` continues from the events already there.
    pub fn open(path: &Path, seq: u64) -> Result<Writer> {
        let mut file = crate::private::open(
            path,
            crate::private::options().create(true).read(true).append(true),
        )
        .with_context(|| format!("cannot open the journal {}", path.display()))?;
        let dropped_tail = cut_torn_line(&mut file)
            .with_context(|| format!("cannot repair the journal {}", path.display()))?;
        Ok(Writer {
            file,
            mirror: None,
            path: path.to_path_buf(),
            seq,
            unsynced: false,
            dropped_tail,
        })
    }

    /// Also send every event to the team's stream (best effort: the local journal is the record).
    pub fn mirror_to(&mut self, mirror: super::shared::Mirror) {
        self.mirror = Some(mirror);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write one event (one `write` of one line) and return it as recorded. It is durable
    /// against a crash of this process at once, and against a power cut after the next `sync`.
    pub fn append(&mut self, event: Event) -> Result<Record> {
        self.seq += 1;
        let record = Record { ts: Utc::now(), seq: self.seq, event };
        let mut line = serde_json::to_vec(&record).context("cannot encode a journal event")?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(|e| incomplete(&self.path, &line, &e))?;
        self.unsynced = true;
        if let Some(mirror) = &mut self.mirror {
            mirror.push(&line[..line.len() - 1]);
        }
        if matches!(record.event, Event::RunFinished { .. } | Event::Resumed { .. }) {
            super::index::mark_changed(&self.path);
        }
        fault::after_event();
        Ok(record)
    }

    /// Make every event written so far durable: called before the run acts on what they say.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced {
            self.file.sync_data().map_err(|e| self.failed(e))?;
            self.unsynced = false;
        }
        Ok(())
    }

    fn failed(&self, e: std::io::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot make the journal {} durable ({e}): THE JOURNAL MAY BE INCOMPLETE after a power cut. The run stops here and runs nothing more. Free space (or fix the disk), then look at the run with `runbook show` and go on with `runbook resume` or `runbook rollback`.",
            self.path.display()
        )
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.sync();
    }
}

/// What the operator must know when an event cannot be written: what happened (the event itself,
/// shown since the journal cannot hold it), that the journal is incomplete, and what to do.
fn incomplete(path: &Path, line: &[u8], e: &std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot write the journal {} ({e}). THE JOURNAL IS INCOMPLETE: it ends before this event, which did happen:\n  {}\nThe run stops here and runs nothing more; the terminal above is the only record of the rest. Free space (or fix the file), then look at the run with `runbook show` and go on with `runbook resume` or `runbook rollback` (the last step it recorded as started is then in doubt).",
        path.display(),
        String::from_utf8_lossy(line).trim_end()
    )
}

/// Fault injection for the crash tests: `RUNBOOK_FAULT_KILL_AFTER_EVENT=N` makes the process
/// SIGKILL itself right after its Nth event of this process is on disk, the harshest crash
/// there is, at a point a test can name.
mod fault {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static AFTER: OnceLock<Option<u64>> = OnceLock::new();
    static WRITTEN: AtomicU64 = AtomicU64::new(0);

    pub fn after_event() {
        let limit = AFTER.get_or_init(|| {
            std::env::var("RUNBOOK_FAULT_KILL_AFTER_EVENT").ok().and_then(|v| v.parse().ok())
        });
        let written = WRITTEN.fetch_add(1, Ordering::SeqCst) + 1;
        if *limit == Some(written) {
            // The process kills itself; nothing after this runs.
            let _ =
                nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A crash may have left half a line at the end: an event that never reached the disk whole, so
/// nothing it describes went on. Cut it off (returning how many bytes), so the next event starts
/// a line of its own and the journal has no damaged line in its middle.
fn cut_torn_line(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut last = [0u8; 1];
    if len == 0 || (file.read_at(&mut last, len - 1)? == 1 && last[0] == b'\n') {
        return Ok(0);
    }
    let mut text = Vec::new();
    (&*file).read_to_end(&mut text)?;
    let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i as u64 + 1);
    file.set_len(keep)?;
    file.sync_data()?;
    Ok(len - keep)
}
