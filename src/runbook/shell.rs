//! Where each placeholder of a shell command sits in bash's grammar, and how a value is written
//! there so that bash reads back exactly that value as data, whatever characters it holds.
//!
//! The scanner follows bash's quoting as it reads the template: plain words, `"..."`, `'...'`,
//! `$'...'`, `$(...)`, `${...}`, `$((...))`, comments and here-documents. Each placeholder gets
//! the [`Spot`] it sits in; [`quote`] then writes a value for that spot (one single-quoted word
//! outside quotes, escaped inside `"..."`, closed and reopened inside `'...'`). Spots where no
//! quoting is sound (inside backquotes, right after a `\` or `$`, in a here-document's delimiter)
//! are [`Misplaced`], reported by `check`.

use std::collections::VecDeque;
use std::ops::Range;

use super::template::{Placeholder, placeholders};

/// What a placeholder stands for in a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fill {
    /// A value, written so that bash reads exactly it.
    Value(String),
    /// A secret: a reference to the environment variable (named here) that holds it.
    Secret(String),
}

/// Fill a command's placeholders, each written for where it sits; `fill` says what a variable
/// stands for (`None` leaves the placeholder as written). `{{raw:name}}` is pasted as it is (a
/// secret as `${VAR}`). `Err` names the variable and says why its value cannot be used there.
/// Anything that fills commands (the plan, or values known only during a run) goes through here.
pub fn render(text: &str, mut fill: impl FnMut(&str) -> Option<Fill>) -> Result<String, String> {
    let Ok(found) = placeholders(text) else { return Ok(text.to_string()) };
    let spots = spots(text, &found);
    let mut out = String::with_capacity(text.len());
    let mut heredocs = Vec::new();
    let mut last = 0;
    for (p, spot) in found.iter().zip(spots) {
        out.push_str(&text[last..p.range.start]);
        last = p.range.end;
        let Some(filled) = fill(p.name) else {
            out.push_str(&text[p.range.clone()]);
            continue;
        };
        let start = out.len();
        let written = write(p, &filled, &spot)
            .map_err(|why| format!("the value of `{}` cannot be used there: {why}", p.name))?;
        out.push_str(&written);
        // A reference is expanded after bash has found the document's end: only values count.
        if let (Ok(spot @ Spot::Heredoc { .. }), Fill::Value(_)) = (spot, &filled) {
            heredocs.push((p.name, start..out.len(), spot));
        }
    }
    out.push_str(&text[last..]);
    match heredocs.into_iter().find(|(_, range, spot)| ends_heredoc(&out, range.clone(), spot)) {
        Some((name, _, _)) => Err(format!(
            "the value of `{name}` holds a line that would end its here-document early"
        )),
        None => Ok(out),
    }
}

/// One placeholder's value written at its spot.
fn write(
    p: &Placeholder<'_>,
    filled: &Fill,
    spot: &Result<Spot, Misplaced>,
) -> Result<String, String> {
    match (p.raw, filled, spot) {
        (true, Fill::Secret(var), _) => Ok(format!("${{{var}}}")),
        (true, Fill::Value(v), _) => Ok(v.clone()),
        (false, _, Err(m)) => Err(m.explain().0.to_string()),
        (false, Fill::Secret(var), Ok(spot)) => reference(spot, var),
        (false, Fill::Value(v), Ok(spot)) => quote(spot, v),
    }
}

/// Where a placeholder sits, as bash will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spot {
    /// Outside quotes (a word, or part of one).
    Unquoted,
    /// Inside `"..."` (or a `${...}` inside one).
    Double,
    /// Inside `'...'`.
    Single,
    /// Inside `$'...'`.
    AnsiC,
    /// After `#`: bash ignores it, up to the end of the line.
    Comment,
    /// In a here-document's body; `quoted` when its delimiter was quoted (`<<'EOF'`), so the
    /// body is taken literally.
    Heredoc { delimiter: String, quoted: bool, strip_tabs: bool },
    /// Inside `$((...))` or `((...))`, where bash evaluates text as arithmetic (and as code).
    Arithmetic,
}

/// A place where no quoting can make a value plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misplaced {
    Backquotes,
    AfterBackslash,
    AfterDollar,
    HeredocDelimiter,
}

impl Misplaced {
    /// What is wrong, and what to write instead.
    pub fn explain(self) -> (&'static str, &'static str) {
        match self {
            Misplaced::Backquotes => (
                "a placeholder inside backquotes cannot be quoted safely",
                "write $(...) instead of `...`",
            ),
            Misplaced::AfterBackslash => (
                "a placeholder right after `\\` would have its first character escaped",
                "remove the backslash, or put a space or quote between",
            ),
            Misplaced::AfterDollar => (
                "a placeholder right after `$` would turn its value into an expansion",
                "to expand a shell variable named by a value, say so with {{raw:name}}",
            ),
            Misplaced::HeredocDelimiter => (
                "a placeholder in a here-document's delimiter",
                "write the delimiter as plain text, such as <<'EOF'",
            ),
        }
    }
}

/// The spot of each placeholder in `found` (which must come from `text`), in order.
pub fn spots(text: &str, found: &[Placeholder<'_>]) -> Vec<Result<Spot, Misplaced>> {
    let mut toks = Vec::with_capacity(text.len());
    let mut last = 0;
    for p in found {
        toks.extend(text[last..p.range.start].chars().map(Tok::Ch));
        toks.push(Tok::Ph);
        last = p.range.end;
    }
    toks.extend(text[last..].chars().map(Tok::Ch));
    let mut scanner = Scanner::default();
    let mut out = Vec::with_capacity(found.len());
    let mut i = 0;
    while i < toks.len() {
        match toks[i] {
            Tok::Ph => {
                out.push(scanner.placeholder());
                i += 1;
            }
            Tok::Ch(c) => i += scanner.char(c, &toks[i + 1..]),
        }
    }
    out
}

/// How `value` is written at `spot` so that bash reads exactly `value`. `Err` says why it
/// cannot be (the caller adds which step and variable).
pub fn quote(spot: &Spot, value: &str) -> Result<String, String> {
    if value.contains('\0') {
        return Err("it holds a NUL byte, which no shell word can carry".into());
    }
    Ok(match spot {
        Spot::Unquoted => word(value),
        Spot::Single if is_plain(value) => value.to_string(),
        Spot::Single => format!("'{}'", word(value)),
        Spot::AnsiC if is_plain(value) => value.to_string(),
        Spot::AnsiC => format!("'{}$'", word(value)),
        Spot::Double => escape(value, "\\\"$`"),
        Spot::Comment => word(value).replace('\n', "\\n").replace('\r', "\\r"),
        Spot::Heredoc { quoted: true, .. } => value.to_string(),
        Spot::Heredoc { quoted: false, .. } => escape(value, "\\$`"),
        Spot::Arithmetic => integer(value)?,
    })
}

/// How a reference to the environment variable `var` (which holds a secret) is written at
/// `spot`: expanded by bash, never split or globbed.
pub fn reference(spot: &Spot, var: &str) -> Result<String, String> {
    let expansion = format!("${{{var}}}");
    Ok(match spot {
        Spot::Unquoted | Spot::Comment => format!("\"{expansion}\""),
        Spot::Double | Spot::Heredoc { quoted: false, .. } => expansion,
        Spot::Single => format!("'\"{expansion}\"'"),
        Spot::AnsiC => format!("'\"{expansion}\"$'"),
        Spot::Heredoc { quoted: true, .. } => {
            return Err("a quoted here-document (<<'EOF') cannot expand the secret's \
                        reference, and its value is never written into a command; \
                        leave the delimiter unquoted"
                .into());
        }
        Spot::Arithmetic => {
            return Err("a secret is never evaluated as arithmetic".into());
        }
    })
}

/// Whether the here-document that `rendered[range]` sits in would end inside it: a line of the
/// value (with the text around it on its lines) equal to the delimiter.
pub fn ends_heredoc(rendered: &str, range: Range<usize>, spot: &Spot) -> bool {
    let Spot::Heredoc { delimiter, strip_tabs, .. } = spot else { return false };
    let start = rendered[..range.start].rfind('\n').map_or(0, |i| i + 1);
    let end = rendered[range.end..].find('\n').map_or(rendered.len(), |i| i + range.end);
    rendered[start..end].split('\n').any(|line| {
        let line = if *strip_tabs { line.trim_start_matches('\t') } else { line };
        line == delimiter
    })
}

/// One single-quoted word, or the value itself when bash would read it unchanged anyway.
fn word(value: &str) -> String {
    if is_plain(value) { value.to_string() } else { format!("'{}'", value.replace('\'', r"'\''")) }
}

/// Characters that mean nothing special to bash anywhere in a word (no quote, space, glob,
/// expansion, tilde, comment or brace).
fn is_plain(value: &str) -> bool {
    !value.is_empty()
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c))
}

fn escape(value: &str, special: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if special.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Bash evaluates the text of an arithmetic expression as code (`a[$(cmd)]` runs `cmd`), so
/// only a plain integer is written there.
fn integer(value: &str) -> Result<String, String> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(value.to_string())
    } else {
        Err(format!(
            "it is used inside $((...)) or ((...)), where bash runs text as code, and {value:?} \
             is not a whole number"
        ))
    }
}

#[derive(Clone, Copy)]
enum Tok {
    Ch(char),
    Ph,
}

/// One level of bash's nesting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Double,
    Single,
    AnsiC,
    Backtick,
    Comment,
    /// `$(...)`, `<(...)`, `>(...)`, with the depth of plain parentheses inside.
    Command(u32),
    Arith(u32),
    /// `${...}`, with the depth of braces inside.
    Param(u32),
    Body,
}

/// A here-document announced by `<<` whose body starts at the next newline.
#[derive(Debug, Clone, Default)]
struct Heredoc {
    delimiter: String,
    quoted: bool,
    strip_tabs: bool,
}

/// The delimiter word after `<<`, as it is read.
#[derive(Debug, Default)]
struct DelimiterWord {
    doc: Heredoc,
    started: bool,
    quote: Option<char>,
}

#[derive(Debug)]
struct Scanner {
    /// Frames above the top level (which is plain, unquoted text).
    stack: Vec<Frame>,
    pending: VecDeque<Heredoc>,
    /// The here-document whose body is being read, its current line, and whether a placeholder
    /// or an expansion is on that line (then it cannot be the delimiter line as written).
    body: Option<(Heredoc, String, bool)>,
    delimiter: Option<DelimiterWord>,
    word_start: bool,
    broken: Option<Misplaced>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            stack: Vec::new(),
            pending: VecDeque::new(),
            body: None,
            delimiter: None,
            word_start: true,
            broken: None,
        }
    }
}

impl Scanner {
    fn top(&self) -> Option<Frame> {
        self.stack.last().copied()
    }

    fn within(&self, pred: impl Fn(Frame) -> bool) -> bool {
        self.stack.iter().any(|f| pred(*f))
    }

    fn push(&mut self, f: Frame) {
        if let Some((_, _, dirty)) = &mut self.body {
            *dirty = true;
        }
        self.stack.push(f);
    }

    fn pop(&mut self) {
        self.stack.pop();
        self.word_start = false;
    }

    fn placeholder(&mut self) -> Result<Spot, Misplaced> {
        self.word_start = false;
        if let Some((_, _, dirty)) = &mut self.body {
            *dirty = true;
        }
        if let Some(m) = self.broken.take() {
            return Err(m);
        }
        if self.delimiter.is_some() {
            return Err(Misplaced::HeredocDelimiter);
        }
        if self.within(|f| f == Frame::Backtick) {
            return Err(Misplaced::Backquotes);
        }
        if self.within(|f| matches!(f, Frame::Arith(_))) {
            return Ok(Spot::Arithmetic);
        }
        Ok(match self.stack.iter().rev().find(|f| !matches!(f, Frame::Param(_))) {
            Some(Frame::Double) => Spot::Double,
            Some(Frame::Single) => Spot::Single,
            Some(Frame::AnsiC) => Spot::AnsiC,
            Some(Frame::Comment) => Spot::Comment,
            Some(Frame::Body) => {
                let doc = self.body.as_ref().map(|(d, _, _)| d.clone()).unwrap_or_default();
                Spot::Heredoc {
                    delimiter: doc.delimiter,
                    quoted: doc.quoted,
                    strip_tabs: doc.strip_tabs,
                }
            }
            _ => Spot::Unquoted,
        })
    }

    /// Read one character; returns how many tokens were consumed (0 to read `c` again).
    fn char(&mut self, c: char, rest: &[Tok]) -> usize {
        if self.delimiter.is_some() {
            return self.delimiter_char(c, rest);
        }
        match self.top() {
            Some(Frame::Single) => self.close_on(c, '\''),
            Some(Frame::AnsiC) if c == '\\' => self.escape(rest),
            Some(Frame::AnsiC) => self.close_on(c, '\''),
            Some(Frame::Backtick) if c == '\\' => self.escape(rest),
            Some(Frame::Backtick) => self.close_on(c, '`'),
            Some(Frame::Comment) if c == '\n' => {
                self.pop();
                self.newline();
                1
            }
            Some(Frame::Comment) => 1,
            Some(Frame::Double) => self.double(c, rest),
            Some(Frame::Body) => self.body_char(c, rest),
            _ => self.unquoted(c, rest),
        }
    }

    fn close_on(&mut self, c: char, end: char) -> usize {
        if c == end {
            self.pop();
        }
        1
    }

    /// A backslash escapes what follows; before a placeholder it would escape the quoting.
    fn escape(&mut self, rest: &[Tok]) -> usize {
        match rest.first() {
            Some(Tok::Ph) => {
                self.broken = Some(Misplaced::AfterBackslash);
                1
            }
            Some(Tok::Ch('\n')) if self.top() == Some(Frame::Body) => 2,
            Some(Tok::Ch(c)) => {
                if let Some((_, line, _)) = &mut self.body {
                    line.push('\\');
                    line.push(*c);
                }
                2
            }
            None => 1,
        }
    }

    fn double(&mut self, c: char, rest: &[Tok]) -> usize {
        match c {
            '\\' => self.escape(rest),
            '"' => {
                self.pop();
                1
            }
            '$' => self.dollar(rest, false),
            '`' => {
                self.push(Frame::Backtick);
                1
            }
            _ => 1,
        }
    }

    /// `$` opens an expansion; `ansi_c` when `$'...'` is possible here (not inside quotes).
    fn dollar(&mut self, rest: &[Tok], ansi_c: bool) -> usize {
        let next = |i: usize| match rest.get(i) {
            Some(Tok::Ch(c)) => Some(*c),
            _ => None,
        };
        match (rest.first(), next(0), next(1)) {
            (Some(Tok::Ph), _, _) => {
                self.broken = Some(Misplaced::AfterDollar);
                1
            }
            (_, Some('('), Some('(')) => {
                self.push(Frame::Arith(0));
                3
            }
            (_, Some('('), _) => {
                self.push(Frame::Command(0));
                2
            }
            (_, Some('{'), _) => {
                self.push(Frame::Param(0));
                2
            }
            (_, Some('\''), _) if ansi_c => {
                self.push(Frame::AnsiC);
                2
            }
            _ => 1,
        }
    }

    /// Plain text: the top level, or inside `$(...)`, `${...}` or `$((...))`.
    fn unquoted(&mut self, c: char, rest: &[Tok]) -> usize {
        let next = match rest.first() {
            Some(Tok::Ch(n)) => Some(*n),
            _ => None,
        };
        let at_word_start = self.word_start;
        self.word_start = c.is_whitespace() || ";&|()<>".contains(c);
        let in_param = matches!(self.top(), Some(Frame::Param(_)));
        // Inside "${x:-...}" bash keeps single quotes as they are.
        let quotes_literal = in_param
            && self.stack.iter().rev().find(|f| !matches!(f, Frame::Param(_)))
                == Some(&Frame::Double);
        match c {
            '\\' => self.escape(rest),
            '\'' if quotes_literal => 1,
            '\'' => {
                self.push(Frame::Single);
                1
            }
            '"' => {
                self.push(Frame::Double);
                1
            }
            '`' => {
                self.push(Frame::Backtick);
                1
            }
            '$' => self.dollar(rest, true),
            '#' if at_word_start && !in_param => {
                self.push(Frame::Comment);
                1
            }
            '\n' => {
                self.newline();
                1
            }
            '(' | ')' => self.paren(c, next, at_word_start),
            '{' | '}' => self.brace(c),
            '<' | '>' => self.redirect(c, rest),
            _ => 1,
        }
    }

    fn paren(&mut self, c: char, next: Option<char>, at_word_start: bool) -> usize {
        match (self.stack.last_mut(), c) {
            (Some(Frame::Command(d) | Frame::Arith(d)), '(') => *d += 1,
            (Some(Frame::Arith(0)), ')') if next == Some(')') => {
                self.pop();
                return 2;
            }
            (Some(Frame::Command(0)), ')') => self.pop(),
            (Some(Frame::Command(d) | Frame::Arith(d)), ')') => *d = d.saturating_sub(1),
            (_, '(') if at_word_start && next == Some('(') => {
                self.push(Frame::Arith(0));
                return 2;
            }
            _ => {}
        }
        1
    }

    fn brace(&mut self, c: char) -> usize {
        match (self.stack.last_mut(), c) {
            (Some(Frame::Param(d)), '{') => *d += 1,
            (Some(Frame::Param(0)), '}') => self.pop(),
            (Some(Frame::Param(d)), '}') => *d -= 1,
            _ => {}
        }
        1
    }

    /// `<(` and `>(` run a command; `<<` and `<<-` announce a here-document (`<<<` does not).
    fn redirect(&mut self, c: char, rest: &[Tok]) -> usize {
        let next = |i: usize| match rest.get(i) {
            Some(Tok::Ch(c)) => Some(*c),
            _ => None,
        };
        match (c, next(0), next(1)) {
            (_, Some('('), _) => {
                self.push(Frame::Command(0));
                2
            }
            ('<', Some('<'), Some('<')) => 3,
            ('<', Some('<'), dash) => {
                let strip_tabs = dash == Some('-');
                let doc = Heredoc { strip_tabs, ..Heredoc::default() };
                self.delimiter = Some(DelimiterWord { doc, ..DelimiterWord::default() });
                if strip_tabs { 3 } else { 2 }
            }
            _ => 1,
        }
    }

    /// The word after `<<`: quoted in any part means a literal body.
    fn delimiter_char(&mut self, c: char, rest: &[Tok]) -> usize {
        let Some(w) = self.delimiter.as_mut() else { return 1 };
        if let Some(q) = w.quote {
            if c == q {
                w.quote = None;
            } else {
                w.doc.delimiter.push(c);
            }
            return 1;
        }
        match c {
            ' ' | '\t' if !w.started => 1,
            '\'' | '"' => {
                w.started = true;
                w.doc.quoted = true;
                w.quote = Some(c);
                1
            }
            '\\' => {
                w.started = true;
                w.doc.quoted = true;
                if let Some(Tok::Ch(n)) = rest.first() {
                    w.doc.delimiter.push(*n);
                    return 2;
                }
                1
            }
            c if c.is_whitespace() || ";&|()<>".contains(c) => {
                if let Some(w) = self.delimiter.take().filter(|w| w.started) {
                    self.pending.push_back(w.doc);
                }
                0
            }
            c => {
                w.started = true;
                w.doc.delimiter.push(c);
                1
            }
        }
    }

    /// At the end of a line of commands, the bodies of the here-documents announced on it start.
    fn newline(&mut self) {
        if let Some(doc) = self.pending.pop_front() {
            self.body = Some((doc, String::new(), false));
            self.push(Frame::Body);
            if let Some((_, _, dirty)) = &mut self.body {
                *dirty = false;
            }
        }
    }

    fn body_char(&mut self, c: char, rest: &[Tok]) -> usize {
        let Some((doc, line, dirty)) = self.body.as_mut() else { return 1 };
        if c == '\n' {
            let text = if doc.strip_tabs { line.trim_start_matches('\t') } else { line.as_str() };
            let ends = !*dirty && text == doc.delimiter;
            line.clear();
            *dirty = false;
            if ends {
                self.body = None;
                self.stack.pop();
                self.newline();
            }
            return 1;
        }
        if doc.quoted {
            line.push(c);
            return 1;
        }
        match c {
            '\\' => self.escape(rest),
            '$' => self.dollar(rest, false),
            '`' => {
                self.push(Frame::Backtick);
                1
            }
            _ => {
                line.push(c);
                1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::template::placeholders;

    fn spots_of(text: &str) -> Vec<Result<Spot, Misplaced>> {
        spots(text, &placeholders(text).unwrap())
    }

    fn heredoc(delimiter: &str, quoted: bool) -> Spot {
        Spot::Heredoc { delimiter: delimiter.into(), quoted, strip_tabs: false }
    }

    #[test]
    fn finds_the_quoting_state_at_each_placeholder() {
        use Spot::*;
        let cases: &[(&str, Vec<Spot>)] = &[
            ("cp {{a}} {{b}}/x", vec![Unquoted, Unquoted]),
            ("echo \"deploying {{v}}\"", vec![Double]),
            ("sed -i 's/max={{old}}/max={{new}}/' f", vec![Single, Single]),
            ("echo $'a\\'{{v}}'", vec![AnsiC]),
            ("echo \"$(echo {{v}})\" '{{w}}'", vec![Unquoted, Single]),
            ("echo ${x:-{{v}}} \"${x:-'{{w}}'}\"", vec![Unquoted, Double]),
            ("echo $(( {{n}} + 1 )); (( {{m}} > 2 ))", vec![Arithmetic, Arithmetic]),
            ("echo a # {{v}}\necho {{w}}", vec![Comment, Unquoted]),
            ("echo a#{{v}}", vec![Unquoted]),
            ("echo \\\\{{v}} \"\\\"{{w}}\"", vec![Unquoted, Double]),
            ("cat <<<{{v}}", vec![Unquoted]),
            ("diff <(echo {{v}}) f", vec![Unquoted]),
        ];
        for (text, want) in cases {
            let got: Vec<Spot> = spots_of(text).into_iter().map(|s| s.unwrap()).collect();
            assert_eq!(&got, want, "{text}");
        }
    }

    #[test]
    fn follows_here_documents_to_their_end() {
        let text =
            "cat > f <<EOF\nmax={{v}}\nEOF\necho {{w}}\ncat <<-'END' | wc\n\tx {{y}}\n\tEND\n{{z}}";
        let got: Vec<Spot> = spots_of(text).into_iter().map(|s| s.unwrap()).collect();
        let literal = Spot::Heredoc { delimiter: "END".into(), quoted: true, strip_tabs: true };
        assert_eq!(got, [heredoc("EOF", false), Spot::Unquoted, literal, Spot::Unquoted]);
    }

    #[test]
    fn a_line_with_a_placeholder_does_not_end_a_here_document() {
        let text = "cat <<EOF\n{{a}}\nEOF\n{{b}}";
        let got: Vec<Spot> = spots_of(text).into_iter().map(|s| s.unwrap()).collect();
        assert_eq!(got, [heredoc("EOF", false), Spot::Unquoted]);
    }

    #[test]
    fn refuses_spots_where_no_quoting_is_sound() {
        use Misplaced::*;
        let cases = [
            ("echo `echo {{v}}`", Backquotes),
            ("echo \\{{v}}", AfterBackslash),
            ("echo \"\\{{v}}\"", AfterBackslash),
            ("echo ${{v}}", AfterDollar),
            ("cat <<{{v}}\nx\n", HeredocDelimiter),
        ];
        for (text, want) in cases {
            assert_eq!(spots_of(text), [Err(want)], "{text}");
        }
    }

    #[test]
    fn quotes_each_value_for_its_spot() {
        let hostile = "x'; touch P \"$(id)\" `id` *\n";
        assert_eq!(quote(&Spot::Unquoted, "/srv/app").unwrap(), "/srv/app");
        assert_eq!(quote(&Spot::Unquoted, "").unwrap(), "''");
        assert_eq!(
            quote(&Spot::Unquoted, hostile).unwrap(),
            "'x'\\''; touch P \"$(id)\" `id` *\n'"
        );
        assert_eq!(quote(&Spot::Double, "a\"$b`c\\").unwrap(), "a\\\"\\$b\\`c\\\\");
        assert_eq!(quote(&Spot::Single, "10m").unwrap(), "10m");
        assert_eq!(quote(&Spot::Single, "a b").unwrap(), "''a b''");
        assert_eq!(quote(&heredoc("EOF", false), "$x").unwrap(), "\\$x");
        assert!(quote(&Spot::Arithmetic, "a[$(id)]").is_err());
        assert_eq!(quote(&Spot::Arithmetic, "-12").unwrap(), "-12");
        assert!(quote(&Spot::Unquoted, "a\0b").is_err());
    }

    #[test]
    fn renders_values_secrets_and_raw_placeholders() {
        let fill = |name: &str| match name {
            "v" => Some(Fill::Value("a b".into())),
            "pw" => Some(Fill::Secret("RUNBOOK_SECRET_PW".into())),
            _ => None,
        };
        let out = render("x {{v}} '{{pw}}' {{raw:v}} {{other}}", fill).unwrap();
        assert_eq!(out, "x 'a b' ''\"${RUNBOOK_SECRET_PW}\"'' a b {{other}}");
        let doc = render("cat <<EOF\n{{v}}\nEOF\n", |_| Some(Fill::Value("EOF".into())));
        assert!(doc.unwrap_err().contains("would end its here-document early"));
    }

    #[test]
    fn a_value_line_equal_to_the_delimiter_would_end_the_document() {
        let spot = heredoc("EOF", false);
        let rendered = "cat <<EOF\na\nEOF\nb\nEOF\n";
        assert!(ends_heredoc(rendered, 10..17, &spot));
        assert!(!ends_heredoc("cat <<EOF\nxEOF\nEOF\n", 10..13, &spot));
    }
}
