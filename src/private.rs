//! What runbook creates under its state directory is private to the account that runs it:
//! folders 0700 and files 0600 whatever the umask (journals, step logs and flush backups hold
//! production data), and nothing there is opened through a symbolic link, so a link planted at a
//! run folder, a lock, a log or a note cannot make runbook write over its target. Every site that
//! creates something under the state directory goes through these helpers.

use std::fs::{File, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::OFlag;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// The state directory of this process, below which every folder is checked for links.
static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Say where the state directory is (the first call wins: a process has one).
pub fn set_root(dir: &Path) {
    let _ = ROOT.set(dir.to_path_buf());
}

/// Options for a private file: 0600 when created, never through a link at its last component.
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE).custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits());
    options
}

/// Open `path` with `options` (from [`options`]), refusing any link on the way from the state
/// directory, and leave the file 0600 whatever the umask was.
pub fn open(path: &Path, options: &OpenOptions) -> Result<File> {
    refuse_links_above(path)?;
    let file = options.open(path).map_err(|e| refusal_or(e, path))?;
    // Ours, so this works; on a file system without modes it is moot.
    let _ = file.set_permissions(Permissions::from_mode(FILE_MODE));
    Ok(file)
}

/// Create (or empty) the private file `path`.
pub fn create(path: &Path) -> Result<File> {
    open(path, options().write(true).create(true).truncate(true))
}

/// Replace the contents of the private file `path` with `bytes`.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    create(path)?.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Make the folder `path` (0700), failing with `AlreadyExists` when something is there: for a
/// name that must be new (a run folder).
pub fn create_new_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().mode(DIR_MODE).create(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
}

/// Make the folder `path` and its missing parents (each 0700); a folder already there must be a
/// real folder, not a link to one.
pub fn create_dir_all(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(link_refused(path)),
        Ok(meta) if meta.is_dir() => return refuse_links_above(path),
        Ok(_) => {
            bail!("{} is in the way of a folder runbook needs; nothing was written", path.display())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot look at {}", path.display())),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    match create_new_dir(path) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            Err(e).with_context(|| format!("cannot create the folder {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Every folder between the state directory and `path` must be a real folder. Without a known
/// state directory (a step run by a test), the folder holding `path` is checked.
fn refuse_links_above(path: &Path) -> Result<()> {
    let root = ROOT.get().filter(|r| path.starts_with(r));
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        if root.is_some_and(|r| d == r.as_path()) {
            break;
        }
        if std::fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(link_refused(d));
        }
        if root.is_none() {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

fn refusal_or(e: std::io::Error, path: &Path) -> anyhow::Error {
    if e.raw_os_error() == Some(Errno::ELOOP as i32) {
        return link_refused(path);
    }
    anyhow::Error::new(e).context(format!("cannot open {}", path.display()))
}

fn link_refused(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "refusing {}: it is a symbolic link (runbook opens nothing in its state directory through a link, and its target was not touched); remove it, find out who made it, then retry",
        path.display()
    )
}
