//! Secrets never leave the process: one test per leak path of issue 10 item 2, through the
//! binary, each checked everywhere a text goes: what the run printed, every file of the state
//! directory (journal, step logs, note), `show --json`, the Markdown and HTML notes, `runbook
//! logs` and the team store's Redis stream.

use redis::Commands;

use crate::support::{Outcome, RedisServer, Runbook};

/// Everything a finished run left readable, by where it was read.
fn everything(
    t: &Runbook,
    store: &RedisServer,
    run: &Outcome,
    name: &str,
) -> Vec<(String, String)> {
    let mut seen = vec![("run output".to_string(), format!("{}{}", run.stdout, run.stderr))];
    // A flush backup holds the deleted keys themselves, names included: that is data, not text
    // the program wrote about the run.
    let files = crate::support::walk(&t.state_dir());
    for file in files.into_iter().filter(|f| f.extension().is_none_or(|e| e != "backup")) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        seen.push((file.display().to_string(), text));
    }
    for args in [
        &["show", "last", "--json"][..],
        &["report", "last"],
        &["report", "last", "--format", "html"],
        &["logs", "last"],
        &["logs", "last", "--json"],
    ] {
        let out = t.run(args);
        seen.push((args.join(" "), format!("{}{}", out.stdout, out.stderr)));
    }
    let stream: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("runbook:journal:{name}"))
        .arg("-")
        .arg("+")
        .query(&mut store.client(0))
        .unwrap();
    assert!(!stream.is_empty(), "the run was mirrored to the team stream");
    seen.push(("team stream".to_string(), format!("{stream:?}")));
    seen
}

/// Fail when any of `hidden` appears anywhere the run's texts went.
fn assert_hidden(seen: &[(String, String)], hidden: &[&str]) {
    for (place, text) in seen {
        for secret in hidden {
            assert!(!text.contains(secret), "{secret:?} shown in {place}:\n{text}");
        }
    }
}

fn store_section(store: &RedisServer) -> String {
    format!("[store]\nredis = \"{}\"\n", store.url(0))
}

#[test]
fn watch_matching_lines_and_the_until_line_never_show_a_secret() {
    let secret = "tok-watch-5e4d3c2b";
    let store = RedisServer::start();
    let t = Runbook::new().env("TOKEN", secret);
    t.file(
        "rb.toml",
        &format!(
            "[runbook]\nname = \"leak-watch\"\n{}\n[vars]\ntoken = {{ from_env = \"TOKEN\", secret = true }}\n\n[[step]]\ntitle = \"watch\"\nkind = \"watch\"\ncommand = \"echo ERR using {{{{token}}}}; echo done with {{{{token}}}}; sleep 5\"\nfor = \"10s\"\nfail_on = [\"ERR\"]\nmax = 5\nuntil = \"done\"\n",
            store_section(&store)
        ),
    );
    let run = t.run(&["run", "rb.toml", "--yes"]).success();
    assert!(run.stdout.contains("ended early on until"), "{run:?}");
    let seen = everything(&t, &store, &run, "leak-watch");
    assert_hidden(&seen, &[secret]);
    let json = t.run(&["show", "last", "--json"]).stdout;
    assert!(json.contains("ERR using ***"), "the matching line is kept, masked: {json}");
    assert!(json.contains("done with ***"), "the until line is kept, masked: {json}");
}

#[test]
fn a_secret_in_a_flush_or_measure_pattern_or_a_measure_cwd_is_never_shown() {
    let tenant = "acme-tenant-7f6e5d";
    let redis = RedisServer::start();
    let mut c = redis.client(0);
    for key in ["a1", "a2", "b1", "b2", "b3"] {
        let _: () = c.set(format!("tenant:{tenant}:{key}"), "cached").unwrap();
    }
    let t = Runbook::new().env("TENANT", tenant);
    let dir = t.path().join(format!("work-{tenant}"));
    std::fs::create_dir(&dir).unwrap();
    let url = redis.url(0);
    t.file(
        "rb.toml",
        &format!(
            r#"[runbook]
name = "leak-pattern"
{store}
[vars]
tenant = {{ from_env = "TENANT", secret = true }}

[[step]]
title = "keys before"
kind = "measure"
redis = "{url}"
pattern = "tenant:{{{{tenant}}}}:*"

[[step]]
title = "depth, from the tenant's folder"
kind = "measure"
run = "pwd; echo depth=3"
cwd = "{{{{runbook_dir}}}}/work-{{{{tenant}}}}"
capture = ["depth=(?P<depth>\\d+)"]

[[step]]
title = "flush the a keys"
kind = "flush"
redis = "{url}"
pattern = "tenant:{{{{tenant}}}}:a*"

[[step]]
title = "flush every key, refused"
kind = "flush"
redis = "{url}"
pattern = "tenant:{{{{tenant}}}}:*"
max_keys = 1
"#,
            store = store_section(&redis)
        ),
    );
    let run = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert!(run.stdout.contains("refusing to flush: 3 keys match"), "{run:?}");
    let keys: Vec<String> = c.scan_match("tenant:*").unwrap().filter_map(Result::ok).collect();
    assert_eq!(keys.len(), 5, "the a keys were restored by the rollback: {keys:?}");
    let seen = everything(&t, &redis, &run, "leak-pattern");
    assert_hidden(&seen, &[tenant]);
    let events = t.journal();
    let flush = events.iter().find(|e| e["event"] == "step_started" && e["step"] == 3).unwrap();
    assert_eq!(flush["work"]["patterns"][0], "tenant:${RUNBOOK_SECRET_TENANT}:a*");
    let done = events.iter().find(|e| e["event"] == "step_finished" && e["step"] == 3).unwrap();
    assert_eq!(done["details"]["patterns"][0], "tenant:${RUNBOOK_SECRET_TENANT}:a*");
    assert_eq!(done["details"]["deleted"], 2);
}

/// A Redis password holding `/`, `#` and `?`, given in a `--var` not declared secret, and another
/// one in a step's output: both hidden whole wherever they would appear.
#[test]
fn a_redis_password_with_slash_hash_and_question_mark_is_never_shown() {
    let store = RedisServer::start();
    let password = "p/ss#w?rd-77";
    let other = "x/y#z?w-99";
    let t = Runbook::new().env("OTHER", &format!("redis://:{other}@elsewhere:1/0"));
    t.file(
        "rb.toml",
        &format!(
            "[runbook]\nname = \"leak-url\"\n{}\n[vars]\nurl = \"redis://127.0.0.1:1/0\"\n\n[[step]]\ntitle = \"print\"\nkind = \"check\"\nrun = \"echo connecting to {{{{url}}}}; echo and to $OTHER\"\n\n[[step]]\ntitle = \"flush\"\nkind = \"flush\"\nredis = \"{{{{url}}}}\"\npattern = \"page:*\"\n",
            store_section(&store)
        ),
    );
    let url = format!("redis://:{password}@127.0.0.1:{}/0", store.port);
    let run = t.run(&["run", "rb.toml", "--yes", "--var", &format!("url={url}")]).code(3);
    assert!(run.stdout.contains("connecting to ***"), "{run:?}");
    assert!(run.stdout.contains("and to redis://:***@elsewhere:1/0"), "{run:?}");
    let seen = everything(&t, &store, &run, "leak-url");
    assert_hidden(&seen, &[password, other, "ss#w", "y#z"]);
    let started = &t.journal()[0];
    assert!(
        started["vars"].get("url").is_none(),
        "a secret's value is never journalled: {started}"
    );
    assert!(started["secrets"].as_array().unwrap().iter().any(|s| s == "url"), "{started}");
}

/// The password of a unix-socket URL is a query parameter, `?pass=`, which the redis client reads.
#[test]
fn a_pass_query_parameter_is_never_shown() {
    let store = RedisServer::start();
    let password = "unix-pass-4c3b2a";
    let other = "other-pass-1a2b3c";
    let t = Runbook::new()
        .env("CACHE_URL", &format!("redis+unix:///nonexistent/redis.sock?db=0&pass={password}"))
        .env("OTHER", &format!("unix:///run/r.sock?pass={other}&db=1"));
    t.file(
        "rb.toml",
        &format!(
            "[runbook]\nname = \"leak-pass\"\n{}\n[vars]\nurl = {{ from_env = \"CACHE_URL\" }}\n\n[[step]]\ntitle = \"print\"\nkind = \"check\"\nrun = \"echo using {{{{url}}}}; echo and $OTHER\"\n\n[[step]]\ntitle = \"cache before\"\nkind = \"measure\"\nredis = \"{{{{url}}}}\"\n",
            store_section(&store)
        ),
    );
    let run = t.run(&["run", "rb.toml", "--yes"]);
    assert_ne!(run.code, 0, "the socket does not exist: {run:?}");
    assert!(run.stdout.contains("and unix:///run/r.sock?pass=***&db=1"), "{run:?}");
    let seen = everything(&t, &store, &run, "leak-pass");
    assert_hidden(&seen, &[password, other]);
}

#[test]
fn a_secret_too_short_to_mask_is_refused_by_check_when_written_in_the_file() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"short\"\n[vars]\ntoken = { value = \"e\", secret = true }\n[[step]]\ntitle = \"a\"\nkind = \"check\"\nrun = \"echo hello\"\n",
    );
    let out = t.run(&["check", "rb.toml"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("secret `token` is 1 characters long"), "{out:?}");
    assert!(out.stderr.contains("at least 6 characters"), "{out:?}");
    assert!(out.stderr.contains("***cho h***llo"), "the reason is given: {out:?}");
}

/// A one-character secret used to turn `echo hello` into `***cho h***llo`, showing the secret.
#[test]
fn a_secret_too_short_to_mask_is_refused_at_run_time_with_the_reason() {
    let t = Runbook::new().env("TOKEN", "e");
    t.file(
        "rb.toml",
        "[runbook]\nname = \"short\"\n[vars]\ntoken = { from_env = \"TOKEN\", secret = true }\n[[step]]\ntitle = \"a\"\nkind = \"check\"\nrun = \"echo hello > {{runbook_dir}}/ran\"\n",
    );
    t.run(&["check", "rb.toml"]).success();
    let out = t.run(&["run", "rb.toml", "--yes"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("variable `token` is secret and its value (from the environment variable TOKEN) is 1 characters long; expected at least 6"),
        "{out:?}"
    );
    assert!(out.stderr.contains("garble"), "{out:?}");
    assert!(!t.path().join("ran").exists(), "nothing ran");
}

#[test]
fn a_url_password_written_in_a_step_is_refused_by_check() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"literal\"\n[vars]\npw = { from_env = \"PW\", secret = true }\n[[step]]\ntitle = \"flush\"\nkind = \"flush\"\nredis = \"redis://:hunter2-pw@cache:6379/0\"\npattern = \"page:*\"\n[[step]]\ntitle = \"fine\"\nkind = \"check\"\nrun = \"redis-cli -u redis://:{{pw}}@cache/0 ping; curl https://u:$TOKEN@example.com\"\n",
    );
    let out = t.run(&["check", "rb.toml"]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("step 1 writes a URL password in the runbook"), "{out:?}");
    assert!(!out.stderr.contains("step 2 writes"), "placeholders and $VARS are fine: {out:?}");
}
