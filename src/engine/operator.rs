//! The engine talks to the person running it through `Operator`, so tests and unattended runs
//! use the same engine as a terminal. Every question carries the answer the unattended policy
//! gives (`--yes`), and the operator decides whether to ask a person or give it: the engine has
//! no `yes` flag of its own. The terminal one reads whole lines; Ctrl-C at a prompt ends the wait
//! (the prompt polls the terminal and the interrupt flag) and counts as an interruption. `Scripted` answers from a list, for the engine's unit tests.

use std::io::Write;
use std::os::fd::AsFd;

use anyhow::{Result, bail};

use crate::signals;

/// One answer a prompt accepts: typed as its first letter or as the whole word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice(pub &'static str);

pub const RUN: Choice = Choice("run");
pub const SKIP: Choice = Choice("skip");
pub const ABORT: Choice = Choice("abort");
pub const RETRY: Choice = Choice("retry");
pub const ROLLBACK: Choice = Choice("rollback");
pub const DONE: Choice = Choice("done");
pub const YES: Choice = Choice("yes");
pub const NO: Choice = Choice("no");
pub const LEAVE: Choice = Choice("leave");
pub const WAIT: Choice = Choice("wait");
pub const STOP: Choice = Choice("stop");
/// The unattended answer to "did you see it?": nobody looked, and the journal says so.
pub const UNCONFIRMED: Choice = Choice("unconfirmed");

/// A question the engine asks: its text, the answers a person may give, and the answer the
/// unattended policy gives (`None`: nobody may answer it unattended, e.g. a manual step).
#[derive(Debug, Clone, Copy)]
pub struct Question<'q> {
    pub text: &'q str,
    pub choices: &'q [Choice],
    pub unattended: Option<Choice>,
}

/// What the operator said, or that they pressed Ctrl-C / closed the terminal instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Chose(Choice),
    Interrupted,
}

pub trait Operator {
    fn choose(&mut self, question: &Question<'_>) -> Result<Answer>;
    fn secret(&mut self, label: &str) -> Result<String>;
    /// Who answers, as journalled with each answer: the operator's name, or `unattended`.
    fn who(&self) -> &str;
    /// A person reads the screen and answers (the step card is shown in full).
    fn attended(&self) -> bool;
}

/// The operator a command runs with: a person at the terminal, or the `--yes` policy.
pub fn for_command(yes: bool) -> Box<dyn Operator> {
    if yes { Box::new(Unattended) } else { Box::new(Terminal { name: crate::operator() }) }
}

/// A person at a terminal.
pub struct Terminal {
    pub name: String,
}

impl Operator for Terminal {
    fn choose(&mut self, q: &Question<'_>) -> Result<Answer> {
        ask_terminal(q.text, q.choices)
    }

    fn secret(&mut self, label: &str) -> Result<String> {
        Ok(rpassword::prompt_password(format!("{label}: "))?)
    }

    fn who(&self) -> &str {
        &self.name
    }

    fn attended(&self) -> bool {
        true
    }
}

fn ask_terminal(question: &str, choices: &[Choice]) -> Result<Answer> {
    let menu: Vec<String> = choices
        .iter()
        .map(|c| {
            let n = unique_prefix(c, choices);
            format!("[{}]{}", &c.0[..n], &c.0[n..])
        })
        .collect();
    loop {
        eprint!("{question} {}: ", menu.join(" / "));
        let _ = std::io::stderr().flush();
        let Some(line) = read_line()? else {
            // End the line the prompt (and a ^C) left open.
            eprintln!();
            return Ok(Answer::Interrupted);
        };
        let word = line.trim().to_ascii_lowercase();
        if let Some(c) = choices.iter().find(|c| matches(c, &word, choices)) {
            return Ok(Answer::Chose(*c));
        }
        let could: Vec<&str> = choices
            .iter()
            .filter(|c| !word.is_empty() && c.0.starts_with(&word))
            .map(|c| c.0)
            .collect();
        if could.len() > 1 {
            eprintln!("  `{word}` could be {}: type more letters", could.join(" or "));
        } else {
            let all: Vec<&str> = choices.iter().map(|c| c.0).collect();
            eprintln!("  please answer one of: {}", all.join(", "));
        }
    }
}

/// The answer picks the one choice it is a prefix of (`r` for run, `ro` for rollback).
fn matches(c: &Choice, word: &str, all: &[Choice]) -> bool {
    word == c.0
        || (!word.is_empty()
            && c.0.starts_with(word)
            && all.iter().filter(|o| o.0.starts_with(word)).count() == 1)
}

/// How many letters tell this choice apart from the others: `retry` and `rollback` need two.
fn unique_prefix(c: &Choice, all: &[Choice]) -> usize {
    (1..c.0.len())
        .find(|&n| all.iter().filter(|o| o.0.starts_with(&c.0[..n])).count() == 1)
        .unwrap_or(c.0.len())
}

/// Read one line from stdin; `None` on Ctrl-C or end of input.
///
/// The signal handlers restart interrupted reads (`SA_RESTART`), so a Ctrl-C cannot wake a
/// blocked `read`: the terminal is polled briefly instead, and the interrupt flag looked at
/// between polls. A byte is read only once one is waiting, so the read never blocks.
fn read_line() -> Result<Option<String>> {
    let mut line = Vec::new();
    loop {
        if signals::interrupted() {
            return Ok(None);
        }
        if !input_waiting()? {
            continue;
        }
        match read_byte()? {
            None if line.is_empty() => return Ok(None),
            None | Some(b'\n') => return Ok(Some(String::from_utf8_lossy(&line).into_owned())),
            Some(byte) => line.push(byte),
        }
    }
}

/// How long one wait for the terminal lasts before the interrupt flag is looked at again.
const PROMPT_POLL_MS: u16 = 100;

/// Whether stdin has a byte (or its end) to read, after waiting a little.
fn input_waiting() -> Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(PROMPT_POLL_MS)) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => bail!("cannot wait for the answer on the terminal: {e}"),
    }
}

/// One byte from stdin, `None` at its end.
fn read_byte() -> Result<Option<u8>> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(std::io::stdin().as_fd(), &mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(byte[0])),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("cannot read the answer from the terminal: {e}"),
        }
    }
}

/// `--yes`: nobody is there; every question gets the answer its policy names.
pub struct Unattended;

impl Operator for Unattended {
    fn choose(&mut self, q: &Question<'_>) -> Result<Answer> {
        match q.unattended {
            Some(choice) => Ok(Answer::Chose(choice)),
            None => bail!(
                "{}: this needs a person and --yes means nobody is there; run on a terminal without --yes",
                q.text
            ),
        }
    }

    fn secret(&mut self, label: &str) -> Result<String> {
        bail!(
            "{label}: a secret prompt needs a terminal; pass the value another way (--var, from_env)"
        )
    }

    fn who(&self) -> &str {
        "unattended"
    }

    fn attended(&self) -> bool {
        false
    }
}

/// Answers from a script, in order, and remembers every question: drives the engine's state
/// machine in tests without a terminal. Each scripted answer waits for a question whose text
/// holds its words; every other question (the routine "Run step N?", say) gets the answer
/// `--yes` would give.
#[derive(Debug, Default)]
pub struct Scripted {
    pub answers: std::collections::VecDeque<(&'static str, Answer)>,
    pub asked: Vec<String>,
}

impl Scripted {
    pub fn new(answers: impl IntoIterator<Item = (&'static str, Answer)>) -> Scripted {
        Scripted { answers: answers.into_iter().collect(), asked: Vec::new() }
    }
}

impl Operator for Scripted {
    fn choose(&mut self, q: &Question<'_>) -> Result<Answer> {
        self.asked.push(q.text.to_string());
        match self.answers.front() {
            Some((words, answer)) if q.text.contains(words) => {
                let answer = *answer;
                self.answers.pop_front();
                Ok(answer)
            }
            _ => Unattended.choose(q),
        }
    }

    fn secret(&mut self, label: &str) -> Result<String> {
        bail!("{label}: the script has no secrets")
    }

    fn who(&self) -> &str {
        "script"
    }

    fn attended(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambiguous_letters_need_a_longer_prefix() {
        let all = [RETRY, ROLLBACK, SKIP, ABORT];
        assert_eq!(unique_prefix(&RETRY, &all), 2);
        assert_eq!(unique_prefix(&SKIP, &all), 1);
        assert!(matches(&ROLLBACK, "ro", &all));
        assert!(!matches(&ROLLBACK, "r", &all));
        assert!(matches(&RETRY, "retry", &all));
    }
}
