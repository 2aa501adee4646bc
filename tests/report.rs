//! `runbook report`: the final note rebuilt from the journal, as Markdown and as one HTML page
//! checked in a real headless Chromium; and the note `runbook run` leaves in the run's folder.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Runbook;

/// Measure p95 (120), change what the second measure reads (to 80), measure again.
const MEASURED: &str = r#"
[runbook]
name = "latency"
owner = "perf"

[[step]]
title = "Measure p95 before"
kind = "measure"
run = "echo p95=120"
capture = ["p95=(?P<p95_ms>\\d+)"]

[[step]]
title = "Turn on the cache"
kind = "apply"
owner = "alice"
run = "echo p95=80 > {{runbook_dir}}/latency"
rollback = "rm -f {{runbook_dir}}/latency"

[[step]]
title = "Measure p95 after"
kind = "measure"
run = "cat {{runbook_dir}}/latency"
capture = ["p95=(?P<p95_ms>\\d+)"]
fail_if = ["p95_ms > before"]
"#;

/// Three steps appending to `trail`; step 3 fails after it has partly applied.
const FAILING: &str = r#"
[runbook]
name = "three"
owner = "ops"

[[step]]
title = "First change"
kind = "apply"
run = "echo run 1 >> {{runbook_dir}}/trail"
rollback = "echo undo 1 >> {{runbook_dir}}/trail"

[[step]]
title = "Second change"
kind = "apply"
run = "echo run 2 >> {{runbook_dir}}/trail"
rollback = "echo undo 2 >> {{runbook_dir}}/trail"

[[step]]
title = "Third change"
kind = "apply"
run = "echo run 3 >> {{runbook_dir}}/trail && exit 7"
rollback = "echo undo 3 >> {{runbook_dir}}/trail"
"#;

fn note(t: &Runbook, format: &str) -> String {
    t.run(&["report", "last", "--format", format]).success().stdout
}

#[test]
fn the_note_shows_a_metric_before_after_and_its_change() {
    let t = Runbook::new();
    t.file("rb.toml", MEASURED);
    let out = t.run(&["run", "rb.toml", "--yes", "--reason", "CHG-42 cache on"]).success();
    let md = note(&t, "md");
    assert!(
        md.contains("| `p95_ms` | 120 ms | 80 ms | -40 ms | -33.3% | step 1 -> step 3 |"),
        "{md}"
    );
    assert!(md.contains("| Reason | CHG-42 cache on |"), "{md}");
    assert!(md.contains("| Operator | tester on host"), "{md}");
    assert!(md.contains("- Command (as journalled): `measure cat "), "the rendered command: {md}");
    assert!(md.contains("| 2 | Turn on the cache | apply | alice | ok | 0 |"), "{md}");

    assert!(out.stdout.contains("steps: 3 ok, 0 failed, 0 skipped, 0 rolled back"), "{out:?}");
    assert!(out.stdout.contains("p95_ms: 120 ms -> 80 ms (-40 ms, -33.3%, good)"), "{out:?}");
    let id = t.last_run_id();
    let saved = t.state_dir().join("runs").join(&id).join("report.md");
    assert!(out.stdout.contains(&format!("note: {}", saved.display())), "{out:?}");
    let saved = std::fs::read_to_string(&saved).expect("run writes report.md");
    assert!(saved.contains("| `p95_ms` | 120 ms | 80 ms |"), "{saved}");
}

#[test]
fn a_failed_runs_note_lists_its_rollbacks_in_the_order_they_ran() {
    let t = Runbook::new();
    t.file("rb.toml", FAILING);
    t.run(&["run", "rb.toml", "--yes"]).code(3);
    assert_eq!(t.read("trail"), "run 1\nrun 2\nrun 3\nundo 3\nundo 2\nundo 1\n");
    let md = note(&t, "md");
    let section =
        md.split("## Rollbacks, in the order they ran").nth(1).expect("a rollbacks section");
    let at = |s: &str| section.find(s).unwrap_or_else(|| panic!("{s:?} missing: {md}"));
    assert!(at("1. step 3 Third change: **ok**") < at("1. step 2 Second change: **ok**"), "{md}");
    assert!(at("1. step 2 Second change") < at("1. step 1 First change: **ok**"), "{md}");
    assert!(section.contains("command: `echo undo 3 >> "), "{md}");
    assert!(section.contains("why: step 3 failed"), "{md}");
    assert!(md.contains("# Run note: three (rolled back)"), "{md}");
    assert!(md.contains("| Result | rolled back (exit 3) |"), "{md}");
    assert!(md.contains("| Now | rolled back |"), "{md}");
    assert!(md.contains("Actual: expected exit 0, got exit 7"), "{md}");
    assert!(md.contains("Nothing is left applied: every change this run made was rolled back."));
    assert!(!md.contains("runbook rollback "), "nothing to roll back: {md}");
}

#[test]
fn a_successful_runs_note_gives_the_exact_rollback_command() {
    let t = Runbook::new();
    t.file("rb.toml", &FAILING.replace(" && exit 7", ""));
    t.run(&["run", "rb.toml", "--yes"]).success();
    let id = t.last_run_id();
    let md = note(&t, "md");
    assert!(md.contains(&format!("```sh\nrunbook rollback {id}\n```")), "{md}");
    let undo = md.split("## How to undo").nth(1).unwrap();
    let at = |s: &str| undo.find(s).unwrap_or_else(|| panic!("{s:?} missing: {md}"));
    assert!(at("1. step 3 Third change") < at("1. step 2") && at("1. step 2") < at("1. step 1"));

    // The command in the note is the one that works.
    t.run(&["rollback", &id, "--yes"]).success();
    assert!(t.read("trail").ends_with("undo 3\nundo 2\nundo 1\n"));
    let md = note(&t, "md");
    assert!(md.contains("a rollback of this run (runbook rollback) ended: rolled back."), "{md}");
    assert!(md.contains("Nothing is left applied"), "{md}");
    assert!(md.contains("| Result | succeeded (exit 0) |\n| Now | rolled back |"), "{md}");
}

#[test]
fn journal_text_is_escaped_in_html_and_markdown() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        r#"
[runbook]
name = "escape"

[[step]]
title = "<script>alert('title')</script> & co"
kind = "check"
run = "echo '<script>alert(\"out\")</script>'"
"#,
    );
    t.run(&["run", "rb.toml", "--yes"]).success();
    let html = note(&t, "html");
    assert!(!html.contains("<script"), "no journal text becomes a tag: {html}");
    assert!(
        html.contains("&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt; &amp; co"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;alert(&quot;out&quot;)&lt;/script&gt;"), "{html}");
    let md = note(&t, "md");
    assert!(md.contains("### 1. \\<script\\>alert('title')\\</script\\> & co"), "{md}");
}

#[test]
fn a_run_with_no_recorded_end_says_so() {
    let t = Runbook::new();
    t.file("rb.toml", FAILING.replace(" && exit 7", "").as_str());
    t.run(&["run", "rb.toml", "--yes"]).success();
    let id = t.last_run_id();
    // As if the process died during step 3: its result and the run's end never reached the disk.
    let journal = t.state_dir().join("runs").join(&id).join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let kept: Vec<&str> =
        text.lines().take_while(|l| !l.contains("\"step_finished\",\"step\":3")).collect();
    std::fs::write(&journal, kept.join("\n") + "\n{\"ts\":\"torn").unwrap();
    let md = note(&t, "md");
    assert!(md.contains("This run has no recorded end: it was interrupted or its process died."));
    assert!(md.contains("It stopped during step 3 (Third change)."), "{md}");
    assert!(md.contains("| Ended | not recorded |"), "{md}");
    assert!(md.contains("A journal line could not be read (torn"), "{md}");
    assert!(md.contains(&format!("runbook rollback {id}")), "steps 1-3 may be applied: {md}");
}

#[test]
fn report_of_an_unknown_run_is_a_clear_error() {
    let t = Runbook::new();
    let out = t.run(&["report", "nosuchrun"]).code(1);
    assert!(out.stderr.contains("no run \"nosuchrun\""), "{out:?}");
    assert!(out.stderr.contains("runbook history"), "says where ids come from: {out:?}");
    assert_eq!(out.stdout, "");
}

#[test]
fn out_writes_the_note_to_a_file() {
    let t = Runbook::new();
    t.file("rb.toml", MEASURED);
    t.run(&["run", "rb.toml", "--yes"]).success();
    let out = t.run(&["report", "last", "--out", "note.md"]).success();
    assert_eq!(out.stdout, "", "the note goes to the file only");
    assert!(out.stderr.contains("note.md"), "{out:?}");
    let md = t.read("note.md");
    assert!(md.starts_with("# Run note: latency (succeeded)"), "{md}");
    assert_eq!(md, note(&t, "md"));
}

#[test]
fn the_html_note_renders_in_headless_chromium() {
    let chromium = which("chromium").unwrap_or_else(|| {
        panic!("chromium is not on PATH: install chromium (scripts/test.sh does)")
    });
    let t = Runbook::new();
    t.file("rb.toml", MEASURED);
    t.run(&["run", "rb.toml", "--yes", "--reason", "CHG-42"]).success();
    let page = t.path().join("note.html");
    t.run(&["report", "last", "--format", "html", "--out", "note.html"]).success();
    let html = std::fs::read_to_string(&page).unwrap();
    for external in ["<script", "<link", "src=", "http://", "https://", "@import"] {
        assert!(!html.contains(external), "self-contained, no {external:?}");
    }

    let dom = headless(&chromium, t.path(), &["--dump-dom".into(), file_url(&page)]);
    let dom = String::from_utf8_lossy(&dom);
    assert!(
        dom.contains(
            "<td><code>p95_ms</code></td><td class=\"num\">120 ms</td><td class=\"num\">80 ms</td>"
        ),
        "the metric row: {dom}"
    );
    assert!(dom.contains("-40 ms") && dom.contains("-33.3%"), "{dom}");
    assert!(
        dom.contains("<td class=\"good judged\"><strong>✓ good</strong><br>fail_if `p95_ms &gt; before` is false: 80 ms &gt; 120 ms, before = 120 ms (step 1)</td>"),
        "the change is marked good by its fail_if: {dom}"
    );
    for title in ["Measure p95 before", "Turn on the cache", "Measure p95 after"] {
        assert!(dom.contains(&format!("<span class=\"title\">{title}</span>")), "{title}: {dom}");
    }
    assert!(dom.contains(&format!("runbook rollback {}", t.last_run_id())), "{dom}");

    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-note.png");
    let _ = std::fs::remove_file(&png);
    let args = [
        format!("--screenshot={}", png.display()),
        "--window-size=1100,1800".into(),
        "--hide-scrollbars".into(),
        file_url(&page),
    ];
    headless(&chromium, t.path(), &args);
    let shot = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(shot.starts_with(b"\x89PNG") && shot.len() > 10_000, "a real picture at {png:?}");
    eprintln!("screenshot of the HTML note: {}", png.display());
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Run headless Chromium with no network or profile side effects, at most a minute; its stdout.
fn headless(chromium: &Path, dir: &Path, args: &[String]) -> Vec<u8> {
    let profile = dir.join("chromium-profile");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let reader = {
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut buf).map(|_| buf)
        })
    };
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut buf);
        buf
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium took over a minute: {}", errors.join().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let errors = errors.join().unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}): {errors}");
    reader.join().unwrap().expect("chromium's output")
}

/// Step 2's rollback fails, with output saying why; step 3 fails after printing a few lines.
const ROLLBACK_FAILS: &str = r#"
[runbook]
name = "stuck"
owner = "ops"

[[step]]
title = "First change"
kind = "apply"
run = "echo run 1 >> {{runbook_dir}}/trail"
rollback = "echo undo 1 >> {{runbook_dir}}/trail"

[[step]]
title = "Second change"
kind = "apply"
run = "echo run 2 >> {{runbook_dir}}/trail"
rollback = "test -e {{runbook_dir}}/fixed || { echo 'restoring upload.conf'; echo 'cp: cannot create /srv/app/upload.conf: Permission denied' >&2; exit 1; }"

[[step]]
title = "Third change"
kind = "apply"
run = "echo 'uploading 25m test file'; echo 'HTTP 413 Request Entity Too Large'; exit 7"
rollback = "echo undo 3 >> {{runbook_dir}}/trail"
"#;

#[test]
fn the_note_leads_with_the_failed_step_what_was_expected_seen_and_its_last_lines() {
    let t = Runbook::new();
    t.file(
        "rb.toml",
        FAILING
            .replace(
                "echo run 3 >> {{runbook_dir}}/trail && exit 7",
                "echo run 3 >> {{runbook_dir}}/trail && echo 'disk full at /srv' && exit 7",
            )
            .as_str(),
    );
    t.run(&["run", "rb.toml", "--yes"]).code(3);
    let md = note(&t, "md");
    let head = "# Run note: three (rolled back)\n\n**Step 3 (Third change) failed.** Expected: exit 0. Seen: expected exit 0, got exit 7.\n\nIts last output lines:\n\n```text\ndisk full at /srv\n```\n";
    assert!(md.starts_with(head), "{md}");
    assert!(
        md.find("disk full").unwrap() < md.find("| Run |").unwrap(),
        "before the details: {md}"
    );
}

#[test]
fn a_failed_rollback_shows_its_output_and_undo_says_the_command_already_failed() {
    let t = Runbook::new();
    t.file("rb.toml", ROLLBACK_FAILS);
    t.run(&["run", "rb.toml", "--yes"]).code(4);
    let id = t.last_run_id();
    let md = note(&t, "md");
    assert!(
        md.contains(
            "**Step 3 (Third change) failed.** Expected: exit 0. Seen: expected exit 0, got exit 7."
        ),
        "{md}"
    );
    assert!(md.contains("HTTP 413 Request Entity Too Large\n```"), "{md}");
    assert!(md.contains("**The rollback of step 2 (Second change) FAILED:**"), "{md}");
    assert!(md.contains("ended: expected exit 0, got exit 1."), "{md}");
    assert!(
        md.contains("Its output (last lines):\n\n```text\nrestoring upload.conf\ncp: cannot create /srv/app/upload.conf: Permission denied\n```"),
        "the rollback's own output: {md}"
    );
    let undo = md.split("## How to undo").nth(1).unwrap();
    assert!(
        undo.contains(
            "> **Already failed:** This already failed during the run's own rollback, at "
        ),
        "{undo}"
    );
    assert!(
        undo.contains("Fix what made it fail first (its output ends: cp: cannot create /srv/app/upload.conf: Permission denied), then run the command again"),
        "{undo}"
    );
    assert!(undo.contains(&format!("runbook rollback {id}")), "{undo}");

    // The offered command fails again: the note says so; once fixed, it works.
    t.run(&["rollback", &id, "--yes"]).code(4);
    let md = note(&t, "md");
    assert_eq!(md.matches("**The rollback of step 2 (Second change) FAILED:**").count(), 1, "{md}");
    assert!(
        md.contains(&format!("This already failed when \\`runbook rollback {id}\\` ran, at ")),
        "{md}"
    );
    t.file("fixed", "");
    t.run(&["rollback", &id, "--yes"]).success();
    let md = note(&t, "md");
    assert!(!md.contains("Already failed"), "nothing left that failed: {md}");

    let html = note(&t, "html");
    assert!(html.contains("<strong>Step 3 (Third change) failed.</strong>"), "{html}");
}

#[test]
fn the_html_note_leads_with_the_failure_in_headless_chromium() {
    let chromium = which("chromium").expect("chromium is on PATH");
    let t = Runbook::new();
    t.file("rb.toml", ROLLBACK_FAILS);
    t.run(&["run", "rb.toml", "--yes"]).code(4);
    let page = t.path().join("note.html");
    t.run(&["report", "last", "--format", "html", "--out", "note.html"]).success();
    let dom = headless(&chromium, t.path(), &["--dump-dom".into(), file_url(&page)]);
    let dom = String::from_utf8_lossy(&dom);
    let failed =
        dom.find("<strong>Step 3 (Third change) failed.</strong>").expect("the failed step");
    let undo = dom.find("<h2>How to undo</h2>").expect("the undo section");
    assert!(failed < undo, "the failure comes first: {dom}");
    assert!(
        dom.contains("<strong>The rollback of step 2 (Second change) FAILED:</strong>"),
        "{dom}"
    );
    assert!(
        dom.contains("cp: cannot create /srv/app/upload.conf: Permission denied</pre>"),
        "{dom}"
    );
    assert!(
        dom.contains(
            "<strong>Already failed:</strong> This already failed during the run's own rollback"
        ),
        "{dom}"
    );
}
