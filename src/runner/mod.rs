//! Where a step's processes run. Every shell command a run starts (steps, rollbacks,
//! `verify_rollback`, measure commands) goes through a `Runner`, so a remote host is one more
//! implementation and the engine does not change. `Local` runs `bash -c` on this machine, in a
//! process group of its own (see `crate::process`); `ssh::Ssh` runs it on a host over OpenSSH.

use anyhow::Result;

pub mod ssh;

pub use crate::process::{Exit, Spawn};

/// The name of the machine a step ran on, as the journal records it: `local`, or a host as ssh
/// knows it (`web-1`, `deploy@10.0.0.12:2222`).
pub const LOCAL: &str = "local";

/// Runs one shell command somewhere and streams its merged output back.
pub trait Runner {
    /// Where this runner runs things, as journalled (`local` or a host).
    fn target(&self) -> &str;

    /// Run `spawn.command` with bash, handing each piece of its merged stdout and stderr to
    /// `on_output` as it comes; a timeout or `spawn.interrupt` ends every process it started.
    fn run(&self, spawn: &Spawn<'_>, on_output: &mut dyn FnMut(&[u8])) -> Result<Exit>;
}

/// This machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Runner for Local {
    fn target(&self) -> &str {
        LOCAL
    }

    fn run(&self, spawn: &Spawn<'_>, on_output: &mut dyn FnMut(&[u8])) -> Result<Exit> {
        crate::process::run(spawn, on_output)
    }
}
