//! Measures that can fail, through the binary: `fail_if` conditions against this step's figures
//! and against `before` (the run's earlier figure of the same metric), HTTP latency from answered
//! requests only, a measure whose every request failed, `check` on the conditions, and the note
//! marking each judged change good or bad. The HTTP servers are started by the tests on
//! 127.0.0.1: a real `python3 -m http.server` process that a test kills between two measures, and
//! an in-process one whose delay per request the test sets.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::Runbook;

/// A `python3 -m http.server` on a free port of 127.0.0.1, serving `dir`; its URL.
fn python_server(dir: &Path) -> (Child, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 must be on PATH");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "python3 http.server did not start on {port}");
        thread::sleep(Duration::from_millis(20));
    }
    (child, format!("http://127.0.0.1:{port}/index.html"))
}

/// Wait until the newest run's journal shows `step` started.
fn wait_for_step(t: &Runbook, step: u32) {
    let runs = t.state_dir().join("runs");
    let needle = format!("\"event\":\"step_started\",\"step\":{step}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let started = std::fs::read_dir(&runs).into_iter().flatten().flatten().any(|e| {
            std::fs::read_to_string(e.path().join("journal.jsonl"))
                .is_ok_and(|j| j.replace(' ', "").contains(&needle))
        });
        if started {
            return;
        }
        assert!(Instant::now() < deadline, "step {step} never started");
        thread::sleep(Duration::from_millis(20));
    }
}

const BEFORE_AND_AFTER: &str = r#"
[runbook]
name = "latency"

[[step]]
title = "Latency before"
kind = "measure"
http = "{{url}}"
requests = 5

[[step]]
title = "Restart the service"
kind = "check"
run = "while [ ! -e {{runbook_dir}}/restarted ]; do sleep 0.05; done"

[[step]]
title = "Latency after"
kind = "measure"
http = "{{url}}"
requests = 5
fail_if = ["error_rate > 0.01", "latency_p95_ms > 1.5 * before"]
"#;

fn with_url(url: &str) -> String {
    BEFORE_AND_AFTER.replace("{{url}}", url)
}

#[test]
fn regression_p95_timed_on_refused_connections_passed_as_an_improvement() {
    let t = Runbook::new();
    std::fs::write(t.path().join("index.html"), "ok\n").unwrap();
    let (mut server, url) = python_server(t.path());
    t.file("rb.toml", &with_url(&url));
    let runner = {
        let cmd = t.command(&["run", "rb.toml", "--yes"]);
        thread::spawn(move || {
            let mut cmd = cmd;
            cmd.stdin(Stdio::null()).output().expect("run the binary")
        })
    };
    // The service dies between the two measures: the test kills the server it started.
    wait_for_step(&t, 2);
    server.kill().unwrap();
    server.wait().unwrap();
    std::fs::write(t.path().join("restarted"), "").unwrap();
    let out = runner.join().unwrap();
    let record = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "the run failed and rolled back: {record}");
    assert!(record.contains("every one of the 5 requests to"), "{record}");
    assert!(record.contains("0 answered with an error status"), "{record}");
    assert!(record.contains("fail_if `error_rate > 0.01` is true: 1 > 0.010"), "{record}");
    assert!(
        record.contains("cannot judge fail_if `latency_p95_ms > 1.5 * before`: this step measured no `latency_p95_ms`"),
        "{record}"
    );

    let events = t.journal();
    let after = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == 3)
        .expect("step 3 finished");
    assert_eq!(after["outcome"], "failed");
    let metrics = after["details"]["metrics"].as_array().unwrap();
    let names: Vec<&str> = metrics.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(
        !names.iter().any(|n| n.starts_with("latency")),
        "no latency without a response: {names:?}"
    );
    let figure = |n: &str| metrics.iter().find(|m| m["name"] == n).unwrap()["value"].as_f64();
    assert_eq!(figure("transport_errors"), Some(5.0));
    assert_eq!(figure("responses"), Some(0.0));

    let note = t.run(&["report", "last"]).success().stdout;
    let row =
        note.lines().find(|l| l.starts_with("| `error_rate`")).unwrap_or_else(|| panic!("{note}"));
    assert!(row.contains("**BAD**: fail_if \\`error_rate \\> 0.01\\` is true"), "{row}");
    assert!(
        !note.lines().any(|l| l.starts_with("| `latency_p95_ms`")),
        "no before/after latency pair from refused connections: {note}"
    );
}

/// An HTTP server in this process: request `i` (0-based) is answered after `delays_ms[i / 5]`
/// milliseconds (the last delay for the rest), with status 200.
fn delayed_server(delays_ms: &'static [u64]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/page", listener.local_addr().unwrap());
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

fn run_against(url: &str) -> (Runbook, crate::support::Outcome) {
    let t = Runbook::new();
    t.file("restarted", "");
    t.file("rb.toml", &with_url(url));
    let out = t.run(&["run", "rb.toml", "--yes"]);
    (t, out)
}

#[test]
fn latency_against_before_fails_the_step_and_the_note_marks_it_bad() {
    let (t, out) = run_against(&delayed_server(&[40, 200]));
    let out = out.code(3);
    assert!(out.stdout.contains("fail_if `latency_p95_ms > 1.5 * before` is true"), "{out:?}");
    assert!(out.stdout.contains("before ="), "{out:?}");
    assert!(out.stdout.contains("(step 1)"), "{out:?}");
    let note = t.run(&["report", "last"]).success().stdout;
    let latency = note.lines().find(|l| l.starts_with("| `latency_p95_ms`")).unwrap();
    assert!(latency.contains("**BAD**"), "{latency}");
    let errors = note.lines().find(|l| l.starts_with("| `error_rate`")).unwrap();
    assert!(errors.contains("| good: fail_if \\`error_rate \\> 0.01\\` is false"), "{errors}");
}

#[test]
fn conditions_that_hold_not_pass_and_the_note_marks_the_changes_good() {
    let (t, out) = run_against(&delayed_server(&[60, 60]));
    let out = out.success();
    assert!(out.stdout.contains("fail_if: 2 passed"), "{out:?}");
    assert!(out.stdout.contains("latency_p95_ms:") && out.stdout.contains(", good)"), "{out:?}");
    let html = t.run(&["report", "last", "--format", "html"]).success().stdout;
    assert!(html.contains("<td class=\"good judged\"><strong>✓ good</strong>"), "{html}");
    assert!(!html.contains("bad judged"), "{html}");
}

#[test]
fn check_reports_bad_conditions_at_their_line_and_column() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        r#"[runbook]
name = "m"

[[step]]
title = "after"
kind = "measure"
http = "http://127.0.0.1:9/health"
fail_if = ["eror_rate > 0.01", "latency_p95_ms > 1.5 * before", "error_rate >"]

[[step]]
title = "queue"
kind = "measure"
run = "echo depth=3"
capture = ["depth=(?P<queue_depth>\\d+)"]
fail_if = ["queue_depth + error_rate > before", "queue_length > 10"]

[[step]]
title = "not a measure"
kind = "check"
run = "true"
fail_if = ["error_rate > 0"]
"#,
    );
    let out = t.run(&["check", "rb.toml"]).code(2);
    let err = out.stderr;
    assert!(err.contains("fail_if names `eror_rate`, which this step does not measure"), "{err}");
    assert!(err.contains("did you mean `error_rate`?"), "{err}");
    assert!(err.contains("rb.toml:8:13"), "{err}");
    assert!(
        err.contains("`before` in step 1 has nothing to compare with: no measure step before it reads `latency_p95_ms`"),
        "{err}"
    );
    assert!(err.contains("rb.toml:8:56"), "{err}");
    assert!(err.contains("the condition ends too soon"), "{err}");
    assert!(err.contains("rb.toml:8:78"), "{err}");
    assert!(err.contains("`before` is ambiguous: the condition names 2 metrics"), "{err}");
    assert!(err.contains("fail_if names `queue_length`"), "{err}");
    assert!(err.contains("rb.toml:15:50") && err.contains("did you mean `queue_depth`?"), "{err}");
    assert!(err.contains("unknown key `fail_if` in step 3"), "{err}");
}
