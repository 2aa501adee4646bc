//! Runs without a terminal: the refusal to start without `--yes`, timeouts that end a step's whole
//! process group, streamed logs, failed rollbacks, retries, step ranges, variables and
//! environments, the journal's shape, rolling back a past run, and reading runs back.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::Value;

use crate::support::{Outcome, Runbook};

const HEADER: &str = "[runbook]\nname = \"process\"\n\n";

fn runbook(rb: &Runbook, steps: &str) -> PathBuf {
    rb.file("rb.toml", &format!("{HEADER}{steps}"))
}

fn run_yes(rb: &Runbook, file: &Path, extra: &[&str]) -> Outcome {
    let mut args = vec!["run", file.to_str().expect("a UTF-8 path"), "--yes"];
    args.extend_from_slice(extra);
    rb.run(&args)
}

fn events<'a>(journal: &'a [Value], name: &str) -> Vec<&'a Value> {
    journal.iter().filter(|e| e["event"] == name).collect()
}

fn run_finished(journal: &[Value]) -> &Value {
    events(journal, "run_finished").pop().expect("a run_finished event")
}

fn run_dirs(rb: &Runbook) -> Vec<PathBuf> {
    match std::fs::read_dir(rb.state_dir().join("runs")) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The one run folder of this test, for tests that watch a run while it goes on.
fn only_run_dir(rb: &Runbook) -> PathBuf {
    let dirs = run_dirs(rb);
    assert_eq!(dirs.len(), 1, "expected one run folder: {dirs:?}");
    dirs.into_iter().next().unwrap()
}

/// Poll until `ready` holds, or fail after a while.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A run in the background. If the test fails first, the run is stopped (SIGTERM, which also
/// ends its step's process group) rather than left waiting for ever.
struct Background(Child);

impl Background {
    fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for runbook") {
                return status.code().expect("runbook exited with a code");
            }
            assert!(Instant::now() < deadline, "runbook did not finish within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: Signal) {
        let _ = nix::sys::signal::kill(Pid::from_raw(self.0.id() as i32), signal);
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.signal(Signal::SIGTERM);
            std::thread::sleep(Duration::from_secs(3));
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Start `runbook run FILE --yes` in the background, with no terminal.
fn spawn_yes(rb: &Runbook, file: &Path) -> Background {
    let child = rb
        .command(&["run", file.to_str().unwrap(), "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start runbook");
    Background(child)
}

fn journal_text(run_dir: &Path) -> String {
    std::fs::read_to_string(run_dir.join("journal.jsonl")).unwrap_or_default()
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Processes (pid, command line) whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse() else { continue };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(marker) {
            found.push((pid, cmdline));
        }
    }
    found
}

const APPENDS: &str = r#"
[[step]]
id = "a"
title = "one"
kind = "apply"
run = "echo 1 >> {{runbook_dir}}/ran.log"
rollback = "echo undo1 >> {{runbook_dir}}/undo.log"

[[step]]
id = "b"
title = "two"
kind = "apply"
run = "echo 2 >> {{runbook_dir}}/ran.log"
rollback = "echo undo2 >> {{runbook_dir}}/undo.log"

[[step]]
id = "c"
title = "three"
kind = "apply"
run = "echo 3 >> {{runbook_dir}}/ran.log"
rollback = "echo undo3 >> {{runbook_dir}}/undo.log"

[[step]]
id = "d"
title = "four"
kind = "apply"
run = "echo 4 >> {{runbook_dir}}/ran.log"
rollback = "echo undo4 >> {{runbook_dir}}/undo.log"
"#;

#[test]
fn refuses_without_a_terminal_or_yes() {
    let rb = Runbook::new();
    let file = runbook(&rb, APPENDS);
    let out = rb.run(&["run", file.to_str().unwrap()]).code(5);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert_eq!(rb.read("ran.log"), "");
    assert!(run_dirs(&rb).is_empty(), "a refused run left a folder: {:?}", run_dirs(&rb));
}

#[test]
fn a_timeout_fails_the_step_and_ends_its_whole_process_group() {
    let rb = Runbook::new();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    // A unique sleep length: every process of the step carries it on its command line.
    let marker = format!("300.{}{}", std::process::id(), nanos.subsec_nanos());
    let steps = APPENDS.replace(
        "echo 2 >> {{runbook_dir}}/ran.log",
        &format!("bash -c 'sleep {marker} & sleep {marker}; echo' {marker}\"\ntimeout = \"1s"),
    );
    let file = runbook(&rb, &steps);
    // Bounded: if the group were not killed, the step's pipe would stay open for 300 seconds.
    assert_eq!(spawn_yes(&rb, &file).wait(Duration::from_secs(10)), 3);
    let left = processes_with(&marker);
    for (pid, _) in &left {
        // These are the test's own processes, left behind by the failure being reported.
        let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    assert!(left.is_empty(), "processes of the timed-out step are still alive: {left:#?}");
    assert_eq!(rb.read("ran.log"), "1\n", "step 3 ran after the timeout");
    assert_eq!(rb.read("undo.log"), "undo2\nundo1\n");
    let journal = rb.journal();
    let finished = events(&journal, "step_finished");
    assert_eq!(finished[1]["outcome"], "timed_out");
    let check = finished[1]["check"].as_str().unwrap();
    assert!(check.starts_with("timed out after 1"), "{check}");
    assert_eq!(run_finished(&journal)["status"], "rolled_back");
}

#[test]
fn output_reaches_the_step_log_as_it_comes_and_whole() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        r#"
[[step]]
title = "print, wait, print a lot"
kind = "check"
run = "echo first-line; while [ ! -f {{runbook_dir}}/go ]; do sleep 0.05; done; echo second-line; seq 1 50000"
"#,
    );
    let mut child = spawn_yes(&rb, &file);
    wait_until("the run folder", || run_dirs(&rb).len() == 1);
    let dir = only_run_dir(&rb);
    let log = dir.join("logs/01-run.log");
    wait_until("the first line in the step log", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("first-line")
    });
    // The step is under way, and its start is already on disk.
    let last = journal_text(&dir).lines().last().map(parse_json).unwrap();
    assert_eq!(last["event"], "step_started", "{last}");
    rb.file("go", "");
    assert_eq!(child.wait(Duration::from_secs(30)), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    let expected: String = (1..=50000).map(|n| format!("{n}\n")).collect();
    assert_eq!(text, format!("first-line\nsecond-line\n{expected}"));
    let out = rb.run(&["logs", "last", "1"]).success();
    assert!(out.stdout.contains("second-line\n1\n2\n") && out.stdout.contains("\n50000\n"));
}

#[test]
fn a_failed_rollback_exits_4_and_names_the_steps_still_applied() {
    let rb = Runbook::new();
    let steps = APPENDS
        .replace("echo undo2 >> {{runbook_dir}}/undo.log", "echo undo2-failed; exit 7")
        .replace("echo 3 >> {{runbook_dir}}/ran.log", "echo 3 >> {{runbook_dir}}/ran.log; false");
    let file = runbook(&rb, &steps);
    let out = run_yes(&rb, &file, &[]).code(4);
    assert_eq!(rb.read("ran.log"), "1\n2\n3\n");
    // Step 3 was undone; step 2's rollback failed, so the rollback stopped before step 1.
    assert_eq!(rb.read("undo.log"), "undo3\n");
    assert!(out.stdout.contains("still applied"), "{}", out.stdout);
    assert!(out.stdout.contains("step 2 two"), "{}", out.stdout);
    assert!(out.stdout.contains("step 1 one"), "{}", out.stdout);
    let journal = rb.journal();
    let end = run_finished(&journal);
    assert_eq!(end["status"], "rollback_failed");
    assert_eq!(end["exit_code"], 4);
    let mut still: Vec<u64> =
        end["still_applied"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    still.sort();
    assert_eq!(still, [1, 2]);
}

#[test]
fn retries_run_a_failing_step_again() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        r#"
[[step]]
title = "flaky"
kind = "check"
run = "echo try >> {{runbook_dir}}/tries; false"
retries = 2
"#,
    );
    run_yes(&rb, &file, &[]).code(3);
    assert_eq!(rb.read("tries"), "try\ntry\ntry\n");
    let journal = rb.journal();
    let attempts: Vec<&Value> =
        events(&journal, "step_finished").into_iter().map(|e| &e["attempt"]).collect();
    assert_eq!(attempts, [1, 2, 3]);
}

#[test]
fn from_and_to_select_steps_by_number_or_id() {
    for (from, to) in [("2", "3"), ("b", "c")] {
        let rb = Runbook::new();
        let file = runbook(&rb, APPENDS);
        run_yes(&rb, &file, &["--from", from, "--to", to]).success();
        assert_eq!(rb.read("ran.log"), "2\n3\n", "--from {from} --to {to}");
    }
    let rb = Runbook::new();
    let file = runbook(&rb, APPENDS);
    let out = run_yes(&rb, &file, &["--from", "nope"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("no step has id \"nope\""), "{}", out.stderr);
    assert!(run_dirs(&rb).is_empty());
}

const GREETING: &str = r#"
[vars]
greeting = "hello"

[[step]]
title = "greet"
kind = "apply"
run = "echo {{greeting}} > {{runbook_dir}}/greeting"
rollback = "rm -f {{runbook_dir}}/greeting"
"#;

#[test]
fn var_overrides_a_declared_variable() {
    let rb = Runbook::new();
    let file = runbook(&rb, GREETING);
    run_yes(&rb, &file, &["--var", "greeting=bonjour"]).success();
    assert_eq!(rb.read("greeting"), "bonjour\n");
    assert_eq!(rb.journal()[0]["vars"]["greeting"], "bonjour");
}

#[test]
fn an_unknown_var_is_a_clear_error() {
    let rb = Runbook::new();
    let file = runbook(&rb, GREETING);
    let out = run_yes(&rb, &file, &["--var", "greting=bonjour"]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("greting"), "{}", out.stderr);
    assert!(out.stderr.contains("[vars]"), "{}", out.stderr);
    assert_eq!(rb.read("greeting"), "");
    assert!(run_dirs(&rb).is_empty(), "nothing ran, yet a run folder was left");
}

const ENVS: &str = r#"
[vars]
target = "nowhere"

[env.staging.vars]
target = "stage"

[env.production.vars]
target = "prod"

[[step]]
title = "everywhere"
kind = "apply"
run = "echo {{target}} >> {{runbook_dir}}/ran.log"
rollback = "true"

[[step]]
title = "production only"
kind = "apply"
only_env = ["production"]
run = "echo prod-only >> {{runbook_dir}}/ran.log"
rollback = "true"

[[step]]
title = "after"
kind = "check"
run = "echo after-{{env}} >> {{runbook_dir}}/ran.log"
"#;

#[test]
fn env_is_required_when_the_runbook_defines_environments() {
    let rb = Runbook::new();
    let file = runbook(&rb, ENVS);
    let out = run_yes(&rb, &file, &[]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--env"), "{}", out.stderr);
    assert!(out.stderr.contains("production, staging"), "{}", out.stderr);
    let out = run_yes(&rb, &file, &["--env", "qa"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("unknown environment \"qa\""), "{}", out.stderr);
    assert!(out.stderr.contains("production, staging"), "{}", out.stderr);
    assert_eq!(rb.read("ran.log"), "");
    assert!(run_dirs(&rb).is_empty());
}

#[test]
fn only_env_skips_a_step_in_another_environment() {
    let rb = Runbook::new();
    let file = runbook(&rb, ENVS);
    run_yes(&rb, &file, &["--env", "staging"]).success();
    assert_eq!(rb.read("ran.log"), "stage\nafter-staging\n");
    let journal = rb.journal();
    let skipped = events(&journal, "step_skipped");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["step"], 2);

    let rb = Runbook::new();
    let file = runbook(&rb, ENVS);
    run_yes(&rb, &file, &["--env", "production"]).success();
    assert_eq!(rb.read("ran.log"), "prod\nprod-only\nafter-production\n");
}

#[test]
fn every_journal_event_is_a_json_line_with_ts_and_increasing_seq() {
    let rb = Runbook::new();
    let file = runbook(&rb, ENVS);
    run_yes(&rb, &file, &["--env", "staging", "--reason", "ticket OPS-42"]).success();
    let id = rb.last_run_id();
    let text = journal_text(&rb.state_dir().join("runs").join(&id));
    assert!(text.ends_with('\n'), "the last event is not a whole line");
    let mut last_seq = 0;
    for line in text.lines() {
        let event = parse_json(line);
        let ts = event["ts"].as_str().expect("a ts");
        chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("{ts}: {e}"));
        assert!(ts.ends_with('Z'), "not UTC: {ts}");
        let seq = event["seq"].as_u64().expect("a seq");
        assert!(seq > last_seq, "seq {seq} after {last_seq}");
        last_seq = seq;
    }
    let first = parse_json(text.lines().next().unwrap());
    assert_eq!(first["event"], "run_started");
    assert_eq!(first["run_id"], id.as_str());
    let source = std::fs::read(&file).unwrap();
    let hash = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&source));
    assert_eq!(first["hash"], hex::encode(hash));
    assert_eq!(first["operator"], "tester");
    assert_eq!(first["host"], runbook::host());
    assert_eq!(first["reason"], "ticket OPS-42");
    assert_eq!(first["env"], "staging");
    assert_eq!(first["vars"]["target"], "stage");
}

/// Start a run of steps 1 and 2, then a long step 3, and stop it with SIGINT while step 3 runs.
fn interrupted_run(rb: &Runbook) -> (PathBuf, String) {
    let steps = APPENDS.replace(
        "echo 3 >> {{runbook_dir}}/ran.log",
        "echo 3 >> {{runbook_dir}}/ran.log; sleep 30",
    );
    let file = runbook(rb, &steps);
    let mut child = spawn_yes(rb, &file);
    wait_until("step 3 to start", || rb.read("ran.log") == "1\n2\n3\n");
    child.signal(Signal::SIGINT);
    assert_eq!(child.wait(Duration::from_secs(30)), 130);
    assert_eq!(rb.read("undo.log"), "", "--yes leaves the rollback to a person");
    (file, rb.last_run_id())
}

#[test]
fn rollback_of_a_past_run_uses_the_journalled_commands_newest_first() {
    let rb = Runbook::new();
    let (file, id) = interrupted_run(&rb);
    let before = rb.journal();
    assert_eq!(run_finished(&before)["status"], "interrupted");
    assert_eq!(events(&before, "interrupted")[0]["step"], 3);
    // Today's file says something else, and then is gone: the journal is what counts.
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace("undo", "NEW")).unwrap();
    std::fs::remove_file(&file).unwrap();

    let out = rb.run(&["rollback", &id, "--yes"]).success();
    assert_eq!(rb.read("undo.log"), "undo3\nundo2\nundo1\n", "{out:#?}");
    assert_eq!(rb.last_run_id(), id, "the rollback started a new run");
    let after = rb.journal();
    assert_eq!(after[..before.len()], before[..], "the old events changed");
    let undone: Vec<&Value> =
        events(&after, "rollback_finished").into_iter().map(|e| &e["step"]).collect();
    assert_eq!(undone, [3, 2, 1]);
    let seqs: Vec<u64> = after.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(run_finished(&after)["status"], "rolled_back");

    let again = rb.run(&["rollback", &id, "--yes"]).code(5);
    assert!(again.stderr.contains("nothing to roll back"), "{}", again.stderr);
    assert_eq!(rb.read("undo.log"), "undo3\nundo2\nundo1\n");
}

#[test]
fn history_lists_runs_newest_first() {
    let rb = Runbook::new();
    let file = runbook(&rb, APPENDS);
    for reason in ["first", "second", "third"] {
        run_yes(&rb, &file, &["--reason", reason]).success();
    }
    let out = rb.run(&["history", "--json"]).success();
    let runs = parse_json(&out.stdout);
    let reasons: Vec<&Value> = runs.as_array().unwrap().iter().map(|r| &r["reason"]).collect();
    assert_eq!(reasons, ["third", "second", "first"]);
    for run in runs.as_array().unwrap() {
        let id = run["id"].as_str().unwrap();
        assert!(rb.state_dir().join("runs").join(id).join("journal.jsonl").exists());
        assert_eq!(run["status"], "succeeded");
    }
}

#[test]
fn show_and_logs_find_runs_and_steps() {
    let rb = Runbook::new();
    let steps = APPENDS
        .replace("echo 1 >> {{runbook_dir}}/ran.log", "echo output-of-one")
        .replace("echo 2 >> {{runbook_dir}}/ran.log", "echo output-of-two");
    let file = runbook(&rb, &steps);
    run_yes(&rb, &file, &[]).success();
    let id = rb.last_run_id();
    for wanted in [id.as_str(), &id[..id.len() - 2], "last"] {
        let shown = parse_json(&rb.run(&["show", wanted, "--json"]).success().stdout);
        assert_eq!(shown["id"], id.as_str(), "show {wanted}");
        assert_eq!(shown["status"], "succeeded");
        assert_eq!(shown["steps"].as_array().unwrap().len(), 4);
        assert_eq!(shown["events"][0]["event"], "run_started");
    }
    for step in ["2", "b"] {
        let out = rb.run(&["logs", &id, step]).success();
        assert!(out.stdout.contains("output-of-two"), "logs {step}: {}", out.stdout);
        assert!(!out.stdout.contains("output-of-one"), "logs {step}: {}", out.stdout);
    }
    let logs = parse_json(&rb.run(&["logs", &id, "1", "--json"]).success().stdout);
    assert_eq!(logs[0]["step"], 1);
    assert_eq!(logs[0]["output"], "output-of-one\n");
    let missing = rb.run(&["logs", &id, "9"]);
    assert_ne!(missing.code, 0);
    assert!(missing.stderr.contains("no step 9"), "{}", missing.stderr);
}

#[test]
fn a_torn_last_journal_line_is_tolerated() {
    let rb = Runbook::new();
    let (_, id) = interrupted_run(&rb);
    let path = rb.state_dir().join("runs").join(&id).join("journal.jsonl");
    let whole = rb.journal().len();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"ts":"2026-01-01T00:00:00Z","seq":99,"event":"step_fin"#);
    std::fs::write(&path, text).unwrap();

    let history = parse_json(&rb.run(&["history", "--json"]).success().stdout);
    assert_eq!(history[0]["id"], id.as_str());
    let shown = parse_json(&rb.run(&["show", &id, "--json"]).success().stdout);
    assert_eq!(shown["events"].as_array().unwrap().len(), whole);
    rb.run(&["show", &id]).success();

    rb.run(&["rollback", &id, "--yes"]).success();
    assert_eq!(rb.read("undo.log"), "undo3\nundo2\nundo1\n");
    // What the rollback appended is readable: it did not land on the torn line.
    let shown = parse_json(&rb.run(&["show", &id, "--json"]).success().stdout);
    let events = shown["events"].as_array().unwrap();
    let started: Vec<&Value> =
        events.iter().filter(|e| e["event"] == "rollback_started").map(|e| &e["step"]).collect();
    assert_eq!(started, [3, 2, 1]);
    assert_eq!(shown["status"], "rolled_back");
    rb.run(&["rollback", &id, "--yes"]).code(5);
}

/// A step that starts three processes the old engine left running once it was stopped: one in the
/// background (bash makes it ignore SIGINT), one that ignores SIGTERM, and one that left the
/// process group with setsid. Each writes its pid to `pids`; the step then waits.
const STUBBORN: &str = r#"
[[step]]
title = "stubborn"
kind = "apply"
run = """
export P={{runbook_dir}}/pids
sleep 300 & echo $! >> "$P"
bash -c 'trap "" TERM; echo $$ >> "$P"; exec sleep 300' &
setsid bash -c 'echo $$ >> "$P"; exec sleep 300' &
while [ "$(wc -l < "$P")" -lt 3 ]; do sleep 0.05; done
echo started >> {{runbook_dir}}/ran.log
sleep 300
"""
rollback = "true"
"#;

/// The pids the step wrote down.
fn step_pids(rb: &Runbook) -> Vec<i32> {
    rb.read("pids").lines().map(|l| l.trim().parse().expect("a pid")).collect()
}

/// Whether `pid` still runs (a zombie has stopped running; its parent has yet to reap it).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim().starts_with('Z')))
}

/// Fail naming the step's processes still running; kill them first (they are this test's).
fn assert_all_gone(pids: &[i32], when: &str) {
    let left: Vec<i32> = pids.iter().copied().filter(|p| running(*p)).collect();
    kill_all(&left);
    assert!(left.is_empty(), "{when}: processes of the stopped step still run: {left:?}");
}

/// End processes this test's step started, by pid.
fn kill_all(pids: &[i32]) {
    for pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::SIGKILL);
    }
}

/// Stop the stubborn step with `signal` sent to runbook, and check the process table.
fn stopped_step_leaves_nothing(signal: nix::sys::signal::Signal) {
    let rb = Runbook::new();
    let file = runbook(&rb, STUBBORN);
    let mut child = spawn_yes(&rb, &file);
    wait_until("the step's processes", || rb.read("ran.log") == "started\n");
    let pids = step_pids(&rb);
    assert_eq!(pids.len(), 3, "{pids:?}");
    child.signal(signal);
    // The grace period is 2 s; the run ends once every process of the step is gone.
    assert_eq!(child.wait(Duration::from_secs(15)), 130);
    assert_all_gone(&pids, signal.as_str());
    assert_eq!(events(&rb.journal(), "interrupted")[0]["signal"], signal.as_str());
}

#[test]
fn ctrl_c_left_background_term_ignoring_and_setsid_children_running() {
    stopped_step_leaves_nothing(nix::sys::signal::SIGINT);
}

#[test]
fn sigterm_left_background_term_ignoring_and_setsid_children_running() {
    stopped_step_leaves_nothing(nix::sys::signal::SIGTERM);
}

#[test]
fn sighup_left_background_term_ignoring_and_setsid_children_running() {
    stopped_step_leaves_nothing(nix::sys::signal::SIGHUP);
}

#[test]
fn a_timeout_left_background_term_ignoring_and_setsid_children_running() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        &STUBBORN.replace("rollback = \"true\"", "rollback = \"true\"\ntimeout = \"2s\""),
    );
    let started = Instant::now();
    assert_eq!(spawn_yes(&rb, &file).wait(Duration::from_secs(15)), 3);
    let pids = step_pids(&rb);
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert_all_gone(&pids, "timeout");
    // The timeout (2 s) and the grace period (2 s), not the step's 300 s.
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(events(&rb.journal(), "step_finished")[0]["outcome"], "timed_out");
}

#[test]
fn a_daemon_a_step_starts_on_purpose_keeps_running_after_it_ends_normally() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        r#"
[[step]]
title = "start a daemon"
kind = "apply"
run = "setsid bash -c 'exec sleep 300' > /dev/null 2>&1 & echo $! > {{runbook_dir}}/pids; sleep 300 > /dev/null 2>&1 & echo $! >> {{runbook_dir}}/pids"
rollback = "true"

[[step]]
title = "later"
kind = "check"
run = "sleep 0.5"
"#,
    );
    rb.run(&["run", file.to_str().unwrap(), "--yes"]).success();
    let pids = step_pids(&rb);
    assert_eq!(pids.len(), 2, "{pids:?}");
    let alive: Vec<bool> = pids.iter().map(|p| running(*p)).collect();
    kill_all(&pids);
    assert_eq!(alive, [true, true], "a daemon started on purpose was stopped");
}

/// runbook adopts what its steps leave running (it is their subreaper): when such a daemon ends,
/// runbook collects its exit instead of keeping a zombie for the rest of the run.
#[test]
fn adopted_daemons_are_reaped_not_left_as_zombies() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        r#"
[[step]]
title = "a short daemon"
kind = "apply"
run = "sleep 0.2 > /dev/null 2>&1 &"
rollback = "true"

[[step]]
title = "it ends meanwhile"
kind = "check"
run = "sleep 0.6"

[[step]]
title = "no zombie child of runbook"
kind = "check"
run = "ps -o pid=,stat=,comm= --ppid $PPID | grep ' Z' && exit 1 || true"
"#,
    );
    let out = rb.run(&["run", file.to_str().unwrap(), "--yes"]);
    assert_eq!(out.code, 0, "{out:#?}");
}

/// Whether `pid` has a handler for SIGTERM (bit 15 of SigCgt in its status).
fn catches_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (Signal::SIGTERM as u64 - 1)) != 0)
}

/// Signal handlers without SA_RESTART made a blocked Redis read fail with EINTR: a SIGTERM during
/// the restore of a flush failed the rollback and left keys missing. SIGTERMs now arrive all
/// through the restore of a past run, and every key comes back.
#[test]
fn sigterm_during_a_restore_cut_its_redis_io_with_eintr() {
    let server = crate::support::RedisServer::start();
    let mut c = server.client(0);
    const KEYS: usize = 60_000;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(5_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.set(format!("page:{i}"), format!("cached page {i}")).ignore();
        }
        let _: () = pipe.query(&mut c).unwrap();
    }
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        &format!(
            "[[step]]\ntitle = \"flush\"\nkind = \"flush\"\nredis = \"{}\"\npattern = \"page:*\"\nmax_keys = 1000000\n",
            server.url(0)
        ),
    );
    run_yes(&rb, &file, &[]).success();
    let size: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 0);
    let id = rb.last_run_id();
    let mut child = Background(
        rb.command(&["rollback", &id, "--yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(rb.path().join("rollback.err")).unwrap())
            .spawn()
            .expect("start runbook rollback"),
    );
    // Before its handler is installed, SIGTERM would simply end the process.
    wait_until("the SIGTERM handler", || catches_sigterm(child.0.id()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the rollback did not finish");
        child.signal(Signal::SIGTERM);
        sent += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let size: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert!(sent > 10, "the restore was over before the signals came ({sent} sent)");
    let said = rb.read("rollback.err");
    assert_eq!(size, KEYS, "keys missing after a restore under SIGTERM ({sent} signals): {said}");
}

/// runbook blocks the signals it catches in its own threads (so none cuts their I/O); a step must
/// not inherit that mask, or SIGTERM and Ctrl-C could not stop it.
#[test]
fn a_step_inherited_runbooks_blocked_signals() {
    let rb = Runbook::new();
    let file = runbook(
        &rb,
        "[[step]]\ntitle = \"mask\"\nkind = \"check\"\nrun = \"grep SigBlk /proc/self/status > {{runbook_dir}}/mask\"\n",
    );
    run_yes(&rb, &file, &[]).success();
    assert_eq!(rb.read("mask").split_whitespace().nth(1), Some("0000000000000000"));
}

/// After a normal exit, the leftovers of a step are adopted for reaping by a scan of our children;
/// without the step's marker, any other child (an ssh master, another host's step) was adopted
/// too, and reaped by the next spawn, which stole the exit status its own handle waits for.
#[test]
fn another_childs_exit_status_was_reaped_by_the_next_spawn() {
    use runbook::process::{Spawn, run};
    static NEVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let spawn = |command| Spawn { command, cwd: None, timeout: None, env: &[], interrupt: &NEVER };
    let mut other = std::process::Command::new("sleep").arg("0.3").spawn().unwrap();
    run(&spawn("true"), &mut |_| {}).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    run(&spawn("true"), &mut |_| {}).unwrap();
    let status = other.wait().expect("the other child's exit was still ours to collect");
    assert!(status.success(), "{status:?}");
}
