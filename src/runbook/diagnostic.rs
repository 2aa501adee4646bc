//! Runbook errors that point into the file: `path:line:column`, the source line, carets under the
//! offending text, what was expected and a hint. `runbook check` prints every one at once.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A byte range in the runbook's source text.
pub type Span = Range<usize>;

/// Whether a diagnostic makes the file invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    /// Shown by `check`; the file is still valid.
    Warning,
}

/// One problem in a runbook file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
    pub expected: Option<String>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(span: Span, message: impl Into<String>) -> Diagnostic {
        let message = message.into();
        Diagnostic { severity: Severity::Error, span, message, expected: None, hint: None }
    }

    /// Something worth a look that does not make the file invalid.
    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::new(span, message) }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn expected(mut self, expected: impl Into<String>) -> Diagnostic {
        self.expected = Some(expected.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }
}

/// A 1-based line and column (in characters) of a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Where a byte offset falls in `text`.
pub fn position(text: &str, offset: usize) -> Position {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Every problem found in one file, ready to print.
#[derive(Debug)]
pub struct Report {
    pub path: PathBuf,
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn new(path: &Path, source: &str, mut diagnostics: Vec<Diagnostic>) -> Report {
        diagnostics.sort_by_key(|d| d.span.start);
        Report { path: path.to_path_buf(), source: source.to_string(), diagnostics }
    }

    /// How many of the diagnostics are errors (the rest are warnings).
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    fn write_one(&self, f: &mut fmt::Formatter<'_>, d: &Diagnostic) -> fmt::Result {
        let pos = position(&self.source, d.span.start);
        let line_text = self.source.lines().nth(pos.line - 1).unwrap_or("");
        let gutter = pos.line.to_string().len();
        let pad = " ".repeat(gutter);
        let label = if d.is_error() { "error" } else { "warning" };
        writeln!(f, "{label}: {}", d.message)?;
        writeln!(f, "{pad}--> {}:{}:{}", self.path.display(), pos.line, pos.column)?;
        writeln!(f, "{pad} |")?;
        writeln!(f, "{} | {}", pos.line, line_text)?;
        let width = caret_width(line_text, pos.column, &self.source[span_text(&self.source, d)]);
        let carets = "^".repeat(width);
        let lead = " ".repeat(pos.column - 1);
        match &d.expected {
            Some(e) => writeln!(f, "{pad} | {lead}{carets} expected {e}")?,
            None => writeln!(f, "{pad} | {lead}{carets}")?,
        }
        if let Some(h) = &d.hint {
            writeln!(f, "{pad} = hint: {h}")?;
        }
        Ok(())
    }
}

fn span_text(source: &str, d: &Diagnostic) -> Span {
    let start = floor_char_boundary(source, d.span.start.min(source.len()));
    let end = floor_char_boundary(source, d.span.end.clamp(start, source.len()));
    start..end
}

/// Carets cover the offending text, stopping at the end of its first line.
fn caret_width(line_text: &str, column: usize, offending: &str) -> usize {
    let first_line = offending.lines().next().unwrap_or("").chars().count();
    let room = line_text.chars().count().saturating_sub(column - 1);
    first_line.min(room).max(1)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            self.write_one(f, d)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_counts_lines_and_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(position(text, 0), Position { line: 1, column: 1 });
        let offset = text.find('=').unwrap();
        assert_eq!(position(text, offset), Position { line: 1, column: 3 });
        let offset = text.find('"').unwrap();
        assert_eq!(position(text, offset), Position { line: 2, column: 6 });
    }
}
