//! The flush step through the binary, against a real redis-server started by the test: only the
//! matching keys go, a later failure restores them with their TTLs, `max_keys` refuses before
//! deleting, and a password never reaches the state directory or the terminal.

use redis::Commands;

use crate::support::{RedisServer, Runbook};

fn seed(server: &RedisServer) {
    let mut c = server.client(0);
    for i in 0..300 {
        let _: () = c.set(format!("page:upload:{i}"), format!("upload page {i}")).unwrap();
        let _: () = c.set(format!("page:home:{i}"), format!("home page {i}")).unwrap();
    }
    let _: () = c.set_ex("page:upload:ttl", "expires", 600).unwrap();
}

fn count(server: &RedisServer, pattern: &str) -> usize {
    let mut c = server.client(0);
    let keys: Vec<String> = c.scan_match(pattern).unwrap().filter_map(Result::ok).collect();
    keys.len()
}

fn runbook(url_var: &str, then_fail: bool, extra: &str) -> String {
    let mut rb = format!(
        "[runbook]\nname = \"flush\"\n\n[vars]\n{url_var}\n\n[[step]]\ntitle = \"flush uploads\"\nkind = \"flush\"\nredis = \"{{{{redis_url}}}}\"\npattern = \"page:upload:*\"\n{extra}\n"
    );
    if then_fail {
        rb.push_str(
            "\n[[step]]\ntitle = \"a check that fails\"\nkind = \"check\"\nrun = \"exit 1\"\n",
        );
    }
    rb
}

#[test]
fn only_matching_keys_are_deleted_and_a_later_failure_restores_them() {
    let server = RedisServer::start();
    seed(&server);
    let t = Runbook::new();
    t.file("rb.toml", &runbook(&format!("redis_url = \"{}\"", server.url(0)), true, ""));

    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert!(out.stdout.contains("deleted 301 of 301 matching keys"), "{out:?}");
    assert!(
        out.stdout.contains("restored 301 keys from the backup (0 replaced a value written since the flush), 0 expired; deleted 0 keys matching page:upload:* written after the flush"),
        "{out:?}"
    );

    assert_eq!(count(&server, "page:upload:*"), 301, "every flushed key is back");
    assert_eq!(count(&server, "page:home:*"), 300, "other keys untouched");
    let mut c = server.client(0);
    let value: String = c.get("page:upload:42").unwrap();
    assert_eq!(value, "upload page 42");
    let ttl: i64 = c.ttl("page:upload:ttl").unwrap();
    assert!((590..=600).contains(&ttl), "TTL restored, got {ttl}");

    let events = t.journal();
    let finished = events.iter().find(|e| e["event"] == "step_finished" && e["step"] == 1).unwrap();
    assert_eq!(finished["details"]["deleted"], 301);
    assert_eq!(finished["details"]["backed_up"], 301);
}

#[test]
fn regression_a_rolled_back_flush_left_pages_the_undone_change_rendered() {
    let server = RedisServer::start();
    seed(&server);
    let t = Runbook::new();
    // After the flush the app re-renders two pages and a new one from the changed config; then
    // a check fails and the run rolls back.
    let render = format!(
        "redis-cli -p {} set page:upload:3 'max 25m' && redis-cli -p {} set page:upload:17 'max 25m' && redis-cli -p {} set page:upload:new 'max 25m'",
        server.port, server.port, server.port
    );
    let extra = format!(
        "\n[[step]]\ntitle = \"the app renders pages\"\nkind = \"apply\"\nrun = \"{render}\"\nrollback = \"true\"\n"
    );
    t.file("rb.toml", &runbook(&format!("redis_url = \"{}\"", server.url(0)), false, &extra));
    let rb = t.read("rb.toml")
        + "\n[[step]]\ntitle = \"a check that fails\"\nkind = \"check\"\nrun = \"exit 1\"\n";
    t.file("rb.toml", &rb);
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    let said = "restored 301 keys from the backup (2 replaced a value written since the flush), 0 expired; deleted 1 keys matching page:upload:* written after the flush";
    assert!(out.stdout.contains(said), "{out:?}");

    let mut c = server.client(0);
    for i in [3, 17] {
        let value: String = c.get(format!("page:upload:{i}")).unwrap();
        assert_eq!(value, format!("upload page {i}"), "the page from before the change");
    }
    let new: bool = c.exists("page:upload:new").unwrap();
    assert!(!new, "a page rendered by the undone change is gone");
    assert_eq!(count(&server, "page:upload:*"), 301);
    assert_eq!(count(&server, "page:home:*"), 300, "other keys untouched");

    let events = t.journal();
    let restore = events
        .iter()
        .find(|e| e["event"] == "rollback_finished" && e["step"] == 1)
        .expect("the flush was rolled back");
    assert_eq!(restore["details"]["replaced"], 2);
    assert_eq!(restore["details"]["deleted_new"], 1);
    let note = t.run(&["report", "last"]).success().stdout;
    let in_markdown = said.replace('*', "\\*");
    assert!(note.contains(&in_markdown), "the note gives the counts: {note}");
}

#[test]
fn a_completed_flush_is_undone_by_rollback_of_the_run() {
    let server = RedisServer::start();
    seed(&server);
    let t = Runbook::new();
    t.file("rb.toml", &runbook(&format!("redis_url = \"{}\"", server.url(0)), false, ""));
    t.run(&["run", "rb.toml", "--yes"]).success();
    assert_eq!(count(&server, "page:upload:*"), 0);
    assert_eq!(count(&server, "page:home:*"), 300);

    let id = t.last_run_id();
    let out = t.run(&["rollback", &id, "--yes"]).success();
    assert!(out.stdout.contains("restored 301 keys"), "{out:?}");
    assert_eq!(count(&server, "page:upload:*"), 301);
}

#[test]
fn max_keys_refuses_before_deleting_anything() {
    let server = RedisServer::start();
    seed(&server);
    let t = Runbook::new();
    t.file(
        "rb.toml",
        &runbook(&format!("redis_url = \"{}\"", server.url(0)), false, "max_keys = 100"),
    );
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert!(out.stdout.contains("301"), "the refusal names the count: {out:?}");
    assert_eq!(count(&server, "page:upload:*"), 301, "nothing deleted");
}

#[test]
fn a_password_never_reaches_the_state_directory_or_the_terminal() {
    let password = "s3cret-Pa55-word";
    let server = RedisServer::start_with_password(password);
    seed(&server);
    let t = Runbook::new().env("CACHE_URL", &server.url(0));
    t.file(
        "rb.toml",
        &runbook("redis_url = { from_env = \"CACHE_URL\", secret = true }", true, ""),
    );
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert_eq!(count(&server, "page:upload:*"), 301, "flushed then restored");
    assert!(!out.stdout.contains(password) && !out.stderr.contains(password), "{out:?}");
    let plan = t.run(&["plan", "rb.toml"]);
    assert!(!plan.stdout.contains(password) && !plan.stderr.contains(password));
    crate::support::assert_nowhere_below(&t.state_dir(), password);
}

#[test]
fn killing_the_server_mid_flush_is_a_clear_error_and_the_backup_brings_every_key_back() {
    let mut server = RedisServer::start();
    let port = server.port;
    let mut c = server.client(0);
    let total = 400_000u64;
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(total)
        .arg("page:upload")
        .arg(16)
        .query(&mut c)
        .unwrap();
    let t = Runbook::new();
    t.file("rb.toml", &runbook(&format!("redis_url = \"{}\"", server.url(0)), false, ""));
    let child = t
        .command(&["run", "rb.toml", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once the flush is well under way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let size: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        if size < total - 20_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the flush never started");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    server.kill();
    let out = child.wait_with_output().unwrap();
    let record = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(4),
        "the restore cannot reach the dead server either: {record}"
    );
    let deleted: u64 = record
        .split("deleted ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the error says how many keys were deleted: {record}"));
    assert!(deleted >= 20_000 && deleted < total, "deleted {deleted}; {record}");
    assert!(record.contains("re-running the step deletes what is left"), "{record}");
    assert!(record.contains("still applied"), "{record}");

    // Same address, empty server: the run's backup brings back every deleted key.
    let fresh = RedisServer::restart_on(port);
    t.run(&["rollback", "last", "--yes"]).success();
    let restored = count(&fresh, "page:upload:*") as u64;
    assert!(restored >= deleted, "restored {restored} of {deleted} deleted");
    let mut c = fresh.client(0);
    let keys: Vec<String> =
        c.scan_match("page:upload:*").unwrap().filter_map(Result::ok).take(100).collect();
    assert!(!keys.is_empty());
    for key in keys {
        let n = key.strip_prefix("page:upload:").unwrap();
        let value: Vec<u8> = c.get(&key).unwrap();
        assert!(
            value.starts_with(format!("value:{n}").as_bytes()),
            "{key} restored with its own value"
        );
    }
}

#[test]
fn a_password_given_with_var_is_not_journalled() {
    let password = "v4r-Pa55";
    let server = RedisServer::start_with_password(password);
    seed(&server);
    let t = Runbook::new();
    t.file("rb.toml", &runbook("redis_url = \"redis://127.0.0.1:1/0\"", false, ""));
    let url = server.url(0);
    t.run(&["run", "rb.toml", "--yes", "--var", &format!("redis_url={url}")]).success();
    crate::support::assert_nowhere_below(&t.state_dir(), password);
    let json = t.run(&["show", "last", "--json"]).success().stdout;
    assert!(!json.contains(password));
}

/// Issue 10 item 3: the journal held the flush URL as `***`, so `rollback RUN` said "invalid
/// Redis URL ***" and the flushed keys stayed deleted.
#[test]
fn rollback_of_a_past_flush_whose_url_holds_a_secret_restores_the_keys() {
    let password = "s3cret-Pa55-word";
    let server = RedisServer::start_with_password(password);
    seed(&server);
    let t = Runbook::new().env("CACHE_PW", password);
    let url = format!("redis://:{{{{pw}}}}@127.0.0.1:{}/0", server.port);
    let pw = "pw = { from_env = \"CACHE_PW\", secret = true }";
    t.file("rb.toml", &runbook(&format!("{pw}\nredis_url = \"{url}\""), false, ""));
    t.run(&["run", "rb.toml", "--yes"]).success();
    assert_eq!(count(&server, "page:upload:*"), 0);

    let started = t.journal().into_iter().find(|e| e["event"] == "step_started").unwrap();
    let recorded = "${RUNBOOK_SECRET_REDIS_URL}";
    assert_eq!(started["work"]["redis"], recorded, "the URL is recorded as a reference");
    assert_eq!(started["rollback"]["redis"], recorded);

    let out = t.run(&["rollback", "last", "--yes"]).success();
    assert!(out.stdout.contains("restored 301 keys"), "{out:?}");
    assert_eq!(count(&server, "page:upload:*"), 301, "every flushed key is back");
    assert!(!out.stdout.contains(password) && !out.stderr.contains(password), "{out:?}");
    crate::support::assert_nowhere_below(&t.state_dir(), password);
}

/// A URL password given with `--var` (the variable is not declared secret) is a secret all the
/// same: recorded as a reference, and `rollback RUN`, which cannot read the command line of the
/// run again, asks for it by name.
#[test]
fn a_url_password_given_with_var_is_a_secret_and_rollback_asks_for_it_by_name() {
    let password = "v4r-Pa55-word";
    let server = RedisServer::start_with_password(password);
    seed(&server);
    let t = Runbook::new();
    t.file("rb.toml", &runbook("redis_url = \"redis://127.0.0.1:1/0\"", false, ""));
    let url = server.url(0);
    t.run(&["run", "rb.toml", "--yes", "--var", &format!("redis_url={url}")]).success();
    let events = t.journal();
    assert!(events[0]["vars"].get("redis_url").is_none(), "{}", events[0]);
    assert_eq!(events[0]["secrets"], serde_json::json!(["redis_url"]));
    let started = events.iter().find(|e| e["event"] == "step_started").unwrap();
    assert_eq!(started["work"]["redis"], "${RUNBOOK_SECRET_REDIS_URL}");

    let out = t.run(&["rollback", "last", "--yes"]).code(5);
    assert!(out.stderr.contains("RUNBOOK_SECRET_REDIS_URL"), "{out:?}");
    assert_eq!(count(&server, "page:upload:*"), 0, "nothing restored without the password");
    let out = t
        .command(&["rollback", "last", "--yes"])
        .env("RUNBOOK_SECRET_REDIS_URL", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(count(&server, "page:upload:*"), 301);
    crate::support::assert_nowhere_below(&t.state_dir(), password);
}

/// The same with the password's placeholder in the step's own URL: the recorded URL keeps the
/// host and port and holds `${RUNBOOK_SECRET_PW}` where the password goes.
#[test]
fn a_secret_placeholder_in_the_flush_url_is_recorded_as_a_reference_and_replayed() {
    let password = "s3cret/Pa55#word?";
    let encoded = "s3cret%2FPa55%23word%3F";
    let server = RedisServer::start();
    seed(&server);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(password)
        .query(&mut server.client(0))
        .unwrap();
    let url = format!("redis://:{encoded}@127.0.0.1:{}/0", server.port);
    let count = |pattern: &str| {
        let mut c = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
        c.scan_match::<_, String>(pattern).unwrap().count()
    };
    let t = Runbook::new().env("CACHE_PW", encoded);
    t.file(
        "rb.toml",
        &format!(
            "[runbook]\nname = \"flush\"\n[vars]\npw = {{ from_env = \"CACHE_PW\", secret = true }}\n[[step]]\ntitle = \"flush uploads\"\nkind = \"flush\"\nredis = \"redis://:{{{{pw}}}}@127.0.0.1:{}/0\"\npattern = \"page:upload:*\"\n",
            server.port
        ),
    );
    t.run(&["run", "rb.toml", "--yes"]).success();
    assert_eq!(count("page:upload:*"), 0);
    let started = t.journal().into_iter().find(|e| e["event"] == "step_started").unwrap();
    let recorded = format!("redis://:${{RUNBOOK_SECRET_PW}}@127.0.0.1:{}/0", server.port);
    assert_eq!(started["rollback"]["redis"], recorded);
    let out = t.run(&["rollback", "last", "--yes"]).success();
    assert!(out.stdout.contains("restored 301 keys"), "{out:?}");
    assert_eq!(count("page:upload:*"), 301);
    for shown in [password, encoded] {
        crate::support::assert_nowhere_below(&t.state_dir(), shown);
    }
}

/// Issue 10 item 4: "`*` alone is refused", yet `--var pat=*` and `pattern = "**"` each emptied a
/// whole database; the guard read the file's text, not the pattern used.
#[test]
fn a_pattern_matching_every_key_is_refused_however_it_is_written_or_given() {
    let server = RedisServer::start();
    seed(&server);
    let t = Runbook::new();
    let url = server.url(0);
    let file = |pattern: &str| {
        format!(
            "[runbook]\nname = \"all\"\n[vars]\npat = \"page:upload:*\"\n[[step]]\ntitle = \"flush\"\nkind = \"flush\"\nredis = \"{url}\"\npattern = \"{pattern}\"\n"
        )
    };
    for written in ["**", "*?*", "?**"] {
        t.file("rb.toml", &file(written));
        let out = t.run(&["check", "rb.toml"]);
        assert!(out.stderr.contains("a flush pattern must name the keys"), "{written}: {out:?}");
        let out = t.run(&["run", "rb.toml", "--yes"]);
        assert_ne!(out.code, 0, "{written}: {out:?}");
    }
    t.file("rb.toml", &file("{{pat}}"));
    t.run(&["check", "rb.toml"]).success();
    for given in ["*", "**", "*?*"] {
        let var = format!("pat={given}");
        let out = t.run(&["plan", "rb.toml", "--var", &var]);
        assert!(out.stderr.contains("matches every key"), "plan, {given}: {out:?}");
        let out = t.run(&["run", "rb.toml", "--yes", "--var", &var]).code(1);
        assert!(out.stderr.contains("matches every key"), "run, {given}: {out:?}");
        assert!(out.stderr.contains("nothing was run"), "{out:?}");
    }
    assert_eq!(count(&server, "page:*"), 601, "nothing was deleted");
    let secret = Runbook::new().env("PAT", "******");
    secret.file(
        "rb.toml",
        &file("{{pat}}")
            .replace("pat = \"page:upload:*\"", "pat = { from_env = \"PAT\", secret = true }"),
    );
    let out = secret.run(&["run", "rb.toml", "--yes"]).code(1);
    assert!(out.stderr.contains("matches every key"), "a secret pattern too: {out:?}");
    assert_eq!(count(&server, "page:*"), 601, "nothing was deleted");
}

/// Issue 10 item 5: a Redis ACL user lacking RESTORE had the flush with backup delete 3,000 keys,
/// then the rollback failed with NOPERM. Now the flush asks first (ACL DRYRUN, or a probe without
/// effect for a user that may not run DRYRUN) and refuses, naming RESTORE, with nothing deleted.
#[test]
fn a_user_that_may_not_restore_is_refused_before_anything_is_deleted() {
    let server = RedisServer::start();
    let mut c = server.client(0);
    let _: () =
        redis::cmd("DEBUG").arg("POPULATE").arg(3000).arg("page:upload").query(&mut c).unwrap();
    let mut acl = |rules: &[&str]| {
        let _: () = redis::cmd("ACL").arg("SETUSER").arg(rules).query(&mut c).unwrap();
    };
    // May run ACL DRYRUN (an admin command), so the server is asked.
    acl(&["asks", "on", ">asks-pw-1", "~*", "+@all", "-restore"]);
    // May not, so RESTORE is tried on a key that exists, without effect.
    acl(&["probes", "on", ">probes-pw-1", "~*", "+@all", "-@admin", "-restore"]);
    // Everything, on the flushed keys only: allowed.
    acl(&["scoped", "on", ">scoped-pw-1", "~page:*", "+@all"]);
    for user in ["asks", "probes"] {
        let t = Runbook::new();
        let url = format!("redis_url = \"redis://{user}:{user}-pw-1@127.0.0.1:{}/0\"", server.port);
        t.file("rb.toml", &runbook(&url, false, ""));
        let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
        let printed = format!("{}{}", out.stdout, out.stderr);
        assert!(
            printed.contains(&format!("does not let {user} run what this flush needs: RESTORE")),
            "{user}: {out:?}"
        );
        assert!(printed.contains("nothing was deleted"), "{out:?}");
        assert!(printed.contains("were left as they are"), "the restore deletes nothing: {out:?}");
        assert_eq!(count(&server, "page:upload:*"), 3000, "{user}: nothing deleted");
    }
    let t = Runbook::new();
    let url = format!("redis_url = \"redis://scoped:scoped-pw-1@127.0.0.1:{}/0\"", server.port);
    t.file("rb.toml", &runbook(&url, true, ""));
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    let printed = format!("{}{}", out.stdout, out.stderr);
    assert!(printed.contains("deleted 3000 of 3000"), "{out:?}");
    assert!(printed.contains("restored 3000 keys"), "{out:?}");
    assert_eq!(count(&server, "page:upload:*"), 3000);
}

fn terminate(child: &std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

fn dbsize(c: &mut redis::Connection) -> u64 {
    redis::cmd("DBSIZE").query(c).unwrap()
}

/// Wait until `ready` holds of the key count, polling; false if `gone` holds first.
fn wait_for(c: &mut redis::Connection, ready: impl Fn(u64) -> bool) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n = dbsize(c);
        if ready(n) {
            return n;
        }
        assert!(std::time::Instant::now() < deadline, "never reached; {n} keys");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Issue 10 item 6: a SIGTERM during the in-run restore failed the rollback in 4 of 8 trials,
/// leaving 150-190k keys missing. The restore is a rollback: a signal lets it finish.
#[test]
fn a_sigterm_during_the_in_run_restore_lets_it_finish_every_time() {
    let total = 100_000u64;
    let mut hit = 0;
    for trial in 0..8 {
        let server = RedisServer::start();
        let mut c = server.client(0);
        let _: () = redis::cmd("DEBUG")
            .arg("POPULATE")
            .arg(total)
            .arg("page:upload")
            .query(&mut c)
            .unwrap();
        let t = Runbook::new();
        t.file("rb.toml", &runbook(&format!("redis_url = \"{}\"", server.url(0)), true, ""));
        let child = t
            .command(&["run", "rb.toml", "--yes"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(&mut c, |n| n == 0);
        // The restore is under way once keys come back; signal it in the middle.
        let seen = wait_for(&mut c, |n| n >= total / 10 + trial * total / 20);
        terminate(&child);
        hit += u32::from(seen < total);
        let out = child.wait_with_output().unwrap();
        let printed = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert_eq!(dbsize(&mut c), total, "trial {trial}: every key is back; {printed}");
        assert!(printed.contains(&format!("restored {total} keys")), "trial {trial}: {printed}");
    }
    assert!(hit >= 6, "the signal arrived during the restore in only {hit} of 8 trials");
}

/// During a flush a signal stops it between batches, and what it says is true: the keys it says
/// it deleted are the keys missing, all of them in the backup, which the rollback restores.
#[test]
fn a_sigterm_during_a_flush_stops_it_between_batches_with_a_true_count() {
    let total = 200_000u64;
    let server = RedisServer::start();
    let mut c = server.client(0);
    let _: () =
        redis::cmd("DEBUG").arg("POPULATE").arg(total).arg("page:upload").query(&mut c).unwrap();
    let t = Runbook::new();
    t.file("rb.toml", &runbook(&format!("redis_url = \"{}\"", server.url(0)), false, ""));
    let child = t
        .command(&["run", "rb.toml", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&mut c, |n| n < total - 20_000);
    terminate(&child);
    let out = child.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    let left = dbsize(&mut c);
    assert!(left > 0, "the flush stopped before the end: {printed}");
    let deleted = total - left;
    let said = format!("stopped between batches after deleting {deleted} of the ");
    assert!(printed.contains(&said), "the message counts the {deleted} keys gone: {printed}");
    assert!(printed.contains(&format!("all {deleted} are in the backup")), "{printed}");
    assert!(!printed.contains("connection lost"), "{printed}");
    t.run(&["rollback", "last", "--yes"]).success();
    assert_eq!(dbsize(&mut c), total, "the rollback restores every key");
}

/// Whether this process may mount a tmpfs (root); says so when it may not, and the test skips.
fn may_mount() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4k", "tmpfs"])
        .arg(dir.path())
        .output()
        .expect("run mount");
    if !out.status.success() {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs to fill ({}); the full-disk flush test needs root",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return false;
    }
    let _ = std::process::Command::new("umount").arg(dir.path()).status();
    true
}

/// Issue 10 item 9, flush part: a flush that deleted and backed up 16,015 keys was journalled as
/// "could not run ... 0ms" because its step log could not be written on a full disk, and its
/// restore, which worked, as ROLLBACK FAILED. Here the run's `logs` folder is a full 4 KiB tmpfs
/// (the first step mounts it and fills it): the journal and the backup still have room.
#[test]
fn a_flush_and_its_restore_whose_logs_meet_a_full_disk_are_recorded_as_they_ran() {
    if !may_mount() {
        return;
    }
    let server = RedisServer::start();
    let mut c = server.client(0);
    let _: () =
        redis::cmd("DEBUG").arg("POPULATE").arg(3000).arg("page:upload").query(&mut c).unwrap();
    let t = Runbook::new();
    t.file(
        "rb.toml",
        &format!(
            r#"[runbook]
name = "full-logs"

[[step]]
title = "fill the logs folder"
kind = "apply"
run = "mount -t tmpfs -o size=4k tmpfs {{{{run_dir}}}}/logs && dd if=/dev/zero of={{{{run_dir}}}}/logs/filler bs=4k count=1 2>/dev/null; test -e {{{{run_dir}}}}/logs/filler"
rollback = "umount -l {{{{run_dir}}}}/logs"

[[step]]
title = "flush uploads"
kind = "flush"
redis = "{}"
pattern = "page:upload:*"

[[step]]
title = "a check that fails"
kind = "check"
run = "exit 1"
"#,
            server.url(0)
        ),
    );
    let out = t.run(&["run", "rb.toml", "--yes"]);
    // The rollback of step 1 unmounts it; should it not have run, this does (it is ours).
    let logs = t.state_dir().join("runs").join(t.last_run_id()).join("logs");
    let _ = std::process::Command::new("umount").arg("-l").arg(&logs).output();
    let printed = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, 3, "failed and rolled back: {printed}");
    assert_eq!(dbsize(&mut c), 3000, "every key is back: {printed}");
    let journal = t.journal();
    let flushed = journal
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == 2)
        .unwrap_or_else(|| panic!("the flush's end is journalled: {printed}"));
    assert_eq!(flushed["outcome"], "ok", "{flushed}");
    let check = flushed["check"].as_str().unwrap();
    assert!(check.starts_with("deleted 3000 of 3000"), "{check}");
    assert!(check.contains("could not be written"), "{check}");
    assert_eq!(flushed["details"]["deleted"], 3000, "{flushed}");
    let restored = journal
        .iter()
        .find(|e| e["event"] == "rollback_finished" && e["step"] == 2)
        .unwrap_or_else(|| panic!("the restore's end is journalled: {printed}"));
    assert_eq!(restored["ok"], true, "{restored}");
    assert!(restored["check"].as_str().unwrap().contains("restored 3000 keys"), "{restored}");
    assert!(!printed.contains("could not run"), "{printed}");
    assert!(!printed.contains("ROLLBACK FAILED"), "{printed}");
}

#[test]
fn a_flush_cut_off_mid_way_is_rolled_back_without_deleting_the_keys_it_never_reached() {
    let server = RedisServer::start();
    let mut c = server.client(0);
    let total = 300_000u64;
    let _: () =
        redis::cmd("DEBUG").arg("POPULATE").arg(total).arg("page:upload").query(&mut c).unwrap();
    let t = Runbook::new();
    t.file(
        "rb.toml",
        &runbook(&format!("redis_url = \"{}\"", server.url(0)), false, "batch = 100"),
    );
    let child = t
        .command(&["run", "rb.toml", "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while redis::cmd("DBSIZE").query::<u64>(&mut c).unwrap() > total - 10_000 {
        assert!(std::time::Instant::now() < deadline, "the flush never started");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // The flush's connection drops; the server and the keys it has not reached stay.
    let _: () = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query(&mut c).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "failed, then rolled back: {stderr}");
    assert!(stderr.contains("were left as they are"), "{stderr}");
    let left: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(left, total, "every key is there again, the unreached ones too: {stderr}");
}
