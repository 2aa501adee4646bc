//! Team features on a real redis-server started by the test: the shared lock and the shared
//! history work across two state directories (two "machines"), and an unreachable store does
//! not stop a run.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{RedisServer, Runbook};

fn team_runbook(url: &str, step: &str) -> String {
    format!(
        r#"[runbook]
name = "team"

[lock]
redis = "{url}"

[store]
redis = "{url}"

[env.staging.vars]
x = "s"

[env.production]
require_rehearsal = {{ env = "staging", within = "1d" }}
[env.production.vars]
x = "p"

[[step]]
title = "work"
kind = "apply"
run = "{step}"
rollback = "true"
"#
    )
}

#[test]
fn a_rehearsal_on_one_machine_opens_the_gate_on_another_and_history_shows_it() {
    let server = RedisServer::start();
    let url = server.url(0);
    let alice = Runbook::new().env("RUNBOOK_OPERATOR", "alice");
    let bob = Runbook::new().env("RUNBOOK_OPERATOR", "bob");
    alice.file("rb.toml", &team_runbook(&url, "echo {{x}}"));
    bob.file("rb.toml", &team_runbook(&url, "echo {{x}}"));

    let refused = bob.run(&["run", "rb.toml", "--env", "production", "--yes"]).code(5);
    assert!(refused.stderr.contains("never passed a rehearsal in staging"), "{refused:?}");

    alice.run(&["rehearse", "rb.toml", "--env", "staging", "--yes"]).success();
    bob.run(&["run", "rb.toml", "--env", "production", "--yes"]).success();

    let history = bob.run(&["history", "--json", "--store", &url]).success();
    let runs: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let operators: Vec<&str> =
        runs.as_array().unwrap().iter().map(|r| r["operator"].as_str().unwrap()).collect();
    assert!(operators.contains(&"alice"), "alice's rehearsal is in bob's history: {operators:?}");
    assert!(operators.contains(&"bob"));
    let local = bob.run(&["history", "--json"]).success();
    assert!(!local.stdout.contains("alice"), "without --store only local runs");
}

#[test]
fn the_redis_lock_holds_across_machines_and_records_a_fencing_token() {
    let server = RedisServer::start();
    let url = server.url(0);
    let alice = Runbook::new().env("RUNBOOK_OPERATOR", "alice");
    let bob = Runbook::new().env("RUNBOOK_OPERATOR", "bob");
    alice.file("rb.toml", &team_runbook(&url, "sleep 2"));
    bob.file("rb.toml", &team_runbook(&url, "true"));

    let first = alice
        .command(&["rehearse", "rb.toml", "--env", "staging", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut c = server.client(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis::cmd("EXISTS").arg("runbook:lock:team:staging").query::<i64>(&mut c).unwrap() == 0 {
        assert!(Instant::now() < deadline, "alice never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = bob.run(&["rehearse", "rb.toml", "--env", "staging", "--yes"]).code(5);
    assert!(refused.stderr.contains("already running in this environment"), "{refused:?}");
    assert!(refused.stderr.contains("alice on"), "the holder is named: {refused:?}");
    assert!(first.wait_with_output().unwrap().status.success());

    bob.run(&["rehearse", "rb.toml", "--env", "staging", "--yes"]).success();
    let token = |t: &Runbook| -> u64 {
        let events = t.journal();
        events.iter().find(|e| e["event"] == "lock_taken").expect("lock_taken")["fencing_token"]
            .as_u64()
            .unwrap()
    };
    assert!(token(&bob) > token(&alice), "fencing tokens grow");
}

#[test]
fn an_unreachable_store_does_not_stop_the_run() {
    let mut server = RedisServer::start();
    let url = server.url(0);
    server.kill();
    let t = Runbook::new();
    t.file(
        "rb.toml",
        &format!("[runbook]\nname = \"lonely\"\n[store]\nredis = \"{url}\"\n[[step]]\ntitle = \"a\"\nkind = \"check\"\nrun = \"echo hi\"\n"),
    );
    let out = t.run(&["run", "rb.toml", "--yes"]).success();
    assert!(out.stderr.contains("team store"), "{out:?}");
    assert!(out.stderr.contains("journals locally"), "{out:?}");
    assert_eq!(t.journal().last().unwrap()["status"], "succeeded");
}
