//! Ctrl-C, SIGTERM and SIGHUP become a flag the engine reads, not a dead process: the step's
//! process group is stopped, the interruption is journalled, and the operator is offered a
//! rollback.
//!
//! The handlers are installed WITH `SA_RESTART`: a signal must never cut a read or a write in
//! half (a Redis restore that fails with EINTR leaves keys missing). Whatever waits must
//! therefore look at [`interrupted`] itself, as the terminal prompt does between short polls.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Never set: for work that a signal must not cut short (a rollback command in progress).
pub static NEVER: AtomicBool = AtomicBool::new(false);
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);
static COUNT: AtomicU32 = AtomicU32::new(0);

/// The signals that stop a run.
const CAUGHT: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

extern "C" fn on_signal(signal: nix::libc::c_int) {
    // Only atomics here: this runs inside a signal handler.
    LAST_SIGNAL.store(signal, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT, SIGTERM and SIGHUP for the rest of the process, and adopt the orphans of the
/// steps it runs (so a stopped step's escaped children can be found and reaped).
pub fn install() {
    crate::process::become_subreaper();
    let action =
        SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for signal in CAUGHT {
        // SAFETY: the handler only touches atomics, which is async-signal-safe. Installing a
        // handler for these three signals cannot fail, so the result is not looked at.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How many signals have arrived so far (a second Ctrl-C means more than the first).
pub fn count() -> u32 {
    COUNT.load(Ordering::SeqCst)
}

/// Forget the interruption once it has been dealt with, so the next one is noticed.
pub fn clear() {
    INTERRUPTED.store(false, Ordering::SeqCst);
}

pub fn last_name() -> &'static str {
    match Signal::try_from(LAST_SIGNAL.load(Ordering::SeqCst)) {
        Ok(s) if CAUGHT.contains(&s) => s.as_str(),
        _ => "signal",
    }
}
