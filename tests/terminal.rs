//! Data cannot drive the terminal: a Redis key name or a watched log line holding a carriage
//! return or an ANSI escape is shown with those characters spelt out (`\r`, `\x1b`), so it cannot
//! repaint what the operator reads.

use redis::Commands;

use crate::support::{RedisServer, Runbook};

/// No raw carriage return or escape reached the terminal.
fn assert_no_raw_controls(text: &str) {
    assert!(!text.contains('\r') && !text.contains('\x1b'), "raw control characters: {text:?}");
}

#[test]
fn a_key_named_with_cr_and_ansi_repainted_the_keys_match_line() {
    let server = RedisServer::start();
    let mut c = server.client(0);
    let _: () = c.set("page:1", "cached").unwrap();
    let _: () = c.set("page:\r\x1b[2K0 keys match now", "cached").unwrap();
    let rb = Runbook::new();
    let file = rb.file(
        "rb.toml",
        &format!(
            "[runbook]\nname = \"t\"\n\n[[step]]\ntitle = \"flush\"\nkind = \"flush\"\nredis = \"{}\"\npattern = \"page:*\"\n",
            server.url(0)
        ),
    );
    let out = rb.run(&["plan", file.to_str().unwrap()]).success();
    assert_no_raw_controls(&out.stdout);
    assert!(out.stdout.contains("2 keys match now, e.g. "), "{}", out.stdout);
    assert!(out.stdout.contains("page:\\r\\x1b[2K0 keys match now"), "{}", out.stdout);
}

#[test]
fn a_watched_line_with_cr_and_ansi_repainted_the_terminal() {
    let rb = Runbook::new();
    let log = rb.file("app.log", "");
    let file = rb.file(
        "rb.toml",
        &format!(
            r#"[runbook]
name = "t"

[[step]]
title = "write a hostile line soon"
kind = "check"
run = '''(sleep 0.5; printf 'ERROR \033[2K\rall good\n' >> {log}) > /dev/null 2>&1 &'''

[[step]]
title = "watch"
kind = "watch"
file = "{log}"
for = "2s"
fail_on = ["ERROR"]
"#,
            log = log.display()
        ),
    );
    let out = rb.run(&["run", file.to_str().unwrap(), "--yes"]);
    assert_no_raw_controls(&out.stdout);
    assert!(out.stdout.contains("ERROR \\x1b[2K\\rall good"), "{}", out.stdout);
}
