//! Follow a file by name, like `tail -F`, by polling every [`POLL`](super::POLL).
//!
//! - An existing file is read from its end at the start: only lines written during the watch count.
//! - A file that does not exist at the start fails the watch at once ([`WatchEnd::FileMissing`]):
//!   a mistyped path would otherwise watch nothing and pass. With `wait_for_file` it is waited
//!   for, then read from its beginning; if it never appears, [`WatchEnd::NeverAppeared`].
//! - Rotation (the name now points at another inode): the old file's tail is read to its end, its
//!   last line finished, then the new file is read from its beginning.
//! - Truncation (the same inode got shorter than what was read): read again from offset 0.
//! - The name disappearing for a while (between a rename and a create) is not an error.

use super::{Run, WatchEnd, read_some};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{ErrorKind, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// An open file and how far it has been read.
struct Tailed {
    file: File,
    id: (u64, u64),
    pos: u64,
}

/// What became of the name since the last look.
enum Change {
    Same,
    Truncated,
    Replaced,
}

pub(super) fn follow(path: &Path, wait_for_file: bool, run: &mut Run) -> Result<WatchEnd> {
    let mut buf = vec![0u8; 256 << 10];
    let mut current = open(path, true)?;
    if current.is_none() && !wait_for_file {
        return Ok(WatchEnd::FileMissing);
    }
    let mut appeared = current.is_some();
    loop {
        if let Some(t) = current.as_mut() {
            if let Some(end) = drain(t, run, &mut buf, path)? {
                return Ok(end);
            }
            match change(path, t)? {
                Change::Same => {}
                Change::Truncated => {
                    if let Some(end) = restart_truncated(t, run, path)? {
                        return Ok(end);
                    }
                    continue;
                }
                Change::Replaced => {
                    if let Some(end) = drain(t, run, &mut buf, path)? {
                        return Ok(end);
                    }
                    if let Some(end) = run.finish_stream() {
                        return Ok(end);
                    }
                    current = open(path, false)?;
                    continue;
                }
            }
        } else if let Some(t) = open(path, false)? {
            current = Some(t);
            appeared = true;
            continue;
        }
        if let Some(end) = run.interrupted() {
            if !appeared && end == WatchEnd::TimeUp {
                return Ok(WatchEnd::NeverAppeared);
            }
            return last_look(current.as_mut(), run, &mut buf, path, end);
        }
        std::thread::sleep(run.nap());
    }
}

/// At the deadline, lines already written but not yet polled still count: read up to the size
/// the file has now, then finish a last line without a newline.
fn last_look(
    current: Option<&mut Tailed>,
    run: &mut Run,
    buf: &mut [u8],
    path: &Path,
    end: WatchEnd,
) -> Result<WatchEnd> {
    if end != WatchEnd::TimeUp {
        return Ok(end);
    }
    if let Some(t) = current {
        let size = t.file.metadata().map(|m| m.len()).unwrap_or(t.pos);
        while t.pos < size {
            let n = read_some(&mut t.file, buf).with_context(|| read_error(path))?;
            if n == 0 {
                break;
            }
            t.pos += n as u64;
            if let Some(end) = run.feed(&buf[..n]) {
                return Ok(end);
            }
        }
    }
    Ok(run.finish_stream().unwrap_or(end))
}

/// Read what the file holds now. Stops early (with the end) when the scanner, the operator or the
/// clock ends the watch, so a file growing faster than it is read cannot hold the watch open.
fn drain(t: &mut Tailed, run: &mut Run, buf: &mut [u8], path: &Path) -> Result<Option<WatchEnd>> {
    loop {
        let n = read_some(&mut t.file, buf).with_context(|| read_error(path))?;
        if n == 0 {
            return Ok(None);
        }
        t.pos += n as u64;
        if let Some(end) = run.feed(&buf[..n]) {
            return Ok(Some(end));
        }
        if let Some(end) = run.interrupted() {
            return Ok(Some(end));
        }
    }
}

fn restart_truncated(t: &mut Tailed, run: &mut Run, path: &Path) -> Result<Option<WatchEnd>> {
    t.file
        .seek(SeekFrom::Start(0))
        .with_context(|| format!("cannot rewind {} after it was truncated", path.display()))?;
    t.pos = 0;
    Ok(run.finish_stream())
}

fn change(path: &Path, t: &Tailed) -> Result<Change> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Change::Same),
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
    };
    if (meta.dev(), meta.ino()) != t.id {
        Ok(Change::Replaced)
    } else if meta.len() < t.pos {
        Ok(Change::Truncated)
    } else {
        Ok(Change::Same)
    }
}

/// Open the file, at its end or its start; `None` while it does not exist.
fn open(path: &Path, at_end: bool) -> Result<Option<Tailed>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot open {} to watch it", path.display()));
        }
    };
    let meta = file.metadata().with_context(|| format!("cannot stat {}", path.display()))?;
    if meta.is_dir() {
        anyhow::bail!("{} is a directory; a watch follows one file", path.display());
    }
    let pos =
        if at_end { file.seek(SeekFrom::End(0)).with_context(|| read_error(path))? } else { 0 };
    Ok(Some(Tailed { file, id: (meta.dev(), meta.ino()), pos }))
}

fn read_error(path: &Path) -> String {
    format!("cannot read {}", path.display())
}
