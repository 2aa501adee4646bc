//! The command line, and nothing else: clap definitions that the commands read. The help, the
//! shell completions and the man page are all generated from these definitions, so every
//! argument carries its description and every command its examples here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The exit codes, as `runbook --help` and the man page list them (the values are
/// `engine::code`; a unit test keeps the two in step). A macro, so `concat!` can use it.
macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0    success (every step ran or was skipped on purpose; a rollback finished)
  1    an error outside the runbook (state directory not writable, unknown run, missing variable)
  2    invalid runbook (`check`, or any command given an invalid file)
  3    a step failed and the run was rolled back cleanly
  4    a rollback failed (or did not verify in a rehearsal): steps are still applied
  5    refused by policy, nothing run (no terminal without --yes, the rehearsal gate, a lock held)
  6    aborted by the operator; nothing was rolled back
  64   bad command line
  130  interrupted by Ctrl-C or SIGTERM"
    };
}

pub const EXIT_CODES: &str = exit_codes!();

const MAIN_HELP: &str = concat!(
    "\
Examples:
  runbook check runbooks/*.toml
  runbook run runbooks/upload-limits.toml --yes
  runbook history --status failed --since 7d

Output: the record of a run (step headers, outcomes, the summary) goes to stdout; prompts and
the spinner go to the terminal (stderr) only, so `runbook run ... | tee run.log` keeps a clean log.

",
    exit_codes!()
);

#[derive(Debug, Parser)]
#[command(
    name = "runbook",
    version,
    about = "Run deploy runbooks step by step: prompts, checks, reverse rollback, a crash-safe journal",
    after_help = MAIN_HELP
)]
pub struct Cli {
    /// Where runs are recorded [default: $RUNBOOK_STATE_DIR, else $XDG_STATE_HOME/runbook, else ~/.local/state/runbook]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// A run id, a unique prefix of one, or `last`.
const RUN_HELP: &str = "A run id (from `runbook history`), a unique prefix of one, or `last`";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate runbooks; print every problem with file:line:column
    #[command(after_help = "\
Examples:
  runbook check runbooks/upload-limits.toml
  runbook check runbooks/*.toml
  runbook check --json runbooks/*.toml | jq '.[].diagnostics[]'")]
    Check {
        /// The runbook files to check (TOML)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print a JSON list, one entry per file, with its diagnostics (file, line, column,
        /// message, expected, hint, severity) instead of text
        #[arg(long)]
        json: bool,
    },
    /// Show the rendered steps, commands and rollbacks without running anything
    #[command(after_help = "\
Examples:
  runbook plan runbooks/upload-limits.toml
  runbook plan runbooks/cache-flush.toml --var redis_url=redis://127.0.0.1:6380/0
  runbook plan runbooks/upload-limits.toml --json | jq '.steps[].command'")]
    Plan {
        /// The runbook file (TOML)
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        target: Target,
        /// Print the plan as one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Run a runbook, asking before each step
    #[command(after_help = "\
Examples:
  runbook run runbooks/upload-limits.toml
  runbook run runbooks/upload-limits.toml --yes --reason 'ticket OPS-42' | tee run.log
  runbook run runbooks/upload-limits.toml --from backup --to 3")]
    Run(RunArgs),
    /// Rehearse: run every step, then every rollback in reverse, and check both
    #[command(after_help = "\
Examples:
  runbook rehearse deploy.toml --env staging
  runbook rehearse runbooks/upload-limits.toml --yes --reason 'before Friday'")]
    Rehearse(RehearseArgs),
    /// Go on with a run that stopped (crash, abort, leave, Ctrl-C), inside the same run
    #[command(after_help = "\
Examples:
  runbook resume last
  runbook resume 20261123T054700 --yes
  runbook resume last --from 4")]
    Resume {
        #[arg(help = RUN_HELP)]
        run: String,
        /// Do not ask: run the step that was in flight again, then the rest (a step that had
        /// failed is rolled back, as with `run --yes`)
        #[arg(long, short)]
        yes: bool,
        /// Go on from this step (number or id) instead of where the run stopped: it and the
        /// steps after it run again within this run
        #[arg(long, value_name = "STEP")]
        from: Option<String>,
        /// Go on although lines in the middle of the journal cannot be read (recorded)
        #[arg(long)]
        accept_damaged_journal: bool,
        /// Retry only the hosts that failed (steps `on` hosts): each goes on from the step it
        /// failed at; hosts that finished are not run again, nor are the steps run here
        #[arg(long, conflicts_with = "from")]
        failed_hosts: bool,
    },
    /// List past runs, newest first
    #[command(after_help = "\
Examples:
  runbook history
  runbook history --runbook upload-limits --env production --since 7d
  runbook history --status failed --json | jq -r '.[].id'")]
    History(HistoryArgs),
    /// What happened in one run, step by step
    #[command(after_help = "\
Examples:
  runbook show last
  runbook show 20261123T0547 --json | jq '.steps'")]
    Show {
        #[arg(help = RUN_HELP)]
        run: String,
        /// Print the run as one JSON object, every journal event included
        #[arg(long)]
        json: bool,
    },
    /// The output of a run's steps
    #[command(after_help = "\
Examples:
  runbook logs last
  runbook logs last 3
  runbook logs last backup --json")]
    Logs {
        #[arg(help = RUN_HELP)]
        run: String,
        /// A step number or id (default: every step)
        #[arg(value_name = "STEP")]
        step: Option<String>,
        /// Print a JSON list of {step, log, output} instead of the logs one after another
        #[arg(long)]
        json: bool,
    },
    /// The final note of a run: what changed, what was measured, how to undo it
    #[command(after_help = "\
Examples:
  runbook report last
  runbook report last --format html --out note.html")]
    Report {
        #[arg(help = RUN_HELP)]
        run: String,
        /// md (Markdown) or html (one self-contained page)
        #[arg(long, default_value = "md", value_parser = ["md", "html"])]
        format: String,
        /// Write the note to this file instead of standard output
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Undo the applied steps of a past run, newest first, with the commands it recorded
    #[command(after_help = "\
Examples:
  runbook rollback last
  runbook rollback 20261123T054700 --yes")]
    Rollback {
        #[arg(help = RUN_HELP)]
        run: String,
        /// Do not ask; roll back every applied step
        #[arg(long, short)]
        yes: bool,
        /// Roll back although lines in the middle of the journal cannot be read (recorded)
        #[arg(long)]
        accept_damaged_journal: bool,
    },
    /// The runbooks in a folder: name, description, steps, environments, last run
    #[command(after_help = "\
Examples:
  runbook list
  runbook list deploy/runbooks
  runbook list --json | jq -r '.[].name'")]
    List {
        /// The folder to look in (its *.toml files, not its subfolders)
        #[arg(value_name = "DIR", default_value = "runbooks")]
        dir: PathBuf,
        /// Print a JSON list instead of text
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script for runbook
    #[command(after_help = "\
Examples:
  source <(runbook completions bash)
  runbook completions zsh > ~/.zfunc/_runbook
  runbook completions fish > ~/.config/fish/completions/runbook.fish")]
    Completions {
        /// The shell to complete in
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    #[command(after_help = "\
Examples:
  runbook man | man -l -
  runbook man > /usr/local/share/man/man1/runbook.1")]
    Man,
    /// Print the JSON Schema of the runbook file format (for editors: taplo, Even Better TOML)
    #[command(after_help = "\
Examples:
  runbook schema | jq '.definitions.step.properties | keys'
  runbook schema > runbook.schema.json   # then `#:schema ./runbook.schema.json` atop a runbook")]
    Schema,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Print a JSON list of runs instead of a table
    #[arg(long)]
    pub json: bool,
    /// Also list runs from the team store (`[store] redis` of the runbooks), e.g. redis://cache:6379/0
    #[arg(long, env = "RUNBOOK_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Show at most this many runs
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: usize,
    /// Only runs of this runbook (its `name`)
    #[arg(long, value_name = "NAME")]
    pub runbook: Option<String>,
    /// Only runs in this environment
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Only runs with this status (`no_end`: the process died without recording an end)
    #[arg(long, value_name = "STATUS", value_parser = [
        "succeeded", "rehearsed", "rolled_back", "rollback_failed", "aborted", "interrupted",
        "failed", "running", "no_end",
    ])]
    pub status: Option<String>,
    /// Only runs started within this long, e.g. 90m, 24h, 7d
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct Target {
    /// The environment to use ([env.NAME] in the runbook); required when the runbook defines any
    #[arg(long, short, value_name = "ENV")]
    pub env: Option<String>,
    /// Set a variable declared in [vars] (repeatable)
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The runbook file (TOML)
    #[arg(value_name = "FILE")]
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
    /// The runbook file (TOML)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub target: Target,
    /// Run unattended: no prompts; a failure rolls back
    #[arg(long, short)]
    pub yes: bool,
    /// Why this rehearsal happens; recorded in the journal and the report
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Rehearse although this environment requires a rehearsal elsewhere (it is production:
    /// every rollback runs there too); needs --reason, which is recorded
    #[arg(long, requires = "reason")]
    pub in_gated_env: bool,
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::engine::code;

    #[test]
    fn the_help_lists_every_exit_code() {
        for c in [
            code::OK,
            code::ERROR,
            code::INVALID,
            code::ROLLED_BACK,
            code::ROLLBACK_FAILED,
            code::REFUSED,
            code::ABORTED,
            code::USAGE,
            code::INTERRUPTED,
        ] {
            let line = format!("\n  {c:<4} ");
            assert!(EXIT_CODES.contains(&line), "exit code {c} is missing from the help");
        }
        assert!(MAIN_HELP.ends_with(EXIT_CODES));
    }

    /// Every argument and option has a description, and every command ends with examples.
    #[test]
    fn every_argument_is_described_and_every_command_has_examples() {
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            let examples = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(examples.starts_with("Examples:\n"), "{} has no examples", sub.get_name());
            let count = examples.lines().filter(|l| l.starts_with("  ")).count();
            assert!((2..=3).contains(&count), "{}: {count} examples", sub.get_name());
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{} {id} has no help", sub.get_name());
            }
        }
    }
}
