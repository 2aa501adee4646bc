//! Watch and measure steps through the binary, on real files and a real HTTP server started by
//! the test on 127.0.0.1: a watch fails on an error line written during it, ignores older lines,
//! ends early on `until`, survives rotation; HTTP measurements before and after a change are
//! paired in the note.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::Runbook;

fn watch_runbook(log: &Path, for_: &str, until: Option<&str>) -> String {
    let until = until.map_or(String::new(), |u| format!("until = \"{u}\"\n"));
    format!(
        "[runbook]\nname = \"watch\"\n\n[[step]]\ntitle = \"watch the log\"\nkind = \"watch\"\nfile = \"{}\"\nfor = \"{for_}\"\nfail_on = [\"ERROR\", \"panicked\"]\n{until}",
        log.display()
    )
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Append `text` to `path` once the watch has started (its step_started is in the journal).
fn later(t: &Runbook, path: &Path, text: &'static str, rotate: bool) -> thread::JoinHandle<()> {
    let journal_dir = t.state_dir().join("runs");
    let path = path.to_path_buf();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !watch_started(&journal_dir) {
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(300));
        if rotate {
            std::fs::rename(&path, path.with_extension("1")).unwrap();
        }
        append(&path, text);
    })
}

fn watch_started(runs: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(runs) else { return false };
    entries.filter_map(|e| e.ok()).any(|e| {
        std::fs::read_to_string(e.path().join("journal.jsonl"))
            .is_ok_and(|j| j.contains("step_started"))
    })
}

#[test]
fn a_watch_fails_on_an_error_written_during_it_and_ignores_older_lines() {
    let t = Runbook::new();
    let log = t.path().join("app.log");
    append(&log, "old ERROR from yesterday\nfine\n");
    t.file("rb.toml", &watch_runbook(&log, "5s", None));
    let writer = later(&t, &log, "request ok\nERROR upload failed\n", false);
    let started = Instant::now();
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    writer.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "failed at the match, not at the end");
    assert!(out.stdout.contains("ERROR upload failed"), "{out:?}");
    assert!(!out.stderr.contains("yesterday"), "older lines do not count: {out:?}");
    let events = t.journal();
    let finished = events.iter().find(|e| e["event"] == "step_finished").unwrap();
    assert_eq!(finished["outcome"], "failed");
    assert_eq!(finished["details"]["matches"], 1);
    assert_eq!(finished["details"]["matched_lines"][0], "ERROR upload failed");
}

#[test]
fn a_watch_passes_when_nothing_matches_and_ends_early_on_until() {
    let t = Runbook::new();
    let log = t.path().join("app.log");
    append(&log, "ERROR before the watch\n");
    t.file("rb.toml", &watch_runbook(&log, "1s", None));
    t.run(&["run", "rb.toml", "--yes"]).success();

    let t = Runbook::new();
    let log = t.path().join("app.log");
    append(&log, "");
    t.file("rb.toml", &watch_runbook(&log, "60s", Some("release ok")));
    let writer = later(&t, &log, "warming up\nrelease ok\n", false);
    let started = Instant::now();
    let out = t.run(&["run", "rb.toml", "--yes"]).success();
    writer.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(20), "until ended it early");
    assert!(out.stdout.contains("ended early on until"), "{out:?}");
}

#[test]
fn a_watch_follows_the_file_through_rotation() {
    let t = Runbook::new();
    let log = t.path().join("app.log");
    append(&log, "before\n");
    t.file("rb.toml", &watch_runbook(&log, "5s", None));
    let writer = later(&t, &log, "thread 'main' panicked at src/main.rs\n", true);
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    writer.join().unwrap();
    assert!(out.stdout.contains("panicked"), "{out:?}");
}

/// A watch of `file` for `for_`, with extra keys.
fn watch_with(file: &Path, for_: &str, extra: &str) -> String {
    format!(
        "[runbook]\nname = \"watch\"\n\n[[step]]\ntitle = \"watch the log\"\nkind = \"watch\"\nfile = \"{}\"\nfor = \"{for_}\"\nfail_on = [\"ERROR\"]\n{extra}",
        file.display()
    )
}

#[test]
fn regression_a_watch_of_a_mistyped_file_passed_with_0_lines() {
    let t = Runbook::new();
    append(&t.path().join("app.log"), "");
    let typo = t.path().join("app.lgo");
    t.file("rb.toml", &watch_with(&typo, "60s", ""));
    let started = Instant::now();
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert!(started.elapsed() < Duration::from_secs(10), "it failed at once, not after 60s");
    let expected = format!("{} does not exist, so there was nothing to watch", typo.display());
    assert!(out.stdout.contains(&expected), "{out:?}");
    assert!(out.stdout.contains("wait_for_file = true"), "says how to wait for it: {out:?}");
    assert!(!out.stderr.contains("watched the whole time"), "{out:?}");
    let events = t.journal();
    let finished = events.iter().find(|e| e["event"] == "step_finished").unwrap();
    assert_eq!(finished["outcome"], "failed");
    assert_eq!(finished["details"]["end"], "FileMissing");
}

#[test]
fn wait_for_file_waits_within_for_and_fails_when_the_file_never_appears() {
    let t = Runbook::new();
    let log = t.path().join("later.log");
    t.file("rb.toml", &watch_with(&log, "60s", "wait_for_file = true\n"));
    let writer = later(&t, &log, "starting\nERROR on first request\n", false);
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    writer.join().unwrap();
    assert!(out.stdout.contains("ERROR on first request"), "read from its start: {out:?}");

    let t = Runbook::new();
    let log = t.path().join("never.log");
    t.file("rb.toml", &watch_with(&log, "1s", "wait_for_file = true\n"));
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    let expected = format!("{} never appeared in 1.0s", log.display());
    assert!(out.stdout.contains(&expected), "{out:?}");
}

#[test]
fn wait_for_file_on_a_command_watch_is_refused_at_its_line() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"w\"\n[[step]]\ntitle = \"w\"\nkind = \"watch\"\ncommand = \"journalctl -f\"\nfor = \"1m\"\nwait_for_file = true\n",
    );
    let out = t.run(&["check", "rb.toml"]).code(2);
    assert!(out.stderr.contains("`wait_for_file` in step 1 has no file to wait for"), "{out:?}");
    assert!(out.stderr.contains("rb.toml:8:17"), "{out:?}");
}

/// A server that answers every request after `delay`, until the test ends.
fn slow_server(delays_ms: &'static [u64]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/upload", listener.local_addr().unwrap());
    thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let delay = delays_ms[(i / 5).min(delays_ms.len() - 1)];
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            thread::sleep(Duration::from_millis(delay));
            let _ = reader.get_mut().write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
            );
        }
    });
    url
}

#[test]
fn http_measurements_before_and_after_are_paired_in_the_note() {
    // Five requests before the change are slow (120 ms), five after are fast (10 ms).
    let url = slow_server(&[120, 10]);
    let t = Runbook::new();
    t.file(
        "rb.toml",
        &format!(
            "[runbook]\nname = \"latency\"\n\n[[step]]\ntitle = \"latency before\"\nkind = \"measure\"\nhttp = \"{url}\"\nrequests = 5\n\n[[step]]\ntitle = \"the change\"\nkind = \"apply\"\nrun = \"echo tuned\"\nrollback = \"echo untuned\"\n\n[[step]]\ntitle = \"latency after\"\nkind = \"measure\"\nhttp = \"{url}\"\nrequests = 5\n"
        ),
    );
    let out = t.run(&["run", "rb.toml", "--yes"]).success();
    assert!(
        out.stdout.contains("latency_p50_ms"),
        "the end-of-run summary shows metric changes: {out:?}"
    );
    let note = t.run(&["report", "last"]).success().stdout;
    let row =
        note.lines().find(|l| l.contains("latency_p50_ms")).unwrap_or_else(|| panic!("{note}"));
    let numbers: Vec<f64> = row
        .split('|')
        .filter_map(|c| c.trim().trim_end_matches(" ms").trim_end_matches('%').parse::<f64>().ok())
        .collect();
    assert!(numbers.len() >= 2, "before and after in the row: {row}");
    assert!(numbers[0] >= 100.0 && numbers[1] < 100.0, "before slow, after fast: {row}");
    let error_rate = note.lines().find(|l| l.contains("error_rate")).unwrap_or_default();
    assert!(error_rate.contains('0'), "{error_rate}");
}

#[test]
fn a_measure_command_gets_the_runs_secrets_through_its_environment() {
    let t = Runbook::new().env("API_TOKEN", "s3cr3t-measure");
    t.file(
        "rb.toml",
        "[runbook]\nname = \"m\"\n[vars]\ntoken = { from_env = \"API_TOKEN\", secret = true }\n[[step]]\ntitle = \"queue\"\nkind = \"measure\"\nrun = \"test {{token}} = s3cr3t-measure && echo depth=42\"\ncapture = [\"depth=(?P<queue_depth>\\\\d+)\"]\n",
    );
    let out = t.run(&["run", "rb.toml", "--yes"]).success();
    assert!(out.stdout.contains("queue_depth = 42"), "{out:?}");
    let events = t.journal();
    let metrics =
        &events.iter().find(|e| e["event"] == "step_finished").unwrap()["details"]["metrics"];
    assert_eq!(metrics[0]["value"], 42.0);
}

#[test]
fn a_measure_command_honours_cwd_and_timeout() {
    let t = Runbook::new();
    t.file("sub/figures", "depth=5\n");
    t.file(
        "rb.toml",
        "[runbook]\nname = \"m\"\n[[step]]\ntitle = \"read here\"\nkind = \"measure\"\ncwd = \"{{runbook_dir}}/sub\"\nrun = \"cat figures\"\ncapture = [\"depth=(?P<depth>\\\\d+)\"]\n\n[[step]]\ntitle = \"too slow\"\nkind = \"measure\"\ntimeout = \"500ms\"\nrun = \"sleep 5; echo depth=1\"\ncapture = [\"depth=(?P<late>\\\\d+)\"]\n",
    );
    let started = Instant::now();
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout ended it: {:?}",
        started.elapsed()
    );
    assert!(out.stdout.contains("depth = 5"), "cwd was used: {out:?}");
    assert!(out.stdout.contains("timed out"), "{out:?}");
}
