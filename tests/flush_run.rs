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
    assert!(out.stderr.contains("deleted 301 of 301 matching keys"), "{out:?}");
    assert!(out.stderr.contains("restored 301 keys (0 already present, 0 expired)"), "{out:?}");

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
    assert!(out.stderr.contains("restored 301 keys"), "{out:?}");
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
    assert!(out.stderr.contains("301"), "the refusal names the count: {out:?}");
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
    for entry in crate::support::walk(&t.state_dir()) {
        let bytes = std::fs::read(&entry).unwrap();
        let found = bytes.windows(password.len()).any(|w| w == password.as_bytes());
        assert!(!found, "password found in {}", entry.display());
    }
}
