//! The command line, and nothing else: clap definitions that the commands read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "runbook",
    version,
    about = "Run deploy runbooks step by step: prompts, checks, reverse rollback, a crash-safe journal"
)]
pub struct Cli {
    /// Where runs are recorded [default: $RUNBOOK_STATE_DIR, else $XDG_STATE_HOME/runbook, else ~/.local/state/runbook]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate runbooks; print every problem with file:line:column
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Show the rendered steps, commands and rollbacks without running anything
    Plan {
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Run a runbook, asking before each step
    Run(RunArgs),
    /// Rehearse: run every step, then every rollback in reverse, and check both
    Rehearse(RehearseArgs),
    /// Continue an interrupted run from its journal
    Resume {
        /// A run id, a unique prefix of one, or `last`
        run: String,
        /// Do not ask: run the step that was in flight again, then the rest
        #[arg(long, short)]
        yes: bool,
    },
    /// List past runs, newest first
    History {
        #[arg(long)]
        json: bool,
        /// Also list runs from the team store (`[store] redis` of the runbooks), e.g. redis://cache:6379/0
        #[arg(long, env = "RUNBOOK_STORE", value_name = "URL")]
        store: Option<String>,
        /// Show at most this many runs
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// What happened in one run, step by step
    Show {
        /// A run id, a unique prefix of one, or `last`
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// The output of a run's steps
    Logs {
        /// A run id, a unique prefix of one, or `last`
        run: String,
        /// A step number or id (default: every step)
        step: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The final note of a run: what changed, what was measured, how to undo it
    Report {
        /// A run id, a unique prefix of one, or `last`
        run: String,
        /// md (Markdown) or html (one self-contained page)
        #[arg(long, default_value = "md", value_parser = ["md", "html"])]
        format: String,
        /// Write the note to this file instead of standard output
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Undo the applied steps of a past run, newest first, with the commands it recorded
    Rollback {
        /// A run id, a unique prefix of one, or `last`
        run: String,
        /// Do not ask; roll back every applied step
        #[arg(long, short)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct Target {
    /// The environment to use ([env.NAME] in the runbook); required when the runbook defines any
    #[arg(long, short)]
    pub env: Option<String>,
    /// Set a variable declared in [vars] (repeatable)
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub target: Target,
    /// Run unattended: no prompts; a failure rolls back
    #[arg(long, short)]
    pub yes: bool,
    /// Start at this step (number or id)
    #[arg(long, value_name = "STEP")]
    pub from: Option<String>,
    /// Stop after this step (number or id)
    #[arg(long, value_name = "STEP")]
    pub to: Option<String>,
    /// Why this run happens; recorded in the journal and the report
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Run although the environment's rehearsal gate refuses; needs --reason, which is recorded
    #[arg(long, requires = "reason")]
    pub override_gate: bool,
}

#[derive(Debug, Args)]
pub struct RehearseArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub target: Target,
    /// Run unattended: no prompts; a failure rolls back
    #[arg(long, short)]
    pub yes: bool,
    /// Why this rehearsal happens; recorded in the journal and the report
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}
