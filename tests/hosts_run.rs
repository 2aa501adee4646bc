//! Runs with steps `on` a group of real sshd hosts, through the binary: a rolling run, a canary
//! failure that stops the rollout and rolls back, the failure budget (exceeded and not), a host
//! down from the start, kill -9 mid-batch then rollback, and a secret absent from `ps` on both
//! sides. Every journal event of a host step names its host.

use std::path::Path;

use serde_json::Value;

use crate::support::Runbook;
use crate::support::sshd::Fleet;

/// A runbook: a local step, then `steps` on group `web` of the fleet's hosts.
fn runbook(rb: &Runbook, hosts: &Fleet, rollout: &str, steps: &str) {
    let names: Vec<String> = hosts.names().iter().map(|n| format!("{n:?}")).collect();
    let marks = rb.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let text = format!(
        "[runbook]\nname = \"hosts\"\n\n[vars]\nmarks = {:?}\n\n[env.test.hosts]\nweb = [{}]\n\n\
         [ssh]\nconfig = {:?}\nconnect_timeout = \"2s\"\nkeepalive = \"1s\"\n\n[rollout]\n{rollout}\n\n\
         [[step]]\ntitle = \"local first\"\nkind = \"apply\"\nrun = \"touch {{{{marks}}}}/local\"\n\
         rollback = \"rm {{{{marks}}}}/local\"\n\n{steps}",
        marks.display().to_string(),
        names.join(", "),
        hosts.config.display().to_string(),
    );
    rb.file("rb.toml", &text);
}

/// Two steps on every host, each leaving a mark its rollback removes; the second fails on the
/// hosts in `fail`.
fn two_steps(fail: &[&str]) -> String {
    let test: Vec<String> = fail.iter().map(|h| format!(" && test {{{{host}}}} != {h}")).collect();
    format!(
        "[[step]]\ntitle = \"one\"\nkind = \"apply\"\non = \"web\"\n\
         run = \"touch {{{{marks}}}}/{{{{host}}}}.1\"\nrollback = \"rm -f {{{{marks}}}}/{{{{host}}}}.1\"\n\n\
         [[step]]\ntitle = \"two\"\nkind = \"apply\"\non = \"web\"\n\
         run = \"touch {{{{marks}}}}/{{{{host}}}}.2{}\"\nrollback = \"rm -f {{{{marks}}}}/{{{{host}}}}.2\"\n",
        test.join("")
    )
}

fn marks(rb: &Runbook) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(rb.path().join("marks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn events<'a>(journal: &'a [Value], name: &str) -> Vec<&'a Value> {
    journal.iter().filter(|e| e["event"] == name).collect()
}

/// `step@target` of every event called `name`, in order.
fn where_(journal: &[Value], name: &str) -> Vec<String> {
    events(journal, name)
        .iter()
        .map(|e| format!("{}@{}", e["step"], e["target"].as_str().unwrap_or("local")))
        .collect()
}

/// What the program printed: the run's record (stdout) and its errors (stderr).
fn said(out: &crate::support::Outcome) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

fn run(rb: &Runbook) -> crate::support::Outcome {
    rb.run(&["run", "rb.toml", "--env", "test", "--yes"])
}

#[test]
fn a_five_host_rolling_run_names_each_host_in_the_journal() {
    let hosts = Fleet::start(5);
    let rb = Runbook::new();
    runbook(&rb, &hosts, "serial = [1, \"50%\"]\nconcurrency = 2", &two_steps(&[]));
    let out = run(&rb).success();
    assert!(said(&out).contains("batch 1/3 on web: h1"), "{}", said(&out));
    assert!(said(&out).contains("batch 3/3 on web: h4, h5"), "{}", said(&out));
    let mut expected: Vec<String> = vec!["local".into()];
    for h in 1..=5 {
        expected.push(format!("h{h}.1"));
        expected.push(format!("h{h}.2"));
    }
    expected.sort();
    assert_eq!(marks(&rb), expected);
    let journal = rb.journal();
    let started = where_(&journal, "step_started");
    assert_eq!(started.len(), 11, "{started:?}");
    assert_eq!(started[0], "1@local");
    assert_eq!(&started[1..3], ["2@h1", "3@h1"], "the canary runs the whole block first");
    for e in events(&journal, "step_finished").iter().skip(1) {
        assert!(e["target"].as_str().is_some_and(|t| t.starts_with('h')), "{e}");
    }
    assert_eq!(events(&journal, "rollout_started").len(), 1);
}

#[test]
fn a_canary_failure_stops_the_rollout_and_rolls_back() {
    let hosts = Fleet::start(3);
    let rb = Runbook::new();
    runbook(&rb, &hosts, "serial = [1, \"100%\"]", &two_steps(&["h1"]));
    let out = run(&rb).code(3);
    assert!(said(&out).contains("over the budget of 0"), "{}", said(&out));
    let journal = rb.journal();
    assert!(
        !where_(&journal, "step_started").iter().any(|s| s.ends_with("@h2")),
        "h2 never starts"
    );
    // The failed step on h1 first (it may have partly applied), then h1's step 2, then local.
    assert_eq!(where_(&journal, "rollback_started"), ["3@h1", "2@h1", "1@local"]);
    assert!(marks(&rb).is_empty(), "{:?}", marks(&rb));
}

#[test]
fn a_failure_within_the_budget_goes_on_and_the_run_succeeds() {
    let hosts = Fleet::start(4);
    let rb = Runbook::new();
    runbook(&rb, &hosts, "serial = [1, 3]\nmax_fail = \"25%\"", &two_steps(&["h3"]));
    let out = run(&rb).success();
    assert!(
        said(&out).contains("1 failed over the run (h3), the budget allows 1"),
        "{}",
        said(&out)
    );
    assert!(marks(&rb).contains(&"h4.2".to_string()));
    assert!(where_(&rb.journal(), "rollback_started").is_empty());
}

#[test]
fn a_budget_exceeded_rolls_back_every_touched_host_in_reverse_batch_order() {
    let hosts = Fleet::start(5);
    let rb = Runbook::new();
    runbook(
        &rb,
        &hosts,
        "serial = [1, 2]\nmax_fail = 1\nconcurrency = 1",
        &two_steps(&["h2", "h3"]),
    );
    run(&rb).code(3);
    let journal = rb.journal();
    assert!(!where_(&journal, "step_started").iter().any(|s| s.ends_with("@h4")));
    let rolled = where_(&journal, "rollback_started");
    // Batch 2 (h2 then h3, one at a time) is undone before the canary h1, each host newest first.
    assert_eq!(rolled, ["3@h3", "2@h3", "3@h2", "2@h2", "3@h1", "2@h1", "1@local"]);
    assert!(marks(&rb).is_empty(), "{:?}", marks(&rb));
    let id = rb.last_run_id();
    let note = rb.run(&["report", &id]).success().stdout;
    assert!(
        note.contains("## Hosts\n\n| Host | 2. one | 3. two |\n|---|---|---|\n| h1 | rolled back | rolled back |\n| h2 | rolled back | rolled back |\n| h3 | rolled back | rolled back |\n\n"),
        "{note}"
    );
}

#[test]
fn a_host_down_from_the_start_counts_as_failed() {
    let mut hosts = Fleet::start(3);
    hosts.stop(2);
    let rb = Runbook::new();
    runbook(&rb, &hosts, "serial = [\"100%\"]", &two_steps(&[]));
    let out = run(&rb).code(3);
    assert!(said(&out).contains("h3"), "{}", said(&out));
    let journal = rb.journal();
    let down = events(&journal, "host_unreachable");
    assert_eq!(down.len(), 1, "{journal:?}");
    assert_eq!(down[0]["target"], "h3");
    assert!(marks(&rb).is_empty(), "{:?}", marks(&rb));
}

#[test]
fn kill_9_mid_batch_then_rollback_undoes_every_host() {
    let hosts = Fleet::start(3);
    let rb = Runbook::new();
    runbook(&rb, &hosts, "serial = [1, 2]\nconcurrency = 1", &two_steps(&[]));
    // Events: run_started, step 1 started/finished, rollout_started, then h1's four, then h2's
    // first start: killed there, mid-batch.
    rb.crash_after(9, &["run", "rb.toml", "--env", "test", "--yes"]);
    assert!(marks(&rb).contains(&"h1.2".to_string()), "{:?}", marks(&rb));
    let id = rb.last_run_id();
    let out = rb.run(&["rollback", &id, "--yes"]).success();
    assert!(marks(&rb).is_empty(), "{:?}\n{}", marks(&rb), out.stderr);
    let rolled = where_(&rb.journal(), "rollback_started");
    assert_eq!(rolled.first().map(String::as_str), Some("2@h2"), "{rolled:?}");
    assert!(rolled.contains(&"3@h1".to_string()) && rolled.ends_with(&["1@local".to_string()]));
}

#[test]
fn a_secret_reaches_each_host_but_no_command_line_on_either_side() {
    let hosts = Fleet::start(2);
    let rb = Runbook::new().env("DEPLOY_TOKEN", "tok-9f8e7d-secret");
    let started = rb.path().join("started");
    // The step compares with the value kept in a file, so the secret is in no command at all.
    let expected = rb.file("expected", "tok-9f8e7d-secret");
    let steps = format!(
        "[[step]]\ntitle = \"use the token\"\nkind = \"check\"\non = \"web\"\n\
         run = \"touch {}; sleep 2; test \\\"{{{{token}}}}\\\" = \\\"$(cat {})\\\"\"\n",
        started.display(),
        expected.display()
    );
    runbook(&rb, &hosts, "serial = [\"100%\"]", &steps);
    let text = rb
        .read("rb.toml")
        .replace("[vars]\n", "[vars]\ntoken = { from_env = \"DEPLOY_TOKEN\", secret = true }\n");
    rb.file("rb.toml", &text);
    let mut child = rb
        .command(&["run", "rb.toml", "--env", "test", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "the step never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let seen: Vec<String> =
        command_lines().into_iter().filter(|l| l.contains("tok-9f8e7d")).collect();
    let status = child.wait().unwrap();
    assert!(seen.is_empty(), "the secret is on a command line: {seen:?}");
    assert_eq!(status.code(), Some(0), "the step did not get the secret");
    crate::support::assert_nowhere_below(&rb.state_dir(), "tok-9f8e7d-secret");
}

fn command_lines() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(bytes) = std::fs::read(Path::new(&entry.path()).join("cmdline")) {
            out.push(String::from_utf8_lossy(&bytes).replace('\0', " "));
        }
    }
    out
}

#[test]
fn kill_9_mid_batch_then_resume_goes_on_per_host() {
    let hosts = Fleet::start(3);
    let rb = Runbook::new();
    runbook(&rb, &hosts, "serial = [1, 2]\nconcurrency = 1", &two_steps(&[]));
    rb.crash_after(9, &["run", "rb.toml", "--env", "test", "--yes"]);
    let id = rb.last_run_id();
    let out = rb.run(&["resume", &id, "--yes"]).success();
    assert!(said(&out).contains("going on per host"), "{}", said(&out));
    let started = where_(&rb.journal(), "step_started");
    // h1 had finished its block: it does not run again; h2's step in flight runs again.
    assert_eq!(started.iter().filter(|s| s.ends_with("@h1")).count(), 2, "{started:?}");
    assert_eq!(started.iter().filter(|s| *s == "2@h2").count(), 2, "{started:?}");
    assert!(started.contains(&"3@h3".to_string()), "{started:?}");
    assert_eq!(marks(&rb).len(), 7, "{:?}", marks(&rb));
}

#[test]
fn resume_failed_hosts_retries_only_the_failed_hosts_from_their_failed_step() {
    let hosts = Fleet::start(3);
    let rb = Runbook::new();
    let gate = rb.path().join("gate");
    std::fs::create_dir_all(gate.join("h2")).unwrap();
    // Step two fails on a host while the gate holds a folder named after it.
    let steps = two_steps(&[]).replace(
        "touch {{marks}}/{{host}}.2",
        &format!("test ! -e {}/{{{{host}}}} && touch {{{{marks}}}}/{{{{host}}}}.2", gate.display()),
    );
    runbook(&rb, &hosts, "serial = [\"100%\"]\nmax_fail = 1", &steps);
    let out = run(&rb).success();
    assert!(said(&out).contains("1 failed over the run (h2)"), "{}", said(&out));
    let id = rb.last_run_id();
    std::fs::remove_dir(gate.join("h2")).unwrap();
    let out = rb.run(&["resume", &id, "--failed-hosts", "--yes"]).success();
    assert!(said(&out).contains("Retrying the failed hosts of run"), "{}", said(&out));
    let started = where_(&rb.journal(), "step_started");
    assert_eq!(started.iter().filter(|s| *s == "3@h2").count(), 2, "{started:?}");
    assert_eq!(started.iter().filter(|s| *s == "2@h2").count(), 1, "{started:?}");
    assert_eq!(started.iter().filter(|s| *s == "1@local").count(), 1, "{started:?}");
    assert_eq!(started.iter().filter(|s| s.ends_with("@h1")).count(), 2, "{started:?}");
    assert!(marks(&rb).contains(&"h2.2".to_string()), "{:?}", marks(&rb));
    let again = rb.run(&["resume", &id, "--failed-hosts", "--yes"]);
    assert!(said(&again).contains("has no failed hosts to retry"), "{again:?}");
}

/// Wait until `path` exists (a step has started somewhere).
fn wait_for(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_link_that_drops_mid_run_fails_that_host_and_the_others_go_on() {
    let hosts = Fleet::start(3);
    if hosts.mode == crate::support::sshd::Mode::Loopback {
        eprintln!("skipped: a link can only be dropped between network namespaces");
        return;
    }
    let rb = Runbook::new();
    let steps = "[[step]]\ntitle = \"slow\"\nkind = \"apply\"\non = \"web\"\n\
         run = \"touch {{marks}}/{{host}}.1; sleep 3\"\nrollback = \"rm -f {{marks}}/{{host}}.1\"\n";
    runbook(&rb, &hosts, "serial = [\"100%\"]\nmax_fail = 1", steps);
    let child = rb
        .command(&["run", "rb.toml", "--env", "test", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&rb.path().join("marks/h2.1"));
    hosts.link_down(1);
    let out = child.wait_with_output().unwrap();
    hosts.link_up(1);
    let stderr =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("1 failed over the run (h2)"), "{stderr}");
    let journal = rb.journal();
    let h2 = events(&journal, "step_finished").into_iter().find(|e| e["target"] == "h2").cloned();
    let check = h2.map(|e| e["check"].to_string()).unwrap_or_default();
    assert!(check.contains("lost the ssh connection to h2"), "{check}");
}

#[test]
fn ctrl_c_mid_batch_stops_every_host_and_leaves_the_run_to_resume() {
    let hosts = Fleet::start(2);
    let rb = Runbook::new();
    let steps = "[[step]]\ntitle = \"long\"\nkind = \"apply\"\non = \"web\"\n\
         run = \"sleep 300 & echo $! > {{marks}}/{{host}}.pid; wait\"\nrollback = \"rm -f {{marks}}/{{host}}.pid\"\n";
    runbook(&rb, &hosts, "serial = [\"100%\"]", steps);
    let child = rb
        .command(&["run", "rb.toml", "--env", "test", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for h in ["h1", "h2"] {
        wait_for(&rb.path().join(format!("marks/{h}.pid")));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let stderr =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    for h in ["h1", "h2"] {
        let pid = std::fs::read_to_string(rb.path().join(format!("marks/{h}.pid"))).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Path::new("/proc").join(pid.trim()).exists() {
            assert!(std::time::Instant::now() < deadline, "{h}'s step outlived Ctrl-C");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    assert!(stderr.contains("runbook resume"), "{stderr}");
}

#[test]
fn a_rehearsal_runs_every_host_step_then_every_rollback_on_its_host() {
    let hosts = Fleet::start(2);
    let rb = Runbook::new();
    runbook(&rb, &hosts, "serial = [1]", &two_steps(&[]));
    let out = rb.run(&["rehearse", "rb.toml", "--env", "test", "--yes"]);
    assert_eq!(out.code, 0, "{}", said(&out));
    let rolled = where_(&rb.journal(), "rollback_started");
    assert_eq!(rolled, ["3@h2", "2@h2", "3@h1", "2@h1", "1@local"]);
    assert!(marks(&rb).is_empty(), "{:?}", marks(&rb));
}

#[test]
fn on_a_terminal_the_block_is_asked_once_and_each_host_has_a_live_line() {
    use rexpect::process::WaitStatus;
    let hosts = Fleet::start(2);
    let rb = Runbook::new();
    runbook(&rb, &hosts, "serial = [\"100%\"]", &two_steps(&[]));
    let cmd = rb.command(&["run", "rb.toml", "--env", "test"]);
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).unwrap();
    p.exp_string("Run step 1?").unwrap();
    p.send_line("run").unwrap();
    p.exp_string("Run steps 2-3 on 2 hosts of web?").unwrap();
    p.send_line("run").unwrap();
    p.exp_string("batch 1/1 on web: h1, h2").unwrap();
    p.exp_string("step 3 ok").unwrap();
    p.exp_string("steps 2-3 on web: 2 hosts ok").unwrap();
    p.exp_eof().unwrap();
    let status = p.process().wait().unwrap();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    assert_eq!(marks(&rb).len(), 5, "{:?}", marks(&rb));
}
