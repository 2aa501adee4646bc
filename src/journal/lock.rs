//! One run at a time per runbook and environment: an exclusive `flock` on a file in the state
//! directory. The kernel drops the lock when its holder dies, so a lock left by a crashed run is
//! stale by construction; the file keeps who held it, for the refusal message.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::Refused;

/// Who holds (or last held) a lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub operator: String,
    pub host: String,
    pub pid: u32,
    pub since: DateTime<Utc>,
    pub run_id: String,
}

/// Held until dropped (or the process ends).
#[derive(Debug)]
pub struct RunLock {
    /// Unlocked when dropped, after `Drop for RunLock` has emptied it.
    file: Flock<File>,
    pub path: PathBuf,
    /// Set when the previous holder died without releasing the lock.
    pub stale: Option<Holder>,
}

pub fn lock_path(state_dir: &Path, name: &str, env: Option<&str>) -> PathBuf {
    let slug = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect()
    };
    state_dir.join("locks").join(format!("{}@{}.lock", slug(name), slug(env.unwrap_or("default"))))
}

/// Take the lock for this runbook and environment, or refuse naming who holds it.
pub fn acquire(path: &Path, holder: &Holder) -> Result<RunLock> {
    if let Some(dir) = path.parent() {
        crate::private::create_dir_all(dir)?;
    }
    let mut file = crate::private::open(
        path,
        crate::private::options().read(true).write(true).create(true).truncate(false),
    )
    .with_context(|| format!("cannot open the lock {}", path.display()))?;
    let previous = read_holder(&mut file);
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((_, Errno::EWOULDBLOCK)) => return Err(refusal(previous.as_ref()).into()),
        Err((_, e)) => {
            bail!("cannot lock {}: {e}; nothing was run (a retry is safe)", path.display())
        }
    };
    // A clean release empties the file, so a holder still written there died holding the lock.
    let stale = previous;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&serde_json::to_vec(holder)?)?;
    file.sync_data()?;
    Ok(RunLock { file, path: path.to_path_buf(), stale })
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn refusal(holder: Option<&Holder>) -> Refused {
    match holder {
        Some(h) => Refused(format!(
            "this runbook is already running in this environment: {} on {} since {} (run {}, pid {}); wait for it to finish, or look at it with `runbook show {}`",
            h.operator,
            h.host,
            h.since.format("%Y-%m-%d %H:%M:%SZ"),
            h.run_id,
            h.pid,
            h.run_id
        )),
        None => {
            Refused("this runbook is already running in this environment (holder unknown)".into())
        }
    }
}
