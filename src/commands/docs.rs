//! `completions`, `man` and `schema`: documents generated from the program's own definitions
//! (the clap command line, the runbook parser's keys), so they cannot drift from what it accepts.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::engine::code;

/// A completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<i32> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "runbook", &mut std::io::stdout().lock());
    Ok(code::OK)
}

/// The man page, roff, on stdout: the program (options, examples, exit codes), then a
/// COMMANDS section with each command's synopsis, options and examples, all in one page.
pub fn man() -> Result<i32> {
    let cmd = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let mut page = String::from_utf8(page)?;
    // The commands are described below in this page, not in pages of their own.
    page = regex::Regex::new(r"runbook\\-([a-z]+)\(1\)")?
        .replace_all(&page, "runbook $1")
        .into_owned();
    page = preformatted(&page, ".SH EXTRA\n", ".SH \"EXAMPLES, OUTPUT AND EXIT CODES\"\n");
    page.push_str(".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        page.push_str(&command_section(sub)?);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(page.as_bytes())?;
    out.flush()?;
    Ok(code::OK)
}

/// One command: a subsection with its description, synopsis, options and examples.
fn command_section(sub: &clap::Command) -> Result<String> {
    let name = format!("runbook {}", sub.get_name());
    let man = clap_mangen::Man::new(sub.clone().display_name(name.clone()).bin_name(name.clone()));
    let mut roff = Vec::new();
    man.render_description_section(&mut roff)?;
    man.render_synopsis_section(&mut roff)?;
    man.render_options_section(&mut roff)?;
    man.render_extra_section(&mut roff)?;
    let roff = preformatted(&String::from_utf8(roff)?, ".SH EXTRA\n", ".PP\n");
    // Section headers become paragraph breaks: the whole command is one subsection.
    let body: Vec<&str> =
        roff.lines().map(|l| if l.starts_with(".SH ") { ".PP" } else { l }).collect();
    Ok(format!(".SS \"{name}\"\n{}\n", body.join("\n")))
}

/// The section that starts with `header` kept as written (no filling, so the examples and the
/// exit code table keep their lines), under `replacement`.
fn preformatted(roff: &str, header: &str, replacement: &str) -> String {
    let Some(start) = roff.find(header) else { return roff.to_string() };
    let body_start = start + header.len();
    let end = roff[body_start..].find("\n.SH ").map_or(roff.len(), |i| body_start + i + 1);
    format!("{}{replacement}.nf\n{}.fi\n{}", &roff[..start], &roff[body_start..end], &roff[end..])
}

/// The JSON Schema of the runbook file on stdout.
pub fn schema() -> Result<i32> {
    println!("{}", serde_json::to_string_pretty(&crate::runbook::schema::schema())?);
    Ok(code::OK)
}
