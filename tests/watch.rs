//! The `watch` step through the library: real files in a temporary directory written by a thread
//! while the watch runs, and real `bash` processes.

use runbook::steps::watch::{WatchEnd, WatchObserver, WatchOutcome, WatchSource, WatchSpec, watch};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Seen {
    matches: Vec<String>,
    progress_calls: u64,
    cancel: Arc<AtomicBool>,
}

impl WatchObserver for Seen {
    fn on_match(&mut self, line: &str) {
        self.matches.push(line.to_string());
    }
    fn on_progress(&mut self, _lines: u64, _matches: u64) {
        self.progress_calls += 1;
    }
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

fn spec(source: WatchSource, secs: f64, fail_on: &[&str]) -> WatchSpec {
    WatchSpec {
        source,
        duration: Duration::from_secs_f64(secs),
        fail_on: fail_on.iter().map(|s| s.to_string()).collect(),
        max: 0,
        until: None,
        env: Vec::new(),
        wait_for_file: false,
    }
}

fn file_spec(path: &Path, secs: f64) -> WatchSpec {
    spec(WatchSource::File(path.to_path_buf()), secs, &["ERROR", "panicked"])
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new().append(true).create(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Run `f` on a thread after `delay_ms`, while the watch runs on this one.
fn later(delay_ms: u64, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(delay_ms));
        f()
    })
}

fn run(spec: &WatchSpec) -> (WatchOutcome, Seen) {
    let mut seen = Seen::default();
    let outcome = watch(spec, &mut seen).unwrap();
    (outcome, seen)
}

fn log_in(dir: &tempfile::TempDir, initial: &str) -> PathBuf {
    let path = dir.path().join("app.log");
    std::fs::write(&path, initial).unwrap();
    path
}

#[test]
fn fails_on_an_error_line_appended_during_the_watch() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "");
    let p = path.clone();
    let writer = later(150, move || {
        append(&p, "GET / 200\nGET /upload 200\n");
        thread::sleep(Duration::from_millis(100));
        append(&p, "ERROR upload failed: too large\nGET / 200\n");
    });
    let (outcome, seen) = run(&file_spec(&path, 10.0));
    writer.join().unwrap();
    assert_eq!(outcome.end, WatchEnd::TooManyMatches);
    assert!(!outcome.passed());
    assert_eq!(outcome.matches, 1);
    assert_eq!(outcome.matched_lines, ["ERROR upload failed: too large"]);
    assert_eq!(seen.matches, outcome.matched_lines);
    assert_eq!(outcome.lines, 3, "lines up to and including the failing one");
    assert!(outcome.duration_ms < 5000, "ended at the match, not at the deadline");
}

#[test]
fn ignores_lines_that_were_in_the_file_before_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "ERROR from yesterday\nthread 'main' panicked at old.rs\n");
    let p = path.clone();
    let writer = later(100, move || append(&p, "GET / 200\nGET / 200\n"));
    let (outcome, seen) = run(&file_spec(&path, 0.6));
    writer.join().unwrap();
    assert_eq!(outcome.end, WatchEnd::TimeUp);
    assert!(outcome.passed());
    assert_eq!((outcome.lines, outcome.matches), (2, 0));
    assert_eq!(outcome.bytes, 20);
    assert!(seen.matches.is_empty());
    assert!(seen.progress_calls >= 1);
    assert!(outcome.duration_ms >= 600);
}

#[test]
fn waits_for_a_file_that_does_not_exist_yet_and_reads_it_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.log");
    let p = path.clone();
    let writer = later(200, move || append(&p, "starting\nthread 'main' panicked at x.rs\n"));
    let spec = WatchSpec { wait_for_file: true, ..file_spec(&path, 10.0) };
    let (outcome, _) = run(&spec);
    writer.join().unwrap();
    assert_eq!(outcome.end, WatchEnd::TooManyMatches);
    assert_eq!(outcome.matched_lines, ["thread 'main' panicked at x.rs"]);
}

#[test]
fn a_file_that_does_not_exist_fails_the_watch_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (outcome, _) = run(&file_spec(&dir.path().join("app.lgo"), 10.0));
    assert_eq!(outcome.end, WatchEnd::FileMissing);
    assert!(!outcome.passed());
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn wait_for_file_fails_when_the_file_never_appears() {
    let dir = tempfile::tempdir().unwrap();
    let spec = WatchSpec { wait_for_file: true, ..file_spec(&dir.path().join("never.log"), 0.3) };
    let (outcome, _) = run(&spec);
    assert_eq!(outcome.end, WatchEnd::NeverAppeared);
    assert!(!outcome.passed());
    assert!(outcome.duration_ms >= 300, "{}", outcome.duration_ms);
}

#[test]
fn until_ends_the_watch_early_with_success() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "");
    let p = path.clone();
    let writer = later(100, move || append(&p, "warming up\nserver ready on :8080\nERROR after\n"));
    let mut spec = file_spec(&path, 10.0);
    spec.until = Some("ready on :\\d+".into());
    let started = Instant::now();
    let (outcome, _) = run(&spec);
    writer.join().unwrap();
    assert_eq!(outcome.end, WatchEnd::Until { line: "server ready on :8080".into() });
    assert!(outcome.passed());
    assert_eq!((outcome.lines, outcome.matches), (2, 0), "lines after `until` are not read");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn survives_rotation_reading_the_old_tail_and_then_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "old content\n");
    let (p, rotated) = (path.clone(), dir.path().join("app.log.1"));
    let writer = later(150, move || {
        let mut old = OpenOptions::new().append(true).open(&p).unwrap();
        old.write_all(b"GET / 200\n").unwrap();
        std::fs::rename(&p, &rotated).unwrap();
        // The application still writes through its old descriptor for a moment.
        old.write_all(b"ERROR in the old file's tail\n").unwrap();
        thread::sleep(Duration::from_millis(250));
        let mut new = File::create(&p).unwrap();
        new.write_all(b"reopened\nERROR in the new file\n").unwrap();
    });
    let mut spec = file_spec(&path, 10.0);
    spec.max = 1;
    let (outcome, _) = run(&spec);
    writer.join().unwrap();
    assert_eq!(outcome.end, WatchEnd::TooManyMatches);
    assert_eq!(outcome.matched_lines, ["ERROR in the old file's tail", "ERROR in the new file"]);
    assert_eq!(outcome.lines, 4);
}

#[test]
fn survives_truncation_by_reading_from_the_start_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, &"GET /some/long/path 200 OK\n".repeat(50));
    let p = path.clone();
    let writer = later(200, move || {
        let mut f = OpenOptions::new().write(true).truncate(true).open(&p).unwrap();
        f.write_all(b"ERROR after truncate\n").unwrap();
    });
    let (outcome, _) = run(&file_spec(&path, 10.0));
    writer.join().unwrap();
    assert_eq!(outcome.end, WatchEnd::TooManyMatches);
    assert_eq!(outcome.matched_lines, ["ERROR after truncate"]);
}

#[test]
fn matches_a_line_written_in_two_pieces_across_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "");
    let p = path.clone();
    let writer = later(100, move || {
        append(&p, "ok\nrequest 42 ER");
        thread::sleep(Duration::from_millis(300));
        append(&p, "ROR: timeout\nok\n");
    });
    let (outcome, _) = run(&file_spec(&path, 10.0));
    writer.join().unwrap();
    assert_eq!(outcome.end, WatchEnd::TooManyMatches);
    assert_eq!(outcome.matched_lines, ["request 42 ERROR: timeout"]);
    assert_eq!(outcome.lines, 2);
}

#[test]
fn matches_a_line_larger_than_the_read_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "");
    let p = path.clone();
    let writer = later(100, move || {
        let big = format!("ok\n{}ERROR{}\nok\n", "x".repeat(300 << 10), "y".repeat(300 << 10));
        append(&p, &big);
    });
    let (outcome, _) = run(&file_spec(&path, 10.0));
    writer.join().unwrap();
    assert_eq!(outcome.end, WatchEnd::TooManyMatches);
    assert_eq!(outcome.lines, 2);
    assert!(outcome.matched_lines[0].starts_with("xxx"));
    assert_eq!(outcome.matched_lines[0].chars().count(), 501, "cut to 500 chars and an ellipsis");
}

#[test]
fn max_allows_that_many_matches() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "");
    let p = path.clone();
    let writer = later(100, move || append(&p, "ERROR one\nok\nERROR two\n"));
    let mut spec = file_spec(&path, 0.8);
    spec.max = 2;
    let (outcome, seen) = run(&spec);
    writer.join().unwrap();
    assert_eq!(outcome.end, WatchEnd::TimeUp);
    assert!(outcome.passed());
    assert_eq!(outcome.matches, 2);
    assert_eq!(seen.matches, ["ERROR one", "ERROR two"]);

    let p = path.clone();
    let writer = later(100, move || append(&p, "ERROR one\nERROR two\nERROR three\nERROR four\n"));
    let (outcome, _) = run(&spec);
    writer.join().unwrap();
    assert_eq!(outcome.end, WatchEnd::TooManyMatches);
    assert_eq!(outcome.matches, 3);
}

#[test]
fn stops_promptly_when_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "");
    let mut seen = Seen::default();
    let cancel = seen.cancel.clone();
    let ctrl_c = later(200, move || cancel.store(true, Ordering::SeqCst));
    let started = Instant::now();
    let outcome = watch(&file_spec(&path, 30.0), &mut seen).unwrap();
    ctrl_c.join().unwrap();
    assert_eq!(outcome.end, WatchEnd::Cancelled);
    assert!(!outcome.passed());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_bad_pattern_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_in(&dir, "");
    let spec = spec(WatchSource::File(path), 1.0, &["ERROR", "[unclosed"]);
    let err = watch(&spec, &mut Seen::default()).unwrap_err();
    assert!(format!("{err:#}").contains("fail_on[1] `[unclosed`"), "{err:#}");
}

/// Processes in process group `pgid` that are still alive (zombies waiting for a reaper are dead).
fn alive_in_group(pgid: i32) -> Vec<String> {
    let mut alive = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after the last ')'.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            alive.push(stat);
        }
    }
    alive
}

#[test]
fn command_source_fails_on_the_match_and_kills_its_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pgid");
    let cmd = format!(
        "echo $$ > {}; for i in 1 2 3; do echo ok; sleep 0.1; done; echo ERROR boom; sleep 30",
        pidfile.display()
    );
    let started = Instant::now();
    let (outcome, _) = run(&spec(WatchSource::Command(cmd), 20.0, &["ERROR"]));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(outcome.end, WatchEnd::TooManyMatches);
    assert_eq!(outcome.matched_lines, ["ERROR boom"]);
    assert_eq!(outcome.lines, 4);
    let pgid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !alive_in_group(pgid).is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(alive_in_group(pgid), Vec::<String>::new(), "the `sleep 30` must be gone");
}

#[test]
fn command_source_watches_stderr_too() {
    let cmd = "echo fine; echo 'thread main panicked' >&2; sleep 30".to_string();
    let (outcome, _) = run(&spec(WatchSource::Command(cmd), 20.0, &["panicked"]));
    assert_eq!(outcome.end, WatchEnd::TooManyMatches);
    assert_eq!(outcome.matched_lines, ["thread main panicked"]);
}

#[test]
fn command_source_runs_its_time_and_passes_when_nothing_matches() {
    let cmd = "while true; do echo ok; sleep 0.05; done".to_string();
    let (outcome, _) = run(&spec(WatchSource::Command(cmd), 0.5, &["ERROR"]));
    assert_eq!(outcome.end, WatchEnd::TimeUp);
    assert!(outcome.passed());
    assert!(outcome.lines >= 3, "{outcome:?}");
}

#[test]
fn a_command_that_exits_before_the_time_is_up_is_an_error() {
    let cmd = "echo ok; exit 3".to_string();
    let err = watch(&spec(WatchSource::Command(cmd), 10.0, &["ERROR"]), &mut Seen::default())
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("exit status 3") && text.contains("a retry is safe"), "{text}");
}

#[test]
fn command_source_ends_on_until_and_on_cancel() {
    let cmd = "echo booting; sleep 0.2; echo 'listening on :8080'; sleep 30".to_string();
    let mut s = spec(WatchSource::Command(cmd), 20.0, &["ERROR"]);
    s.until = Some("listening".into());
    let (outcome, _) = run(&s);
    assert_eq!(outcome.end, WatchEnd::Until { line: "listening on :8080".into() });

    let mut seen = Seen::default();
    let cancel = seen.cancel.clone();
    let ctrl_c = later(200, move || cancel.store(true, Ordering::SeqCst));
    let started = Instant::now();
    let s = spec(WatchSource::Command("sleep 30".into()), 20.0, &["ERROR"]);
    let outcome = watch(&s, &mut seen).unwrap();
    ctrl_c.join().unwrap();
    assert_eq!(outcome.end, WatchEnd::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
}
