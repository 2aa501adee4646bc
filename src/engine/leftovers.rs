//! Processes a step started that outlived the engine (it crashed, or was killed): found by the
//! environment every step process carries (`RUNBOOK_RUN_ID`, `RUNBOOK_STEP`), so a daemon an
//! earlier step started on purpose is left alone. Nothing else runs until they are gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::sys::signal::Signal;

/// How long stopped processes get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// Live processes whose environment says they belong to this run's step.
pub fn step_processes(run_id: &str, step: usize) -> Vec<i32> {
    let run_var = format!("RUNBOOK_RUN_ID={run_id}");
    let step_var = format!("RUNBOOK_STEP={step}");
    crate::process::table::with_env(&[&run_var, &step_var])
}

/// Wait until the step's processes are gone; with `stop`, end them (SIGTERM, then SIGKILL for
/// those that ignore it).
pub fn settle(run_id: &str, step: usize, stop: bool, interrupt: &AtomicBool) -> Result<()> {
    if stop {
        signal_all(&step_processes(run_id, step), Signal::SIGTERM);
    }
    let deadline = Instant::now() + if stop { GRACE } else { Duration::MAX / 4 };
    while !step_processes(run_id, step).is_empty() {
        if interrupt.load(Ordering::SeqCst) {
            bail!(
                "interrupted while waiting for the step's processes; nothing was run (a retry is safe)"
            );
        }
        if Instant::now() > deadline {
            signal_all(&step_processes(run_id, step), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A process already gone gives ESRCH, which is what we want.
fn signal_all(pids: &[i32], signal: Signal) {
    for pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), signal);
    }
}
