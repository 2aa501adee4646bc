//! The state directory is private: folders 0700 and files 0600 whatever the umask (flush backups
//! and step logs included), and nothing in it is opened through a symbolic link: a link planted
//! at a run folder, the lock file, a step log or the note is refused, naming it, and its target
//! is left as it was.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use redis::Commands;

use crate::support::{Outcome, RedisServer, Runbook, walk};

/// Run the binary as `rb.command(args)` would, but under umask 000.
fn run_with_umask_000(rb: &Runbook, args: &[&str]) -> Outcome {
    let inner = rb.command(args);
    let mut cmd = Command::new("bash");
    cmd.args(["-c", "umask 000; exec \"$@\"", "bash"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(inner.get_current_dir().expect("a working directory"))
        .stdin(Stdio::null());
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let output = cmd.output().expect("run runbook under umask 000");
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every folder below `dir` (itself included).
fn folders(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(folders(&path));
        }
    }
    out
}

#[test]
fn the_state_directory_was_readable_by_everyone_under_a_loose_umask() {
    let server = RedisServer::start();
    let mut c = server.client(0);
    for i in 0..20 {
        let _: () = c.set(format!("page:{i}"), "cached").unwrap();
    }
    let rb = Runbook::new();
    let file = rb.file(
        "rb.toml",
        &format!(
            r#"[runbook]
name = "private"

[env.staging.vars]
url = "{}"

[[step]]
title = "flush with a backup"
kind = "flush"
redis = "{{{{url}}}}"
pattern = "page:*"

[[step]]
title = "say something"
kind = "apply"
run = "echo hello"
rollback = "echo bye"
"#,
            server.url(0)
        ),
    );
    let out =
        run_with_umask_000(&rb, &["rehearse", file.to_str().unwrap(), "--env", "staging", "--yes"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let state = rb.state_dir();
    let files = walk(&state);
    for needed in ["journal.jsonl", "report.md", "rehearsals.jsonl", ".lock", ".log"] {
        assert!(
            files.iter().any(|f| f.to_string_lossy().ends_with(needed)),
            "no {needed} in {files:#?}"
        );
    }
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("backup")),
        "no backup in {files:#?}"
    );
    let loose: Vec<String> = files
        .iter()
        .filter(|f| mode(f) != 0o600)
        .map(|f| format!("{:o} {}", mode(f), f.display()))
        .chain(
            folders(&state)
                .iter()
                .filter(|d| mode(d) != 0o700)
                .map(|d| format!("{:o} {}/", mode(d), d.display())),
        )
        .collect();
    assert!(loose.is_empty(), "not private:\n{}", loose.join("\n"));
}

const PRECIOUS: &str = "precious contents\n";

/// A file outside the state directory that a planted link points at.
fn precious(rb: &Runbook) -> PathBuf {
    rb.file("precious.txt", PRECIOUS)
}

fn assert_refused(out: &Outcome, link: &Path, rb: &Runbook) {
    assert_eq!(rb.read("precious.txt"), PRECIOUS, "the link's target was written: {out:#?}");
    let text = format!("{}{}", out.stdout, out.stderr);
    let named = format!("refusing {}: it is a symbolic link", link.display());
    assert!(text.contains(&named), "no refusal naming {}: {out:#?}", link.display());
}

const ONE_STEP: &str = r#"[runbook]
name = "links"

[[step]]
title = "one"
kind = "apply"
run = "echo one >> {{runbook_dir}}/ran.log"
rollback = "echo undo >> {{runbook_dir}}/undo.log"
"#;

#[test]
fn a_lock_file_planted_as_a_link_was_followed_and_its_target_emptied() {
    let rb = Runbook::new();
    let file = rb.file("rb.toml", ONE_STEP);
    let target = precious(&rb);
    let locks = rb.state_dir().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let link = locks.join("links@default.lock");
    symlink(&target, &link).unwrap();
    let out = rb.run(&["run", file.to_str().unwrap(), "--yes"]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert_refused(&out, &link, &rb);
    assert_eq!(rb.read("ran.log"), "", "a step ran without the lock");
}

#[test]
fn a_run_folder_replaced_by_a_link_was_written_through() {
    let rb = Runbook::new();
    let file = rb.file("rb.toml", ONE_STEP);
    rb.run(&["run", file.to_str().unwrap(), "--yes"]).success();
    let id = rb.last_run_id();
    let folder = rb.state_dir().join("runs").join(&id);
    // The real folder moves elsewhere; a link to it takes its place.
    let elsewhere = rb.path().join("elsewhere");
    std::fs::rename(&folder, &elsewhere).unwrap();
    symlink(&elsewhere, &folder).unwrap();
    let journal = std::fs::read(elsewhere.join("journal.jsonl")).unwrap();
    let out = rb.run(&["rollback", &id, "--yes"]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert_eq!(std::fs::read(elsewhere.join("journal.jsonl")).unwrap(), journal, "{out:#?}");
    let text = format!("{}{}", out.stdout, out.stderr);
    let named = format!("refusing {}: it is a symbolic link", folder.display());
    assert!(text.contains(&named), "{out:#?}");
    assert_eq!(rb.read("undo.log"), "", "a rollback ran through the link");
}

#[test]
fn a_step_log_planted_as_a_link_was_followed_and_its_target_overwritten() {
    let rb = Runbook::new();
    let target = precious(&rb);
    let file = rb.file(
        "rb.toml",
        &format!(
            r#"[runbook]
name = "links"

[[step]]
title = "plant"
kind = "check"
run = "ln -s {} {{{{run_dir}}}}/logs/02-run.log"

[[step]]
title = "print"
kind = "check"
run = "echo overwritten"
"#,
            target.display()
        ),
    );
    let out = rb.run(&["run", file.to_str().unwrap(), "--yes"]);
    assert_ne!(out.code, 0, "{out:#?}");
    let link = rb.state_dir().join("runs").join(rb.last_run_id()).join("logs/02-run.log");
    assert_refused(&out, &link, &rb);
}

#[test]
fn a_report_planted_as_a_link_was_followed_and_its_target_overwritten() {
    let rb = Runbook::new();
    let target = precious(&rb);
    let file = rb.file(
        "rb.toml",
        &format!(
            r#"[runbook]
name = "links"

[[step]]
title = "plant"
kind = "check"
run = "ln -s {} {{{{run_dir}}}}/report.md"
"#,
            target.display()
        ),
    );
    let out = rb.run(&["run", file.to_str().unwrap(), "--yes"]);
    let link = rb.state_dir().join("runs").join(rb.last_run_id()).join("report.md");
    assert_refused(&out, &link, &rb);
}
