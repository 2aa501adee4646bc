//! Ctrl-C, SIGTERM and SIGHUP become a flag the engine reads, not a dead process: the step's
//! process group is stopped, the interruption is journalled, and the operator is offered a
//! rollback.
//!
//! A signal must never cut a read or a write in half (a Redis restore that fails with EINTR
//! leaves keys missing): the signals are taken by a thread of their own, and the handler kept
//! for older threads restarts what it interrupts (`SA_RESTART`). Whatever waits must therefore
//! look at [`interrupted`] itself, as the terminal prompt does between short polls.

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
    record(signal);
}

fn record(signal: i32) {
    LAST_SIGNAL.store(signal, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT, SIGTERM and SIGHUP for the rest of the process, and adopt the orphans of the
/// steps it runs (so a stopped step's escaped children can be found and reaped).
///
/// `SA_RESTART` alone is not enough: a socket with a timeout (the Redis client sets one) fails
/// with EINTR whatever the flag says. So the signals are blocked in this thread, and so in every
/// thread started from now on (children get a clean mask from std), and one thread of their own
/// takes them with `sigwait`. The handler stays for threads started before this call.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        crate::process::become_subreaper();
        let action =
            SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
        for signal in CAUGHT {
            // SAFETY: the handler only touches atomics, which is async-signal-safe. Installing a
            // handler for these three signals cannot fail, so the result is not looked at.
            let _ = unsafe { sigaction(signal, &action) };
        }
        let caught: SigSet = CAUGHT.into_iter().collect();
        if caught.thread_block().is_ok() {
            std::thread::spawn(move || {
                while let Ok(signal) = caught.wait() {
                    record(signal as i32);
                }
            });
        }
    });
}

/// Run `spawn` with the caught signals unblocked in this thread, so that the process it starts
/// gets a clean signal mask (a child inherits the mask, and std does not reset it): a step must
/// stay stoppable by SIGTERM and SIGINT. The thread's own mask is put back afterwards.
pub fn unblocked<T>(spawn: impl FnOnce() -> T) -> T {
    let Ok(before) = SigSet::thread_get_mask() else { return spawn() };
    let caught: SigSet = CAUGHT.into_iter().collect();
    let _ = caught.thread_unblock();
    let out = spawn();
    let _ = before.thread_set_mask();
    out
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
