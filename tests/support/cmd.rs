//! `Runbook`: runs the real binary in its own temporary directory, with its own state directory,
//! and returns what it printed and its exit code.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Runbook {
    dir: tempfile::TempDir,
    envs: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Assert the exit code, showing everything the program printed when it is wrong.
    pub fn code(self, expected: i32) -> Outcome {
        assert_eq!(self.code, expected, "unexpected exit code; {self:#?}");
        self
    }

    /// Everything it printed: the record (stdout) and the terminal's side (stderr).
    pub fn said(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    pub fn success(self) -> Outcome {
        self.code(0)
    }
}

impl Default for Runbook {
    fn default() -> Self {
        Self::new()
    }
}

impl Runbook {
    pub fn new() -> Runbook {
        let dir = tempfile::tempdir().expect("temp dir");
        Runbook { dir, envs: Vec::new() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Write a file (a runbook, usually) into the test's directory and return its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    pub fn env(mut self, key: &str, value: &str) -> Runbook {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// The command that runs the binary here, for tests that need to drive it themselves
    /// (a pseudo-terminal, a signal).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbook"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("RUNBOOK_STATE_DIR", self.state_dir())
            .env("RUNBOOK_OPERATOR", "tester")
            .env("NO_COLOR", "1");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run with no terminal and an empty stdin.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let output =
            self.command(args).stdin(Stdio::null()).output().expect("run the runbook binary");
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Run `args` with the fault hook set to SIGKILL the process right after its `event`th journal
    /// event, and check that it died that way.
    pub fn crash_after(&self, event: u32, args: &[&str]) {
        let out = self
            .command(args)
            .env("RUNBOOK_FAULT_KILL_AFTER_EVENT", event.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("run the runbook binary");
        assert_eq!(out.status.code(), None, "killed by a signal after event {event}: {out:?}");
    }

    /// The id of the newest run in this test's state directory, from `history --json`.
    pub fn last_run_id(&self) -> String {
        let out = self.run(&["history", "--json"]).success();
        let runs: serde_json::Value = serde_json::from_str(&out.stdout).expect("history --json");
        runs[0]["id"].as_str().expect("a run id").to_string()
    }

    /// Every event of the newest run's journal, parsed.
    pub fn journal(&self) -> Vec<serde_json::Value> {
        let id = self.last_run_id();
        let text =
            std::fs::read_to_string(self.state_dir().join("runs").join(&id).join("journal.jsonl"))
                .expect("journal.jsonl");
        text.lines().map(|l| serde_json::from_str(l).expect("a journal line")).collect()
    }
}
