//! Flush, restore and measure on a real 3-primary Redis Cluster that each test starts itself
//! (`tests/support/redis_cluster.rs`): only the matching keys go from every primary, `max_keys`
//! counts the whole cluster, a crashed run and a run whose slots moved since are rolled back to
//! the right nodes, and a primary killed mid-flush is named with what was deleted where.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Outcome, RedisCluster, Runbook};

/// Everything the binary printed: the run's record (stdout) and its messages (stderr).
fn said(out: &Outcome) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

fn flush_runbook(url: &str, extra: &str, then_fail: bool) -> String {
    let mut rb = format!(
        "[runbook]\nname = \"cluster-flush\"\n\n[[step]]\ntitle = \"flush uploads\"\nkind = \"flush\"\nredis = \"{url}\"\npattern = \"page:upload:*\"\n{extra}\n"
    );
    if then_fail {
        rb.push_str(
            "\n[[step]]\ntitle = \"a check that fails\"\nkind = \"check\"\nrun = \"exit 1\"\n",
        );
    }
    rb
}

/// Wait until `done` says so, polling; panic with `what` after a minute.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn dbsize(cluster: &RedisCluster, node: usize) -> u64 {
    redis::cmd("DBSIZE").query(&mut cluster.nodes[node].client()).unwrap_or(u64::MAX)
}

#[test]
fn a_cluster_flush_deletes_only_the_matching_keys_from_every_primary() {
    let cluster = RedisCluster::start(3);
    cluster.load("key", 800_000);
    cluster.load("page:upload", 200_000);
    let t = Runbook::new();
    t.file("rb.toml", &flush_runbook(&cluster.url(), "max_keys = 250000", false));

    let out = t.run(&["run", "rb.toml", "--yes"]).success();
    assert!(
        said(&out).contains("deleted 200000 of 200000 matching keys on the cluster at"),
        "{out:?}"
    );
    assert!(said(&out).contains("(3 primaries)"), "{out:?}");
    assert_eq!(cluster.count_per_node("page:upload:*"), vec![0, 0, 0]);
    assert_eq!(cluster.count("key:*"), 800_000, "every other key is still there");

    let events = t.journal();
    let finished = events.iter().find(|e| e["event"] == "step_finished" && e["step"] == 1).unwrap();
    assert_eq!(finished["details"]["backed_up"], 200_000);
    let nodes = finished["details"]["nodes"].as_array().expect("a report per primary");
    assert_eq!(nodes.len(), 3);
    for node in nodes {
        let deleted = node["deleted"].as_u64().unwrap();
        assert!(deleted > 50_000, "every primary held about a third: {node}");
    }
}

#[test]
fn max_keys_counts_the_whole_cluster_before_deleting_anything() {
    let cluster = RedisCluster::start(3);
    cluster.load("page:upload", 3_000);
    let t = Runbook::new();
    // About 1000 keys per primary: a limit checked node by node would let this through.
    t.file("rb.toml", &flush_runbook(&cluster.url(), "max_keys = 2500", false));
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert!(said(&out).contains("3000 keys match"), "{out:?}");
    assert!(said(&out).contains("nothing was deleted"), "{out:?}");
    assert_eq!(cluster.count("page:upload:*"), 3_000);

    let plan = t.run(&["plan", "rb.toml"]).success();
    assert!(
        said(&plan).contains("3000 keys match now"),
        "the dry-run count is the cluster's: {plan:?}"
    );
}

#[test]
fn measure_on_a_cluster_sums_the_primaries_and_says_so() {
    let cluster = RedisCluster::start(3);
    cluster.load("page:upload", 300);
    cluster.load("key", 600);
    let source = runbook::steps::measure::MeasureSource::Redis {
        url: cluster.url(),
        pattern: Some("page:upload:*".into()),
    };
    let metrics = runbook::steps::measure::measure(&source).unwrap();
    let value = |name: &str| metrics.iter().find(|m| m.name == name).map(|m| m.value);
    assert_eq!(value("keys_matching"), Some(300.0), "not one node's share: {metrics:?}");
    assert_eq!(value("keys"), Some(900.0));
    assert_eq!(value("primaries"), Some(3.0));
    assert!(value("used_memory_bytes").unwrap_or(0.0) > 3.0 * 500_000.0, "three servers' memory");
}

#[test]
fn a_run_killed_mid_flush_on_a_cluster_is_rolled_back_by_rollback_run() {
    let cluster = RedisCluster::start(3);
    cluster.load("page:upload", 300_000);
    let t = Runbook::new();
    t.file("rb.toml", &flush_runbook(&cluster.url(), "batch = 100", false));
    let mut child = t
        .command(&["run", "rb.toml", "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the flush to be under way", || cluster.count_from_dbsize() < 280_000);
    child.kill().unwrap();
    child.wait().unwrap();
    let left = cluster.count("page:upload:*");
    assert!(left > 0 && left < 300_000, "killed mid-flush, {left} left");

    let id = t.last_run_id();
    let out = t.run(&["rollback", &id, "--yes"]);
    assert_eq!(cluster.count("page:upload:*"), 300_000, "every deleted key is back: {out:?}");
}

#[test]
fn a_rollback_after_the_slots_moved_restores_each_key_to_its_new_owner() {
    let cluster = RedisCluster::start(3);
    cluster.load("page:upload", 6_000);
    cluster.load("key", 3_000);
    let t = Runbook::new();
    t.file("rb.toml", &flush_runbook(&cluster.url(), "", false));
    t.run(&["run", "rb.toml", "--yes"]).success();
    assert_eq!(cluster.count("page:upload:*"), 0);
    // The application caches pages from the changed state: the rollback deletes them.
    cluster.load("page:upload:new", 500);

    // Slots move between the flush and its rollback: 1000 from the first primary to the second,
    // and one slot is left half-migrated, so its keys get ASK answers.
    cluster.reshard(0, 1, 1000);
    let slot = runbook::steps::flush::key_slot(b"page:upload:7");
    let owner = cluster.owner(slot);
    let target = (owner + 1) % 3;
    cluster.start_migration(slot, owner, target);

    let id = t.last_run_id();
    let out = t.run(&["rollback", &id, "--yes"]).success();
    assert!(said(&out).contains("restored 6000 keys"), "{out:?}");
    assert!(
        said(&out).contains("deleted 500 keys matching page:upload:* written after"),
        "{out:?}"
    );
    assert_eq!(cluster.count("page:upload:*"), 6_000);
    assert_eq!(cluster.count("key:*"), 3_000);
    let mut on_target = cluster.nodes[target].client();
    let asked: Option<String> = redis::cmd("ASKING")
        .query::<()>(&mut on_target)
        .and_then(|_| redis::cmd("GET").arg("page:upload:7").query(&mut on_target))
        .unwrap();
    assert_eq!(asked.as_deref(), Some("value:7"), "the importing node got the ASKed key");
}

#[test]
fn a_primary_killed_mid_flush_is_named_and_the_rollback_restores_once_it_is_back() {
    let mut cluster = RedisCluster::start_persistent(3);
    cluster.load("page:upload", 150_000);
    cluster.load("key", 3_000);
    let before = dbsize(&cluster, 2);
    let t = Runbook::new();
    t.file("rb.toml", &flush_runbook(&cluster.url(), "batch = 50", false));
    let child = t
        .command(&["run", "rb.toml", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the third primary to be flushing", || dbsize(&cluster, 2) < before - 2_000);
    cluster.kill(2);
    let out = child.wait_with_output().unwrap();
    let stderr =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(4),
        "the automatic restore cannot reach it either: {stderr}"
    );
    let port = cluster.nodes[2].port;
    assert!(stderr.contains("did not finish on every primary"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}/0: deleted ")), "names the node: {stderr}");
    assert!(stderr.contains("every one of them is in the backup"), "{stderr}");

    cluster.restart(2);
    t.run(&["rollback", "last", "--yes"]).success();
    assert_eq!(cluster.count("page:upload:*"), 150_000, "every deleted key is back");
    assert_eq!(cluster.count("key:*"), 3_000);
}
