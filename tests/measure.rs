//! The `measure` step through the library, against real things: `bash`, an HTTP server on
//! 127.0.0.1 started by the test, and a real `redis-server` on a free port.

use crate::support::RedisServer;
use runbook::steps::measure::{Comparison, MeasureSource, Metric, compare, measure};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

fn value(metrics: &[Metric], name: &str) -> f64 {
    match metrics.iter().find(|m| m.name == name) {
        Some(m) => m.value,
        None => panic!("no metric `{name}` in {metrics:?}"),
    }
}

fn command(run: &str, patterns: &[&str]) -> MeasureSource {
    MeasureSource::Command {
        run: run.to_string(),
        patterns: patterns.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn command_named_captures_become_metrics_with_units() {
    let source = command(
        "echo 'upload p50=12.5ms p95=40ms'; echo 'queue depth: 7'",
        &[
            r"p50=(?P<latency_p50_ms>[0-9.]+)ms p95=(?P<latency_p95_ms>[0-9.]+)",
            r"depth: (?P<queue_depth>\d+)",
        ],
    );
    let metrics = measure(&source).unwrap();
    let m =
        |name: &str, value: f64, unit: &str| Metric { name: name.into(), value, unit: unit.into() };
    assert_eq!(
        metrics,
        [
            m("latency_p50_ms", 12.5, "ms"),
            m("latency_p95_ms", 40.0, "ms"),
            m("queue_depth", 7.0, "")
        ]
    );
}

#[test]
fn command_pattern_that_does_not_match_names_the_pattern_and_says_retry_is_safe() {
    let source = command("echo 'hits=3'", &[r"hits=(?P<hits>\d+)", r"misses=(?P<misses>\d+)"]);
    let text = format!("{:#}", measure(&source).unwrap_err());
    assert!(text.contains("patterns[1]") && text.contains("hits=3"), "{text}");
    assert!(text.contains("a retry is safe"), "{text}");
}

#[test]
fn command_capture_that_is_not_a_number_is_an_error() {
    let source = command("echo 'p95=fast'", &[r"p95=(?P<p95_ms>\w+)"]);
    let text = format!("{:#}", measure(&source).unwrap_err());
    assert!(text.contains("`p95_ms`") && text.contains("`fast`"), "{text}");
}

#[test]
fn command_that_fails_is_an_error_with_its_stderr() {
    let source = command("echo 'no route to host' >&2; exit 2", &[r"(?P<x>\d+)"]);
    let text = format!("{:#}", measure(&source).unwrap_err());
    assert!(text.contains("no route to host") && text.contains("exit"), "{text}");
}

/// An HTTP server on 127.0.0.1 that answers exactly `statuses.len()` connections, one request
/// each, with those statuses in order, then stops.
fn http_server(statuses: Vec<u16>) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        for status in statuses {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            let body = if status == 200 { "ok\n" } else { "boom\n" };
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            reader.get_mut().write_all(reply.as_bytes()).unwrap();
        }
    });
    (url, handle)
}

#[test]
fn http_probe_counts_statuses_and_error_rate_exactly() {
    let statuses = vec![200, 200, 500, 200, 200, 200, 500, 200, 200, 200];
    let (url, server) = http_server(statuses);
    let source = MeasureSource::Http { url, requests: 10, timeout: Duration::from_secs(5) };
    let metrics = measure(&source).unwrap();
    server.join().unwrap();
    assert_eq!(value(&metrics, "requests"), 10.0);
    assert_eq!(value(&metrics, "status_200"), 8.0);
    assert_eq!(value(&metrics, "status_500"), 2.0);
    assert_eq!(value(&metrics, "error_rate"), 0.2);
    assert_eq!(value(&metrics, "transport_errors"), 0.0);
    let (p50, p95, max) = (
        value(&metrics, "latency_p50_ms"),
        value(&metrics, "latency_p95_ms"),
        value(&metrics, "latency_max_ms"),
    );
    assert!(0.0 < p50 && p50 <= p95 && p95 <= max, "{p50} {p95} {max}");
    assert!(metrics.iter().filter(|m| m.name.starts_with("latency")).all(|m| m.unit == "ms"));
}

#[test]
fn http_probe_of_a_closed_port_measures_an_error_rate_of_one() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/");
    let source = MeasureSource::Http { url, requests: 3, timeout: Duration::from_secs(2) };
    let metrics = measure(&source).unwrap();
    assert_eq!(value(&metrics, "error_rate"), 1.0);
    assert_eq!(value(&metrics, "transport_errors"), 3.0);
}

#[test]
fn http_probe_rejects_a_url_that_is_not_http() {
    let source = MeasureSource::Http {
        url: "ftp://example/x".into(),
        requests: 1,
        timeout: Duration::from_secs(1),
    };
    let text = format!("{:#}", measure(&source).unwrap_err());
    assert!(text.contains("not an http:// or https:// URL"), "{text}");
}

fn fill(server: &RedisServer) {
    let mut con = server.client(0);
    for i in 0..5 {
        redis::cmd("SET").arg(format!("page:upload:{i}")).arg("html").exec(&mut con).unwrap();
    }
    for i in 0..3 {
        redis::cmd("SET").arg(format!("session:{i}")).arg("s").exec(&mut con).unwrap();
    }
}

fn redis_source(server: &RedisServer, pattern: Option<&str>) -> MeasureSource {
    MeasureSource::Redis { url: server.url(0), pattern: pattern.map(String::from) }
}

#[test]
fn redis_counts_matching_keys_and_the_hit_ratio() {
    let server = RedisServer::start();
    fill(&server);
    let mut con = server.client(0);
    for key in ["page:upload:1", "page:upload:2", "session:0", "page:missing"] {
        let _: Option<String> = redis::cmd("GET").arg(key).query(&mut con).unwrap();
    }
    let metrics = measure(&redis_source(&server, Some("page:upload:*"))).unwrap();
    assert_eq!(value(&metrics, "keys_matching"), 5.0);
    assert_eq!(value(&metrics, "keys"), 8.0);
    assert_eq!(value(&metrics, "hit_ratio"), 0.75);
    assert!(value(&metrics, "used_memory_bytes") > 0.0);
}

#[test]
fn redis_error_never_shows_the_password() {
    let server = RedisServer::start_with_password("s3cret-pw");
    let url = format!("redis://:wrong-pw-123@127.0.0.1:{}/0", server.port);
    let text = format!("{:#}", measure(&MeasureSource::Redis { url, pattern: None }).unwrap_err());
    assert!(!text.contains("wrong-pw-123"), "{text}");
    assert!(text.contains(":***@") && text.contains("a retry is safe"), "{text}");
}

#[test]
fn redis_that_went_away_is_an_error_saying_retry_is_safe() {
    let mut server = RedisServer::start();
    server.kill();
    let text = format!("{:#}", measure(&redis_source(&server, None)).unwrap_err());
    assert!(text.contains("cannot connect") && text.contains("a retry is safe"), "{text}");
}

#[test]
fn compare_pairs_before_and_after_around_a_real_flush() {
    let server = RedisServer::start();
    fill(&server);
    let source = redis_source(&server, Some("page:upload:*"));
    let before = measure(&source).unwrap();
    let mut con = server.client(0);
    for i in 0..5 {
        redis::cmd("DEL").arg(format!("page:upload:{i}")).exec(&mut con).unwrap();
    }
    let after = measure(&source).unwrap();
    let changes = compare(&before, &after);
    let keys = changes.iter().find(|c| c.name == "keys_matching").unwrap();
    assert_eq!((keys.before, keys.after, keys.change), (5.0, 0.0, -5.0));
    assert_eq!(keys.change_pct, Some(-100.0));
    assert_eq!(keys.unit, "count");
}

#[test]
fn compare_takes_the_first_before_and_the_last_after() {
    let m = |name: &str, value: f64| Metric { name: name.into(), value, unit: "ms".into() };
    let count = |name: &str, value: f64| Metric { name: name.into(), value, unit: "count".into() };
    let before =
        [m("p95_ms", 10.0), count("status_500", 2.0), m("p95_ms", 11.0), m("gone_ms", 1.0)];
    let after = [m("p95_ms", 5.0), m("p95_ms", 8.0), m("new_ms", 3.0), count("status_503", 1.0)];
    let c = |name: &str, before: f64, after: f64, unit: &str, pct: Option<f64>| Comparison {
        name: name.into(),
        unit: unit.into(),
        before,
        after,
        change: after - before,
        change_pct: pct,
    };
    assert_eq!(
        compare(&before, &after),
        [
            c("p95_ms", 10.0, 8.0, "ms", Some(-20.0)),
            c("status_500", 2.0, 0.0, "count", Some(-100.0)),
            c("status_503", 0.0, 1.0, "count", None),
        ]
    );
}
