//! What the operator sees, on two streams. The record of a run (step cards, outcomes, what a
//! rollback did, the summary) and the steps' own output go to stdout, so `runbook run ... | tee
//! run.log` or `> run.log` keeps all of it; colours only when stdout is a terminal. Prompts
//! (in `engine::operator`) and the live spinner go to stderr, and the spinner only when stderr is
//! a terminal, so a pipe or a file never gets spinner frames. Without a terminal the spinner is a
//! hidden bar, so callers never branch on whether one exists.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use console::Style;
use indicatif::{ProgressBar, ProgressStyle};

pub struct Ui {
    bar: std::cell::RefCell<ProgressBar>,
    /// Stderr is a terminal: the spinner is drawn there.
    pub interactive: bool,
    /// Stdout is a terminal and NO_COLOR is unset: the record is coloured.
    color: bool,
}

impl Default for Ui {
    fn default() -> Self {
        Self::new()
    }
}

impl Ui {
    pub fn new() -> Ui {
        let interactive = std::io::stderr().is_terminal();
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Ui { bar: std::cell::RefCell::new(ProgressBar::hidden()), interactive, color }
    }

    fn paint(&self, style: Style, text: &str) -> String {
        if self.color { style.apply_to(text).to_string() } else { text.to_string() }
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint(Style::new().bold(), text)
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint(Style::new().dim(), text)
    }

    pub fn good(&self, text: &str) -> String {
        self.paint(Style::new().green().bold(), text)
    }

    pub fn bad(&self, text: &str) -> String {
        self.paint(Style::new().red().bold(), text)
    }

    pub fn warn(&self, text: &str) -> String {
        self.paint(Style::new().yellow().bold(), text)
    }

    /// A line of the run's record, on stdout, without tearing the spinner.
    pub fn say(&self, line: &str) {
        self.bar.borrow().suspend(|| {
            let mut out = std::io::stdout().lock();
            // A closed stdout (a pipe into `head`) must not stop a deploy halfway.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        });
    }

    /// Step output, on stdout, as it comes.
    pub fn output(&self, bytes: &[u8]) {
        self.bar.borrow().suspend(|| {
            let mut out = std::io::stdout().lock();
            // A closed stdout (a pipe into `head`) must not stop the step.
            let _ = out.write_all(bytes).and_then(|()| out.flush());
        });
    }

    /// Show a spinner with elapsed time until `finish_spinner`.
    pub fn start_spinner(&self, label: &str) {
        let bar = if self.interactive {
            let bar = ProgressBar::new_spinner();
            let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_message(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        } else {
            ProgressBar::hidden()
        };
        *self.bar.borrow_mut() = bar;
    }

    pub fn set_spinner_message(&self, msg: String) {
        self.bar.borrow().set_message(msg);
    }

    pub fn finish_spinner(&self) {
        let bar = self.bar.replace(ProgressBar::hidden());
        bar.finish_and_clear();
    }
}
