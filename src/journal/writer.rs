//! Appends events to a run's journal. Each event is one `write` of one line, then `fdatasync`, so
//! when a step begins its start is on disk, and a crash can only tear the last line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::Utc;

use super::event::{Event, Record};

pub struct Writer {
    file: File,
    path: PathBuf,
    seq: u64,
}

impl Writer {
    /// Open (or create) a journal for appending; `seq` continues from the events already there.
    pub fn open(path: &Path, seq: u64) -> Result<Writer> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the journal {}", path.display()))?;
        Ok(Writer { file, path: path.to_path_buf(), seq })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write one event and make it durable before returning.
    pub fn append(&mut self, event: Event) -> Result<()> {
        self.seq += 1;
        let record = Record { ts: Utc::now(), seq: self.seq, event };
        let mut line = serde_json::to_vec(&record).context("cannot encode a journal event")?;
        line.push(b'\n');
        self.file.write_all(&line).and_then(|()| self.file.sync_data()).with_context(|| {
            format!(
                "cannot write the journal {} (disk full or not writable?); the run stops here",
                self.path.display()
            )
        })
    }
}
