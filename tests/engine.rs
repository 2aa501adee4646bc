//! One engine over one journal, through the binary: what a replay runs is what the run ran (no
//! text masked after the fact), a second `rollback` or a `resume` racing it never acts on the same
//! state, a crashed run's leftover processes are settled before its rollback, a damaged journal
//! line stops a replay, going on after a stop happens inside the same run, and a run with a flush
//! killed at any point is closed by `resume` or `rollback` with every flushed key back.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use redis::Commands;

use crate::support::{RedisServer, Runbook};

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start `runbook ARGS` in the background with no terminal.
fn spawn(t: &Runbook, args: &[&str]) -> Child {
    t.command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), said)
}

const SECRET_LITERAL: &str = r#"[runbook]
name = "literal"

[vars]
token = { from_env = "APP_TOKEN", secret = true }

[[step]]
title = "make the locks"
kind = "apply"
run = "mkdir -p {{runbook_dir}}/g && touch {{runbook_dir}}/g/applock.lock {{runbook_dir}}/g/other.lock && test -n {{token}}"
rollback = "rm -f {{runbook_dir}}/g/applock.lock"

[[step]]
title = "next"
kind = "check"
run = "true"
"#;

/// Masked text replayed: a secret whose value (`applock`) is also literal text in a command
/// turned the recorded `rm -f g/applock.lock` into `rm -f g/***.lock`, and `rollback RUN` then
/// deleted every `.lock` file in `g/`.
#[test]
fn rollback_of_a_past_run_replays_the_command_as_it_ran_not_masked_text() {
    let t = Runbook::new().env("APP_TOKEN", "applock");
    t.file("rb.toml", SECRET_LITERAL);
    t.crash_after(3, &["run", "rb.toml", "--yes"]);
    let text = std::fs::read_to_string(
        t.state_dir().join("runs").join(t.last_run_id()).join("journal.jsonl"),
    )
    .unwrap();
    assert!(text.contains("g/applock.lock"), "recorded as it ran: {text}");
    assert!(!text.contains("***"), "nothing masked after the fact: {text}");
    t.run(&["rollback", "last", "--yes"]).success();
    assert!(!t.path().join("g/applock.lock").exists(), "the step's own file is undone");
    assert!(t.path().join("g/other.lock").exists(), "nothing else is touched");
}

/// A plain variable holding a secret's text came back at resume as "deploy ***bet".
#[test]
fn resume_uses_plain_values_verbatim_even_when_a_secret_is_part_of_them() {
    let t = Runbook::new().env("APP_TOKEN", "alphab");
    t.file(
        "rb.toml",
        r#"[runbook]
name = "verbatim"

[vars]
token = { from_env = "APP_TOKEN", secret = true }
message = "deploy"

[[step]]
title = "one"
kind = "check"
run = "test -n {{token}}"

[[step]]
title = "two"
kind = "check"
run = "echo {{message}} >> {{runbook_dir}}/said"
"#,
    );
    t.crash_after(3, &["run", "rb.toml", "--yes", "--var", "message=deploy alphabet"]);
    t.run(&["resume", "last", "--yes"]).success();
    assert_eq!(t.read("said"), "deploy alphabet\n");
}

const SLOW_UNDO: &str = r#"[runbook]
name = "slow"

[[step]]
title = "one"
kind = "apply"
run = "echo run 1 >> {{runbook_dir}}/trail"
rollback = "sleep 0.3; echo undo 1 >> {{runbook_dir}}/trail"

[[step]]
title = "two"
kind = "apply"
run = "echo run 2 >> {{runbook_dir}}/trail"
rollback = "sleep 0.3; echo undo 2 >> {{runbook_dir}}/trail"

[[step]]
title = "three"
kind = "check"
run = "true"
"#;

/// Two rollbacks raced: the state was read before the lock and the steps were undone twice
/// (`r2 r1 r2 r1`); a resume racing a rollback re-ran steps of a rolled-back run.
#[test]
fn two_rollbacks_or_a_rollback_and_a_resume_started_together_exactly_one_acts() {
    for second in ["rollback", "resume"] {
        let t = Runbook::new();
        t.file("rb.toml", SLOW_UNDO);
        t.crash_after(5, &["run", "rb.toml", "--yes"]);
        let a = spawn(&t, &["rollback", "last", "--yes"]);
        let b = spawn(&t, &[second, "last", "--yes"]);
        let (ca, ea) = finish(a);
        let (cb, eb) = finish(b);
        // Whichever took the lock acted: the rollback undid each step once, or the resume went on
        // (step 3 is a check) and the rollback was refused. Never both, never a step twice.
        let trail = t.read("trail");
        let rolled_back = trail == "run 1\nrun 2\nundo 2\nundo 1\n";
        let resumed = second == "resume" && cb == 0 && trail == "run 1\nrun 2\n";
        assert!(rolled_back || resumed, "{second}: {trail:?}\n{ea}\n{eb}");
        let codes = [ca, cb];
        assert!(
            codes.contains(&0) && codes.contains(&5),
            "one acts, one is refused: {codes:?}\n{ea}\n{eb}"
        );
    }
}

/// `rollback RUN` of a crashed run neither waited for nor stopped the in-flight step's leftover
/// processes: the rollback ran while the step was still changing things.
#[test]
fn rollback_of_a_crashed_run_stops_the_in_flight_steps_processes_first() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        r#"[runbook]
name = "leftover"

[[step]]
title = "long"
kind = "apply"
run = "echo $$ > {{runbook_dir}}/pid; sleep 60"
rollback = "p=$(cat {{runbook_dir}}/pid); if [ -e /proc/$p ] && ! grep -q '^State:.Z' /proc/$p/status; then echo alive >> {{runbook_dir}}/trail; else echo gone >> {{runbook_dir}}/trail; fi"
"#,
    );
    let mut run = spawn(&t, &["run", "rb.toml", "--yes"]);
    wait_until("the step to start", || t.read("pid").trim().parse::<i32>().is_ok());
    run.kill().unwrap();
    run.wait().unwrap();
    let pid: i32 = t.read("pid").trim().parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the step outlived the engine");
    let out = t.run(&["rollback", "last", "--yes"]).success();
    assert!(out.said().contains("processes are still running"), "{out:?}");
    assert_eq!(t.read("trail"), "gone\n", "the leftover was stopped before the rollback ran");
}

/// A run of SLOW_UNDO killed after its second step finished: the test, its journal's path and
/// lines, for tests that damage the journal.
fn crashed_after_two_steps() -> (Runbook, std::path::PathBuf, Vec<String>) {
    let t = Runbook::new();
    t.file("rb.toml", SLOW_UNDO);
    t.crash_after(5, &["run", "rb.toml", "--yes"]);
    let path = t.state_dir().join("runs").join(t.last_run_id()).join("journal.jsonl");
    let lines = std::fs::read_to_string(&path).unwrap().lines().map(String::from).collect();
    (t, path, lines)
}

/// One flipped byte inside a `step_started` line in the middle of a journal: `rollback RUN` passed
/// over that step ("has no rollback") and recorded `rolled_back`.
#[test]
fn a_damaged_middle_line_stops_rollback_and_resume_unless_accepted() {
    let (t, path, mut lines) = crashed_after_two_steps();
    assert!(lines[1].contains("step_started"));
    lines[1] = lines[1].replacen('{', "#", 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    for command in ["rollback", "resume"] {
        let out = t.run(&[command, "last", "--yes"]).code(5);
        assert!(out.said().contains("cannot be read: 2"), "{command}: {out:?}");
        assert!(out.said().contains("--accept-damaged-journal"), "{out:?}");
    }
    assert_eq!(t.read("trail"), "run 1\nrun 2\n", "nothing was undone");
    t.run(&["rollback", "last", "--yes", "--accept-damaged-journal"]).success();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(r#""event":"damage_accepted","lines":[2]"#), "{text}");
}

const SIX: &str = r#"[runbook]
name = "six"

[[step]]
title = "one"
kind = "apply"
run = "echo run 1 >> {{runbook_dir}}/trail"
rollback = "echo undo 1 >> {{runbook_dir}}/trail"

[[step]]
title = "two"
kind = "apply"
run = "echo run 2 >> {{runbook_dir}}/trail"
rollback = "echo undo 2 >> {{runbook_dir}}/trail"

[[step]]
title = "three"
kind = "apply"
run = "echo run 3 >> {{runbook_dir}}/trail; test ! -e {{runbook_dir}}/break"
rollback = "echo undo 3 >> {{runbook_dir}}/trail"
"#;

/// After an interruption the tool printed `runbook run FILE --from N`: a new run that knew
/// nothing of the steps still applied, whose later failure said "nothing to roll back".
/// `resume --from` goes on inside the same run, so a later failure undoes everything.
#[test]
fn going_on_from_a_step_happens_in_the_same_run_and_its_failure_undoes_everything() {
    let t = Runbook::new();
    t.file("rb.toml", &SIX.replace("echo run 2 >> {{runbook_dir}}/trail", SLOW_TWO));
    let child = spawn(&t, &["run", "rb.toml", "--yes"]);
    wait_until("step 2 to start", || t.read("trail").contains("run 2"));
    terminate(&child);
    assert_eq!(finish(child).0, 130);
    std::fs::write(t.path().join("quick"), "").unwrap();
    std::fs::write(t.path().join("break"), "").unwrap();
    let out = t.run(&["resume", "last", "--yes", "--from", "2"]).code(3);
    assert!(out.said().contains("resuming run"), "{out:?}");
    assert_eq!(
        t.read("trail"),
        "run 1\nrun 2\nrun 2\nrun 3\nundo 3\nundo 2\nundo 1\n",
        "the failure rolled back the steps the first part applied"
    );
    let ids = t.run(&["history", "--json"]).success();
    let runs: serde_json::Value = serde_json::from_str(&ids.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "one run, not two");
}

/// Step 2 of SIX, slow until `quick` exists.
const SLOW_TWO: &str =
    "echo run 2 >> {{runbook_dir}}/trail; test -e {{runbook_dir}}/quick || sleep 30";

fn terminate(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

/// An unattended run interrupted by SIGTERM leaves its steps applied and says how to go on in
/// the same run; never `run --from`.
#[test]
fn an_interrupted_run_says_to_resume_it_not_to_start_a_new_one() {
    let t = Runbook::new();
    t.file("rb.toml", &SIX.replace("echo run 2 >> {{runbook_dir}}/trail", SLOW_TWO));
    let child = spawn(&t, &["run", "rb.toml", "--yes"]);
    wait_until("step 2 to start", || t.read("trail").contains("run 2"));
    terminate(&child);
    let (code, err) = finish(child);
    assert_eq!(code, 130, "{err}");
    let id = t.last_run_id();
    assert!(err.contains(&format!("runbook resume {id}")), "{err}");
    assert!(!err.contains("--from 2 "), "{err}");
    assert!(!err.contains("runbook run "), "never a new run: {err}");
    // Resume goes on inside the run: step 2 (interrupted, still applied) is run again, unattended.
    std::fs::write(t.path().join("quick"), "").unwrap();
    let out = t.run(&["resume", &id, "--yes"]).success();
    assert!(out.said().contains("Applied now: steps 1, 2."), "{out:?}");
    assert!(out.said().contains("Step 2 (two) was interrupted"), "{out:?}");
    assert_eq!(t.read("trail"), "run 1\nrun 2\nrun 2\nrun 3\n");
}

const FLUSH: &str = r#"[runbook]
name = "flushy"

[vars]
redis_url = "URL"

[[step]]
title = "before"
kind = "apply"
run = "echo run 1 >> {{runbook_dir}}/trail"
rollback = "echo undo 1 >> {{runbook_dir}}/trail"

[[step]]
title = "flush"
kind = "flush"
redis = "{{redis_url}}"
pattern = "page:*"
batch = 200

[[step]]
title = "fails"
kind = "check"
run = "exit 1"
"#;

fn seed(server: &RedisServer, n: usize) {
    let mut c = server.client(0);
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.set(format!("page:{i}"), format!("value {i}")).ignore();
    }
    pipe.set("other", "kept").ignore();
    let _: () = pipe.query(&mut c).unwrap();
}

fn pages(server: &RedisServer) -> usize {
    let mut c = server.client(0);
    let keys: Vec<String> = c.scan_match("page:*").unwrap().filter_map(Result::ok).collect();
    keys.len()
}

/// Killed mid-flush (with backup), `rollback RUN` restored the keys and then failed on every later
/// call ("backup incomplete") and never undid the steps before the flush. Now every journal
/// event of a run with a flush is a kill point, and `resume` or `rollback` closes the run with
/// every key back, step 1 undone once, and a second call refused.
#[test]
fn a_run_with_a_flush_killed_at_any_event_is_closed_with_every_key_back() {
    // run_started, 1: started, finished; 2: started, finished; 3: started, finished;
    // the unattended answer; rollbacks of 2 and 1; run_finished: 12 events.
    for kill_after in 1..=11 {
        for closer in ["resume", "rollback"] {
            let server = RedisServer::start();
            seed(&server, 1000);
            let t = Runbook::new();
            t.file("rb.toml", &FLUSH.replace("URL", &server.url(0)));
            t.crash_after(kill_after, &["run", "rb.toml", "--yes"]);
            let out = t.run(&[closer, "last", "--yes"]);
            let trail = t.read("trail");
            if !trail.contains("run 1") {
                // Killed before step 1 ran: nothing to undo, the run is only closed.
                assert!(matches!(out.code, 0 | 3 | 5), "{closer} after {kill_after}: {out:?}");
            } else {
                assert!(matches!(out.code, 0 | 3), "{closer} after {kill_after}: {out:?}");
                let undone = trail.matches("undo 1").count();
                assert_eq!(undone, 1, "{closer} after {kill_after}: {trail}");
            }
            assert_eq!(
                pages(&server),
                1000,
                "{closer} after {kill_after}: every flushed key is back"
            );
            let mut c = server.client(0);
            let v: String = c.get("page:7").unwrap();
            assert_eq!(v, "value 7");
            for again in ["rollback", "resume"] {
                let out = t.run(&[again, "last", "--yes"]);
                assert_eq!(out.code, 5, "{again} after {closer} after {kill_after}: {out:?}");
            }
        }
    }
}

#[test]
fn a_flush_killed_mid_way_rolls_back_from_the_backup_it_wrote_then_the_steps_before_it() {
    let server = RedisServer::start();
    seed(&server, 60_000);
    let t = Runbook::new();
    t.file("rb.toml", &FLUSH.replace("URL", &server.url(0)).replace("batch = 200", "batch = 50"));
    let mut run = spawn(&t, &["run", "rb.toml", "--yes"]);
    wait_until("the flush to start deleting", || pages(&server) < 60_000);
    // Hold every write where it is, so the kill lands mid-flush however fast the machine is.
    let mut admin = server.client(0);
    let _: () =
        redis::cmd("CLIENT").arg("PAUSE").arg(60_000).arg("WRITE").query(&mut admin).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    run.kill().unwrap();
    run.wait().unwrap();
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut admin).unwrap();
    assert!(pages(&server) < 60_000, "killed mid-flush");
    let out = t.run(&["rollback", "last", "--yes"]).success();
    assert!(out.said().contains("backup ends early"), "{out:?}");
    assert_eq!(pages(&server), 60_000, "every flushed key is back");
    assert_eq!(t.read("trail"), "run 1\nundo 1\n", "and the step before it is undone");
    t.run(&["rollback", "last", "--yes"]).code(5);
    t.run(&["resume", "last", "--yes"]).code(5);
}

/// The HTML note of a passed rehearsal had a red header: its tone matched a display label.
#[test]
fn a_passed_rehearsal_has_a_good_header_in_the_html_note() {
    let t = Runbook::new();
    t.file("rb.toml", SLOW_UNDO);
    t.run(&["rehearse", "rb.toml", "--yes"]).success();
    let html = t.run(&["report", "last", "--format", "html"]).success().stdout;
    assert!(html.contains("<header class=\"good\">"), "{html}");
}

/// `show` and the note said "succeeded / Command: runbook run" for a run that crashed and was
/// resumed, and nothing of a `--from/--to` slice.
#[test]
fn show_and_the_note_tell_of_slices_crashes_resumes_and_who_answered() {
    let t = Runbook::new();
    t.file("rb.toml", SIX);
    t.crash_after(3, &["run", "rb.toml", "--yes", "--to", "2"]);
    t.run(&["resume", "last", "--yes"]).success();
    let show = t.run(&["show", "last"]).success().stdout;
    assert!(show.contains("steps    1-2 of 3 (a slice: run --from/--to)"), "{show}");
    assert!(show.contains("`runbook resume` by tester"), "{show}");
    assert!(show.contains("after a stop with no end recorded (a crash)"), "{show}");
    let note = t.run(&["report", "last"]).success().stdout;
    assert!(note.contains("runbook run --from 1 --to 2"), "{note}");
    assert!(note.contains("Taken over later:"), "{note}");
}

/// A deleted middle line, or a whole last line that does not read, was passed over: a step that
/// ran was never undone.
#[test]
fn a_deleted_line_or_a_whole_damaged_last_line_is_damage_not_a_torn_tail() {
    for (what, cut) in [("deleted", 3usize), ("last", 5)] {
        let (t, path, mut lines) = crashed_after_two_steps();
        if what == "deleted" {
            lines.remove(cut - 1);
        } else {
            lines[cut - 1] = lines[cut - 1].replacen("step_finished", "step_fXnished", 1);
        }
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let out = t.run(&["rollback", "last", "--yes"]).code(5);
        assert!(out.said().contains("cannot be read"), "{what}: {out:?}");
        assert_eq!(t.read("trail"), "run 1\nrun 2\n", "{what}: nothing undone");
    }
}

/// `resume --from` jumped over a step left in flight, or past the run's range, and said
/// "succeeded".
#[test]
fn resume_from_never_jumps_over_a_step_in_doubt_or_past_the_runs_steps() {
    let t = Runbook::new();
    t.file("rb.toml", SIX);
    t.crash_after(4, &["run", "rb.toml", "--yes"]);
    let out = t.run(&["resume", "last", "--yes", "--from", "3"]).code(5);
    assert!(out.said().contains("step 2 of run"), "{out:?}");
    let t = Runbook::new();
    t.file("rb.toml", SIX);
    t.run(&["run", "rb.toml", "--yes", "--to", "2"]).success();
    let out = t.run(&["resume", "last", "--yes", "--from", "3"]).code(5);
    assert!(out.said().contains("covers steps up to 2"), "{out:?}");
}

/// A rollback command left running by a crash was run a second time beside the first.
#[test]
fn a_rollback_left_running_by_a_crash_is_stopped_before_the_rollback_goes_on() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        r#"[runbook]
name = "slowundo"

[[step]]
title = "one"
kind = "apply"
run = "true"
rollback = "echo undo-start >> {{runbook_dir}}/trail; echo $$ > {{runbook_dir}}/rbpid; test -e {{runbook_dir}}/quick || sleep 30; echo undo-end >> {{runbook_dir}}/trail"

[[step]]
title = "fails"
kind = "check"
run = "exit 1"
"#,
    );
    let mut run = spawn(&t, &["run", "rb.toml", "--yes"]);
    wait_until("the rollback to start", || t.path().join("rbpid").exists());
    run.kill().unwrap();
    run.wait().unwrap();
    std::fs::write(t.path().join("quick"), "").unwrap();
    let out = t.run(&["rollback", "last", "--yes"]).success();
    assert!(out.said().contains("processes are still running"), "{out:?}");
    assert_eq!(t.read("trail"), "undo-start\nundo-start\nundo-end\n", "never two at once");
}

/// A secret given with `--var` was never recorded, and `resume` re-read the runbook's own value
/// for it: another URL, possibly another server.
#[test]
fn a_secret_given_with_var_is_asked_for_at_resume_never_taken_from_the_file() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        r#"[runbook]
name = "given"

[vars]
token = { value = "file-token-value", secret = true }

[[step]]
title = "one"
kind = "check"
run = "true"

[[step]]
title = "two"
kind = "check"
run = "echo {{token}} > {{runbook_dir}}/used"
"#,
    );
    t.crash_after(3, &["run", "rb.toml", "--yes", "--var", "token=given-token-value"]);
    let out = t.run(&["resume", "last", "--yes"]).code(5);
    assert!(out.said().contains("RUNBOOK_SECRET_TOKEN"), "{out:?}");
    assert!(!t.path().join("used").exists(), "nothing ran with the file's value");
    let out = t
        .command(&["resume", "last", "--yes"])
        .env("RUNBOOK_SECRET_TOKEN", "given-token-value")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(t.read("used"), "given-token-value\n");
}
