//! The keys for many hosts: `[env.NAME.hosts]`, `[ssh]`, `[rollout]` and step `on`, checked at
//! their line and column and shown by `plan` (the hosts, the batches, the budget).

use crate::support::Runbook;

const HOSTS: &str = r#"[runbook]
name = "deploy"

[vars]
version = "1.2.3"

[env.production.hosts]
web = ["web-1", "web-2", "deploy@10.0.0.12:2222", "web-4", "web-5"]

[env.staging.hosts]
web = ["stage-web"]

[ssh]
config = "{{runbook_dir}}/ssh_config"

[rollout]
serial = [1, "50%", "100%"]
max_fail = "20%"
concurrency = 4

[[step]]
title = "Remember the release"
kind = "backup"
on = "web"
run = "readlink /srv/app/current > /tmp/{{host}}.prev"
rollback = "rm -f /tmp/{{host}}.prev"

[[step]]
title = "Switch the release"
kind = "apply"
on = "web"
run = "ln -sfn /srv/app/releases/{{version}} /srv/app/current"
rollback = "ln -sfn $(cat /tmp/{{host}}.prev) /srv/app/current"

[[step]]
title = "Announce"
kind = "check"
run = "echo done"
"#;

/// `line:column` of every `-->` in check's output.
fn locations(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--> rb.toml:"))
        .map(String::from)
        .collect()
}

#[test]
fn hosts_rollout_and_on_pass_check() {
    let t = Runbook::new();
    t.file("rb.toml", HOSTS);
    let out = t.run(&["check", "rb.toml"]).success();
    assert!(out.stdout.contains("ok: rb.toml (deploy, 3 steps)"), "{out:?}");
}

#[test]
fn plan_shows_the_hosts_the_batches_and_the_budget() {
    let t = Runbook::new();
    t.file("rb.toml", HOSTS);
    let out = t.run(&["plan", "rb.toml", "--env", "production"]).success();
    let o = &out.stdout;
    assert!(o.contains("on:       web (web-1, web-2, deploy@10.0.0.12:2222, web-4, web-5)"), "{o}");
    assert!(o.contains("rollout over 5 hosts: batches of 1, 2, 2 (serial 1, 50%, 100%); 1 host may fail over the run (max_fail 20%); 4 at once; a rollback undoes every host the run touched"), "{o}");
    assert!(
        o.contains("  steps 1-2 on web (5 hosts):\n    batch 1: web-1\n    batch 2: web-2, deploy@10.0.0.12:2222\n    batch 3: web-4, web-5\n"),
        "{o}"
    );
    let config = t.path().canonicalize().unwrap().join("ssh_config");
    assert!(o.contains(&format!("ssh: ssh -F {}", config.display())), "{o}");
    let out = t.run(&["plan", "rb.toml", "--env", "staging"]).success();
    assert!(out.stdout.contains("rollout over 1 hosts: batches of 1 "), "{}", out.stdout);
}

#[test]
fn a_watch_step_on_hosts_is_refused_until_watch_runs_through_the_runner() {
    let t = Runbook::new();
    let watch = "\n[[step]]\ntitle = \"Watch\"\nkind = \"watch\"\non = \"web\"\nfile = \"/var/log/app.log\"\nfor = \"1s\"\n";
    t.file("rb.toml", &format!("{HOSTS}{watch}"));
    let out = t.run(&["check", "rb.toml"]).code(2);
    assert!(
        out.stderr.contains(
            "step 4 cannot run `on` hosts: a watch step reads its file or command on this machine"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_hosts_and_rollout_values_are_reported_at_their_place() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        r#"[runbook]
name = "deploy"

[env.production.hosts]
web = ["web-1", "web;id", "web-1", "-oProxyCommand=x", "web:99999"]

[env.staging]

[rollout]
serial = [0, "150%", "abc%"]
max_fail = "x"
concurrency = 0
rollback = "some"

[[step]]
title = "Switch"
kind = "apply"
on = "wbe"
run = "echo {{host}}"
rollback = "x"

[[step]]
title = "By hand"
kind = "manual"
on = "web"
instructions = "do it"

[[step]]
title = "Local"
kind = "check"
run = "echo {{host}}"
"#,
    );
    let out = t.run(&["check", "rb.toml"]).code(2);
    let err = &out.stderr;
    assert_eq!(
        locations(err),
        [
            "5:17", "5:27", "5:36", "5:56", "10:11", "10:14", "10:22", "11:12", "12:15", "13:12",
            "18:6", "25:6", "25:6", "31:13"
        ],
        "{err}"
    );
    assert!(err.contains("host \"web;id\" in group `web` is a host name with ';' in it"), "{err}");
    assert!(err.contains("host \"web-1\" is twice in group `web`"), "{err}");
    assert!(err.contains("ssh would read it as an option"), "{err}");
    assert!(err.contains("`serial` in [rollout] is \"150%\", out of range"), "{err}");
    assert!(err.contains("`concurrency` in [rollout] is 0"), "{err}");
    assert!(err.contains("step 1 runs on group \"wbe\", which is not defined in [env.production.hosts], [env.staging.hosts]"), "{err}");
    assert!(err.contains("did you mean \"web\"?"), "{err}");
    assert!(
        err.contains("step 2 runs on group \"web\", which is not defined in [env.staging.hosts]"),
        "{err}"
    );
    assert!(
        err.contains("step 2 cannot run `on` hosts: a manual step is done by the operator"),
        "{err}"
    );
    assert!(err.contains("`{{host}}` in step 3, which runs on no host"), "{err}");
}
