//! Ctrl-C and SIGTERM become a flag the engine reads, not a dead process: the step's process
//! group is stopped, the interruption is journalled, and the operator is offered a rollback.
//! The handler is installed without SA_RESTART so a prompt waiting on the terminal wakes up.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Never set: for work that a signal must not cut short (a rollback command in progress).
pub static NEVER: AtomicBool = AtomicBool::new(false);
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);
static COUNT: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only atomics here: this runs inside a signal handler.
    LAST_SIGNAL.store(signal, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT and SIGTERM for the rest of the process.
pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a plain sigaction with a handler that only touches atomics.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
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
    match LAST_SIGNAL.load(Ordering::SeqCst) {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}
