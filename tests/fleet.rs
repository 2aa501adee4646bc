//! Rolling a block of steps out over real sshd hosts (tests/support/sshd.rs), through the
//! library: batches in order (canary first), concurrency within a batch, the failure budget over
//! the whole run (exceeded and not), a host down from the start, a link dropped mid-step.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use runbook::fleet::{BlockOutcome, BlockRun, Fleet, HostEnd, Report, run_block};
use runbook::plan::{Context, Plan};
use runbook::rollout::blocks;
use runbook::ui::Ui;

use crate::support::sshd::{self, Mode};

static NEVER: AtomicBool = AtomicBool::new(false);

/// A runbook over the fleet's hosts with `rollout` and `steps`.
fn plan(hosts: &sshd::Fleet, rollout: &str, steps: &str) -> (Plan, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = hosts.names().iter().map(|n| format!("{n:?}")).collect();
    let text = format!(
        "[runbook]\nname = \"fleet\"\n\n[env.test.hosts]\nweb = [{}]\n\n[ssh]\nconfig = {:?}\nconnect_timeout = \"2s\"\nkeepalive = \"1s\"\n\n[rollout]\n{rollout}\n\n{steps}",
        names.join(", "),
        hosts.config.display().to_string(),
    );
    let path = dir.path().join("rb.toml");
    std::fs::write(&path, &text).unwrap();
    let rb = runbook::runbook::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let plan = Plan::build(
        &rb,
        Context {
            env: Some("test"),
            overrides: &[],
            run_id: "test-run".into(),
            run_dir: dir.path().to_path_buf(),
            operator: "tester".into(),
            ask_secret: None,
            dry: true,
        },
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    (plan, dir)
}

/// Roll the plan's first block out; every report as `host:event:step`.
fn roll(plan: &Plan, dir: &Path) -> (BlockOutcome, Vec<String>) {
    let blocks = blocks(&plan.steps);
    let fleet = Fleet::new(plan.ssh.clone()).unwrap();
    let total = blocks[0].hosts.len();
    let run = BlockRun {
        plan,
        block: &blocks[0],
        fleet: &fleet,
        env: &[],
        run_dir: dir.to_path_buf(),
        done: BTreeSet::new(),
        skip: BTreeSet::new(),
        failed_before: 0,
        budget: plan.rollout.budget(total),
        interrupt: &NEVER,
    };
    let mut seen = Vec::new();
    let outcome = run_block(&run, &Ui::new(), &mut |r| {
        seen.push(match r {
            Report::Unreachable { host, .. } => format!("{host}:unreachable"),
            Report::Started { host, step, .. } => format!("{host}:start:{step}"),
            Report::Finished { host, step, result, .. } => {
                format!("{host}:{:?}:{step}", result.outcome).to_lowercase()
            }
        });
        Ok(())
    })
    .unwrap();
    fleet.close();
    (outcome, seen)
}

/// Two steps on every host; the first fails on the hosts named in `fail`.
fn two_steps(fail: &[&str]) -> String {
    let test: Vec<String> = fail.iter().map(|h| format!("test {{{{host}}}} != {h}")).collect();
    let test = if test.is_empty() { "true".to_string() } else { test.join(" && ") };
    format!(
        "[[step]]\ntitle = \"one\"\nkind = \"apply\"\non = \"web\"\nrun = \"sleep 0.2; {test}\"\nrollback = \"true\"\n\n\
         [[step]]\ntitle = \"two\"\nkind = \"check\"\non = \"web\"\nrun = \"echo {{{{host}}}}\"\n"
    )
}

/// Where each host's block started and ended in the report order.
fn position(seen: &[String], what: &str) -> usize {
    seen.iter().position(|s| s == what).unwrap_or_else(|| panic!("{what} not in {seen:?}"))
}

#[test]
fn a_five_host_rolling_run_goes_batch_by_batch_canary_first() {
    let hosts = sshd::Fleet::start(5);
    let (plan, dir) = plan(&hosts, "serial = [1, \"50%\"]\nconcurrency = 2", &two_steps(&[]));
    let (outcome, seen) = roll(&plan, dir.path());
    assert!(!outcome.exceeded && outcome.failed().is_empty(), "{outcome:?}");
    assert_eq!(outcome.hosts.len(), 5);
    assert!(outcome.hosts.iter().all(|(_, e)| *e == HostEnd::Done), "{outcome:?}");
    // Canary h1 runs the whole block before batch 2 (h2, h3) starts; batch 3 after batch 2.
    assert!(position(&seen, "h1:ok:2") < position(&seen, "h2:start:1"), "{seen:?}");
    assert!(position(&seen, "h1:ok:2") < position(&seen, "h3:start:1"), "{seen:?}");
    for later in ["h4:start:1", "h5:start:1"] {
        assert!(position(&seen, "h2:ok:2") < position(&seen, later), "{seen:?}");
        assert!(position(&seen, "h3:ok:2") < position(&seen, later), "{seen:?}");
    }
    // Within batch 2 both hosts ran at once: h3 started before h2 finished its block.
    assert!(position(&seen, "h3:start:1") < position(&seen, "h2:ok:2"), "{seen:?}");
    assert!(dir.path().join("logs/02-h4-run.log").exists());
}

#[test]
fn a_canary_failure_stops_the_rollout() {
    let hosts = sshd::Fleet::start(3);
    let steps = two_steps(&["h1"]);
    let (plan, dir) = plan(&hosts, "serial = [1, \"100%\"]", &steps);
    let (outcome, seen) = roll(&plan, dir.path());
    assert!(outcome.exceeded, "{outcome:?}");
    assert_eq!(outcome.failed(), ["h1"]);
    assert_eq!(outcome.not_started, ["h2", "h3"]);
    assert_eq!(seen, ["h1:start:1", "h1:failed:1"]);
}

#[test]
fn a_failure_within_the_budget_goes_on() {
    let hosts = sshd::Fleet::start(4);
    let steps = two_steps(&["h2"]);
    let (plan, dir) = plan(&hosts, "serial = [1, 2]\nmax_fail = \"25%\"", &steps);
    let (outcome, seen) = roll(&plan, dir.path());
    assert!(!outcome.exceeded, "{outcome:?}");
    assert_eq!(outcome.failed(), ["h2"]);
    assert!(outcome.not_started.is_empty(), "{outcome:?}");
    assert!(seen.contains(&"h4:ok:2".to_string()), "{seen:?}");
    assert!(!seen.contains(&"h2:start:2".to_string()), "a failed host goes no further: {seen:?}");
}

#[test]
fn a_budget_exceeded_mid_batch_lets_the_hosts_in_flight_finish_and_starts_no_new_one() {
    let hosts = sshd::Fleet::start(5);
    let steps = two_steps(&["h2", "h3"]);
    let (plan, dir) = plan(&hosts, "serial = [1, 2]\nmax_fail = 1\nconcurrency = 2", &steps);
    let (outcome, _) = roll(&plan, dir.path());
    assert!(outcome.exceeded, "{outcome:?}");
    let mut failed = outcome.failed();
    failed.sort();
    assert_eq!(failed, ["h2", "h3"]);
    assert_eq!(outcome.not_started, ["h4", "h5"]);
}

#[test]
fn a_host_down_from_the_start_counts_as_failed() {
    let mut hosts = sshd::Fleet::start(3);
    hosts.stop(1);
    let (plan, dir) = plan(&hosts, "serial = [\"100%\"]\nmax_fail = 1", &two_steps(&[]));
    let (outcome, seen) = roll(&plan, dir.path());
    assert!(!outcome.exceeded, "{outcome:?}");
    assert_eq!(outcome.failed(), ["h2"]);
    assert!(seen.contains(&"h2:unreachable".to_string()), "{seen:?}");
    assert!(!seen.iter().any(|s| s.starts_with("h2:start")), "{seen:?}");
    let (_, end) = outcome.hosts.iter().find(|(h, _)| h == "h2").unwrap();
    assert!(matches!(end, HostEnd::Failed { step: None, why } if why.contains("cannot reach h2")));
}

#[test]
fn a_link_dropped_mid_step_fails_that_host_only() {
    let hosts = sshd::Fleet::start(2);
    if hosts.mode == Mode::Loopback {
        eprintln!("skipped: a link can only be dropped between network namespaces");
        return;
    }
    let marker = tempfile::tempdir().unwrap();
    let m = marker.path().display().to_string();
    let steps = format!(
        "[[step]]\ntitle = \"slow\"\nkind = \"apply\"\non = \"web\"\nrun = \"touch {m}/{{{{host}}}}; sleep 4\"\nrollback = \"true\"\n"
    );
    let (plan, dir) = plan(&hosts, "serial = [\"100%\"]\nmax_fail = 1", &steps);
    let outcome = std::thread::scope(|scope| {
        let job = scope.spawn(|| roll(&plan, dir.path()));
        let h1 = marker.path().join("h1");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !h1.exists() {
            assert!(std::time::Instant::now() < deadline, "the step never started on h1");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        hosts.link_down(0);
        job.join().unwrap()
    });
    hosts.link_up(0);
    let (outcome, _) = outcome;
    assert_eq!(outcome.failed(), ["h1"], "{outcome:?}");
    let (_, end) = outcome.hosts.iter().find(|(h, _)| h == "h1").unwrap();
    assert!(
        matches!(end, HostEnd::Failed { why, .. } if why.contains("lost the ssh connection")),
        "{end:?}"
    );
    assert!(outcome.hosts.iter().any(|(h, e)| h == "h2" && *e == HostEnd::Done), "{outcome:?}");
}
