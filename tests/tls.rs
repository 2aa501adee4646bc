//! `rediss://` against a real TLS redis-server with openssl-made certificates
//! (`tests/support/redis_tls.rs`): flush, restore and measure over TLS with `tls_ca` and a client
//! certificate, `[lock]` and `[store]` over TLS too, and a server certificate from another CA
//! refused with nothing deleted and nothing sent in plain text.

use redis::Commands;

use crate::support::{Outcome, Runbook, TlsRedis};

/// Everything the binary printed: the run's record (stdout) and its messages (stderr).
fn said(out: &Outcome) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

fn seed(server: &TlsRedis) {
    let mut c = server.client();
    for i in 0..500 {
        let _: () = c.set(format!("page:upload:{i}"), format!("upload {i}")).unwrap();
        let _: () = c.set(format!("page:home:{i}"), format!("home {i}")).unwrap();
    }
}

fn count(server: &TlsRedis, pattern: &str) -> usize {
    let mut c = server.client();
    let keys: Vec<String> = c.scan_match(pattern).unwrap().filter_map(Result::ok).collect();
    keys.len()
}

/// The TLS keys of a flush or measure step, or of `[lock]`/`[store]`.
fn tls_keys(server: &TlsRedis, ca: &std::path::Path) -> String {
    format!(
        "tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        ca.display(),
        server.client_cert.display(),
        server.client_key.display()
    )
}

#[test]
fn flush_restore_and_measure_work_over_tls_with_a_client_certificate() {
    let server = TlsRedis::start();
    seed(&server);
    let (url, tls) = (server.url(), tls_keys(&server, &server.ca));
    let t = Runbook::new();
    t.file(
        "rb.toml",
        &format!(
            "[runbook]\nname = \"tls\"\n\n[lock]\nredis = \"{url}\"\n{tls}\n[store]\nredis = \"{url}\"\n{tls}\n\
             [[step]]\ntitle = \"measure\"\nkind = \"measure\"\nredis = \"{url}\"\npattern = \"page:upload:*\"\n{tls}\n\
             [[step]]\ntitle = \"flush\"\nkind = \"flush\"\nredis = \"{url}\"\npattern = \"page:upload:*\"\n{tls}\n\
             [[step]]\ntitle = \"fails\"\nkind = \"check\"\nrun = \"exit 1\"\n"
        ),
    );
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert!(said(&out).contains("deleted 500 of 500 matching keys"), "{out:?}");
    assert!(said(&out).contains("restored 500 keys"), "{out:?}");
    assert_eq!(count(&server, "page:upload:*"), 500);
    assert_eq!(count(&server, "page:home:*"), 500);

    let events = t.journal();
    let measured = events.iter().find(|e| e["event"] == "step_finished" && e["step"] == 1).unwrap();
    let metrics = measured["details"].to_string();
    assert!(metrics.contains("keys_matching"), "{metrics}");
    let mut c = server.client();
    let stream: usize = redis::cmd("XLEN").arg("runbook:journal:tls").query(&mut c).unwrap();
    assert!(stream > 0, "the [store] got the journal over TLS");
}

#[test]
fn a_server_certificate_from_another_ca_is_refused_and_nothing_is_deleted() {
    let server = TlsRedis::start();
    seed(&server);
    let t = Runbook::new();
    t.file(
        "rb.toml",
        &format!(
            "[runbook]\nname = \"tls\"\n\n[[step]]\ntitle = \"flush\"\nkind = \"flush\"\nredis = \"{}\"\npattern = \"page:upload:*\"\n{}",
            server.url(),
            tls_keys(&server, &server.other_ca)
        ),
    );
    let out = t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert!(said(&out).contains("the TLS connection to Redis at rediss://127.0.0.1:"), "{out:?}");
    assert!(said(&out).contains("nothing was sent in plain text"), "{out:?}");
    assert_eq!(count(&server, "page:upload:*"), 500, "nothing deleted");
}

#[test]
fn tls_files_on_a_plain_redis_url_are_a_check_error_at_their_line() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        "[runbook]\nname = \"tls\"\n\n[[step]]\ntitle = \"flush\"\nkind = \"flush\"\nredis = \"redis://cache:6379/0\"\npattern = \"page:*\"\ntls_ca = \"/etc/ca.pem\"\n\n[[step]]\ntitle = \"m\"\nkind = \"measure\"\nredis = \"rediss://cache:6380/0\"\ntls_ca = \"certs/ca.pem\"\n",
    );
    let out = t.run(&["check", "rb.toml"]);
    assert_ne!(out.code, 0);
    assert!(said(&out).contains("rb.toml:9:"), "{out:?}");
    assert!(said(&out).contains("tls_ca is set but the URL is plain text"), "{out:?}");
    assert!(said(&out).contains("rb.toml:15:"), "{out:?}");
    assert!(said(&out).contains("is a relative path"), "{out:?}");
}
