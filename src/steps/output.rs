//! Where a step's output goes as it comes: masked, to its log file and the terminal, checked
//! line by line against `expect.stdout`, with only a bounded tail kept in memory (a step that
//! prints a gigabyte costs no more memory than one that prints a line).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::runbook::OutputMatch;
use crate::secret::Masker;
use crate::ui::Ui;

/// Lines longer than this are cut where they are, so a newline-less stream stays bounded.
const MAX_LINE: usize = 64 * 1024;
/// How much of the end of the output the journal keeps.
const TAIL_BYTES: usize = 4 * 1024;

pub struct OutputSink<'a> {
    /// Unbuffered: each piece is written as it comes, so `runbook logs` and `tail -f` show a
    /// step while it runs.
    log: File,
    path: std::path::PathBuf,
    masker: &'a Masker,
    ui: &'a Ui,
    echo: bool,
    matcher: Option<&'a OutputMatch>,
    pub matched: bool,
    carry: Vec<u8>,
    tail: VecDeque<u8>,
    pub bytes: u64,
    error: Option<std::io::Error>,
    /// `capture` patterns, matched against each line as it ran (before masking, so an output
    /// holding a secret is known as one); the first value of each named group is kept.
    captures: &'a [regex::Regex],
    pub captured: std::collections::BTreeMap<String, String>,
}

impl<'a> OutputSink<'a> {
    pub fn create(
        log_path: &Path,
        masker: &'a Masker,
        ui: &'a Ui,
        echo: bool,
        matcher: Option<&'a OutputMatch>,
    ) -> Result<OutputSink<'a>> {
        let file = crate::private::create(log_path)
            .with_context(|| format!("cannot create the step log {}", log_path.display()))?;
        Ok(OutputSink {
            log: file,
            path: log_path.to_path_buf(),
            masker,
            ui,
            echo,
            matcher,
            matched: false,
            carry: Vec::new(),
            tail: VecDeque::with_capacity(TAIL_BYTES),
            bytes: 0,
            error: None,
            captures: &[],
            captured: std::collections::BTreeMap::new(),
        })
    }

    /// Match `captures` against every line too.
    pub fn capturing(mut self, captures: &'a [regex::Regex]) -> OutputSink<'a> {
        self.captures = captures;
        self
    }

    fn capture(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        for re in self.captures {
            let Some(caps) = re.captures(text) else { continue };
            for name in re.capture_names().flatten() {
                if let Some(m) = caps.name(name) {
                    self.captured.entry(name.to_string()).or_insert_with(|| m.as_str().to_string());
                }
            }
        }
    }

    /// Take the next piece of output.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        let mut out = Vec::with_capacity(chunk.len() + self.carry.len());
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(nl + 1);
            if self.carry.is_empty() {
                self.line(line, &mut out);
            } else {
                let mut whole = std::mem::take(&mut self.carry);
                whole.extend_from_slice(line);
                self.line(&whole, &mut out);
            }
            rest = after;
        }
        self.carry.extend_from_slice(rest);
        if self.carry.len() >= MAX_LINE {
            // Hold back what could be the start of a secret, so the cut cannot split one.
            let keep = self.masker.longest().saturating_sub(1).min(self.carry.len());
            let rest = self.carry.split_off(self.carry.len() - keep);
            let long = std::mem::replace(&mut self.carry, rest);
            self.line(&long, &mut out);
        }
        self.emit(&out);
    }

    /// One complete line (with its newline, if it had one).
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if !self.captures.is_empty() {
            self.capture(line);
        }
        let masked = self.masker.mask_bytes(line);
        if let Some(m) = self.matcher
            && !self.matched
        {
            let text = String::from_utf8_lossy(&masked);
            self.matched = m.matches(text.trim_end_matches(['\n', '\r']));
        }
        out.extend_from_slice(&masked);
    }

    fn emit(&mut self, out: &[u8]) {
        if out.is_empty() {
            return;
        }
        // After a failed write (a full disk) the log stays a clean prefix of the output, and the
        // step goes on: the terminal still gets everything.
        if self.error.is_none()
            && let Err(e) = self.log.write_all(out)
        {
            self.error = Some(e);
        }
        if self.echo {
            self.ui.output(out);
        }
        let keep = out.len().min(TAIL_BYTES);
        while self.tail.len() + keep > TAIL_BYTES {
            self.tail.pop_front();
        }
        self.tail.extend(&out[out.len() - keep..]);
    }

    /// Flush what is left; returns the tail of the output, as text, and what went wrong with the
    /// step log, if anything did. A log that could not be written does not undo what the step
    /// did: the caller records the step as it ran and says that its log is incomplete.
    pub fn finish(mut self) -> (String, Option<String>) {
        if !self.carry.is_empty() {
            let last = std::mem::take(&mut self.carry);
            let mut out = Vec::new();
            self.line(&last, &mut out);
            self.emit(&out);
        }
        let problem = self.error.take().or_else(|| self.log.flush().err());
        let problem = problem.map(|e| {
            format!(
                "its log {} is incomplete ({e}); the terminal showed all of its output",
                self.path.display()
            )
        });
        let tail: Vec<u8> = self.tail.into_iter().collect();
        (String::from_utf8_lossy(&tail).into_owned(), problem)
    }
}
