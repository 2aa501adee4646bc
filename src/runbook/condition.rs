//! The `fail_if` conditions of a measure step: `error_rate > 0.01`,
//! `latency_p95_ms > 1.5 * before`. A small language: numbers, metric names, `before`, `+ - * /`,
//! parentheses, and one comparison (`> >= < <= == !=`). A bare metric name is the figure this
//! step measured; `before` is the first figure of the condition's one metric measured earlier in
//! the run. `check` parses every condition (errors at their column); the step parses the
//! journalled text again when it judges its figures.

use std::fmt;

/// A parsed condition: `left op right`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    left: Expr,
    op: Cmp,
    right: Expr,
    /// Each metric name with its byte offset in the text, in order of appearance.
    names: Vec<(String, usize)>,
    /// The byte offset of each `before`.
    befores: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Number(f64),
    Metric(String),
    Before,
    Neg(Box<Expr>),
    Binary(Box<Expr>, Arith, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Cmp {
    fn holds(self, l: f64, r: f64) -> bool {
        match self {
            Cmp::Gt => l > r,
            Cmp::Ge => l >= r,
            Cmp::Lt => l < r,
            Cmp::Le => l <= r,
            Cmp::Eq => l == r,
            Cmp::Ne => l != r,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }
}

/// A condition that does not parse: where (a byte offset into its text), what, what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub at: usize,
    pub len: usize,
    pub message: String,
    pub expected: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at character {} (expected {})", self.message, self.at + 1, self.expected)
    }
}

/// Why a condition could not be judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Unknown {
    /// This step's figures have no such metric.
    Metric(String),
    /// No earlier figure of the metric in this run.
    Before(String),
}

/// Both sides of a judged condition, and whether it held (the step fails when it did).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    pub left: f64,
    pub right: f64,
    pub held: bool,
}

impl Condition {
    /// Distinct metric names, in order of appearance.
    pub fn metrics(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (n, _) in &self.names {
            if !out.contains(&n.as_str()) {
                out.push(n);
            }
        }
        out
    }

    /// Every metric name with its byte offset in the text, for `check` to point at.
    pub fn metric_spans(&self) -> &[(String, usize)] {
        &self.names
    }

    pub fn uses_before(&self) -> bool {
        !self.befores.is_empty()
    }

    /// The byte offset of the first `before`, for `check` to point at.
    pub fn before_at(&self) -> Option<usize> {
        self.befores.first().copied()
    }

    /// The metric the condition is about: its one metric (a condition using `before` has one).
    pub fn subject(&self) -> Option<&str> {
        match self.metrics().as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    pub fn comparison(&self) -> &'static str {
        self.op.symbol()
    }

    /// Judge with this step's figures and, for `before`, the earlier figure.
    pub fn judge(
        &self,
        now: &dyn Fn(&str) -> Option<f64>,
        before: Option<f64>,
    ) -> Result<Judged, Unknown> {
        let subject = self.subject().unwrap_or_default().to_string();
        let before = || before.ok_or_else(|| Unknown::Before(subject.clone()));
        let left = self.left.eval(now, &before)?;
        let right = self.right.eval(now, &before)?;
        Ok(Judged { left, right, held: self.op.holds(left, right) })
    }
}

impl Expr {
    fn eval(
        &self,
        now: &dyn Fn(&str) -> Option<f64>,
        before: &dyn Fn() -> Result<f64, Unknown>,
    ) -> Result<f64, Unknown> {
        Ok(match self {
            Expr::Number(n) => *n,
            Expr::Metric(name) => now(name).ok_or_else(|| Unknown::Metric(name.clone()))?,
            Expr::Before => before()?,
            Expr::Neg(e) => -e.eval(now, before)?,
            Expr::Binary(a, op, b) => {
                let (a, b) = (a.eval(now, before)?, b.eval(now, before)?);
                match op {
                    Arith::Add => a + b,
                    Arith::Sub => a - b,
                    Arith::Mul => a * b,
                    Arith::Div => a / b,
                }
            }
        })
    }
}

/// Parse one condition.
pub fn parse(text: &str) -> Result<Condition, ParseError> {
    let tokens = lex(text)?;
    let mut p = Parser { tokens, pos: 0, end: text.len(), names: Vec::new(), befores: Vec::new() };
    let left = p.sum()?;
    let op = p.comparison()?;
    let right = p.sum()?;
    if let Some(t) = p.peek() {
        return Err(p.error_at(t, "text after the condition", "the end of the condition"));
    }
    let condition = Condition { left, op, right, names: p.names, befores: p.befores };
    check_shape(&condition, text)?;
    Ok(condition)
}

/// A condition must name a metric; `before` must know whose earlier figure it is.
fn check_shape(c: &Condition, text: &str) -> Result<(), ParseError> {
    if c.names.is_empty() {
        return Err(ParseError {
            at: 0,
            len: text.len(),
            message: "the condition names no metric".into(),
            expected: "a metric name such as error_rate or latency_p95_ms".into(),
        });
    }
    if let Some(at) = c.before_at()
        && c.subject().is_none()
    {
        return Err(ParseError {
            at,
            len: "before".len(),
            message: format!(
                "`before` is ambiguous: the condition names {} metrics ({})",
                c.metrics().len(),
                c.metrics().join(", ")
            ),
            expected: "one metric in a condition that uses `before`".into(),
        });
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Number(f64),
    Ident(String),
    Sym(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    at: usize,
    len: usize,
}

const SYMBOLS: [&str; 12] = [">=", "<=", "==", "!=", ">", "<", "+", "-", "*", "/", "(", ")"];

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = if c.is_ascii_digit() || c == b'.' {
            while i < text.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let number = text[start..i].parse().map_err(|_| ParseError {
                at: start,
                len: i - start,
                message: format!("`{}` is not a number", &text[start..i]),
                expected: "a number such as 0.01 or 250".into(),
            })?;
            Tok::Number(number)
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < text.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            Tok::Ident(text[start..i].to_string())
        } else if let Some(sym) = SYMBOLS.iter().find(|s| text[i..].starts_with(**s)) {
            i += sym.len();
            Tok::Sym(sym)
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(ParseError {
                at: i,
                len: ch.len_utf8(),
                message: format!("unexpected {ch:?}"),
                expected: "a metric, a number, before, + - * / ( ) or > >= < <= == !=".into(),
            });
        };
        tokens.push(Token { tok, at: start, len: i - start });
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    end: usize,
    names: Vec<(String, usize)>,
    befores: Vec<usize>,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next_sym(&mut self, wanted: &[&str]) -> Option<&'static str> {
        match self.peek().map(|t| &t.tok) {
            Some(Tok::Sym(s)) if wanted.contains(s) => {
                let s = *s;
                self.pos += 1;
                Some(s)
            }
            _ => None,
        }
    }

    fn error_at(&self, t: &Token, message: &str, expected: &str) -> ParseError {
        ParseError { at: t.at, len: t.len, message: message.into(), expected: expected.into() }
    }

    fn error_here(&self, expected: &str) -> ParseError {
        match self.peek() {
            Some(t) => {
                let found = match &t.tok {
                    Tok::Number(_) | Tok::Ident(_) => "this",
                    Tok::Sym(s) => s,
                };
                self.error_at(t, &format!("unexpected `{found}`"), expected)
            }
            None => ParseError {
                at: self.end,
                len: 1,
                message: "the condition ends too soon".into(),
                expected: expected.into(),
            },
        }
    }

    fn comparison(&mut self) -> Result<Cmp, ParseError> {
        let cmp = match self.next_sym(&[">=", "<=", "==", "!=", ">", "<"]) {
            Some(">") => Cmp::Gt,
            Some(">=") => Cmp::Ge,
            Some("<") => Cmp::Lt,
            Some("<=") => Cmp::Le,
            Some("==") => Cmp::Eq,
            Some(_) => Cmp::Ne,
            None => return Err(self.error_here("a comparison: > >= < <= == !=")),
        };
        Ok(cmp)
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.product()?;
        while let Some(s) = self.next_sym(&["+", "-"]) {
            let op = if s == "+" { Arith::Add } else { Arith::Sub };
            left = Expr::Binary(Box::new(left), op, Box::new(self.product()?));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while let Some(s) = self.next_sym(&["*", "/"]) {
            let op = if s == "*" { Arith::Mul } else { Arith::Div };
            left = Expr::Binary(Box::new(left), op, Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.next_sym(&["-"]).is_some() {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        let expected = "a metric name, a number, before or (";
        let Some(t) = self.peek().cloned() else { return Err(self.error_here(expected)) };
        match t.tok {
            Tok::Number(n) => {
                self.pos += 1;
                Ok(Expr::Number(n))
            }
            Tok::Ident(name) if name == "before" => {
                self.pos += 1;
                self.befores.push(t.at);
                Ok(Expr::Before)
            }
            Tok::Ident(name) => {
                self.pos += 1;
                self.names.push((name.clone(), t.at));
                Ok(Expr::Metric(name))
            }
            Tok::Sym("(") => {
                self.pos += 1;
                let inner = self.sum()?;
                if self.next_sym(&[")"]).is_none() {
                    return Err(self.error_here("`)`"));
                }
                Ok(inner)
            }
            Tok::Sym(_) => Err(self.error_here(expected)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(name: &str) -> Option<f64> {
        match name {
            "error_rate" => Some(0.02),
            "latency_p95_ms" => Some(9.0),
            _ => None,
        }
    }

    #[test]
    fn judges_against_a_constant_and_against_before() {
        let c = parse("error_rate > 0.01").unwrap();
        assert_eq!(c.judge(&figures, None), Ok(Judged { left: 0.02, right: 0.01, held: true }));
        let c = parse("latency_p95_ms > 1.5 * before").unwrap();
        assert_eq!(c.subject(), Some("latency_p95_ms"));
        assert!(!c.judge(&figures, Some(6.0)).unwrap().held);
        assert!(c.judge(&figures, Some(5.0)).unwrap().held);
        assert_eq!(c.judge(&figures, None), Err(Unknown::Before("latency_p95_ms".into())));
    }

    #[test]
    fn precedence_parentheses_and_negation() {
        let c = parse("(latency_p95_ms - before) / before >= -0.5 + 1").unwrap();
        let j = c.judge(&figures, Some(6.0)).unwrap();
        assert_eq!((j.left, j.right, j.held), (0.5, 0.5, true));
    }

    #[test]
    fn an_unknown_metric_is_reported_when_judged() {
        let c = parse("status_500 > 0").unwrap();
        assert_eq!(c.judge(&figures, None), Err(Unknown::Metric("status_500".into())));
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = parse("error_rate >").unwrap_err();
        assert_eq!((e.at, e.message.as_str()), (12, "the condition ends too soon"));
        let e = parse("error_rate 0.01").unwrap_err();
        assert_eq!(e.at, 11);
        assert!(e.expected.contains(">="), "{e:?}");
        let e = parse("error_rate > 0.01 %").unwrap_err();
        assert_eq!(e.at, 18);
        let e = parse("1.2.3 < error_rate").unwrap_err();
        assert_eq!((e.at, e.len), (0, 5));
        let e = parse("(error_rate > 1").unwrap_err();
        assert_eq!((e.at, e.expected.as_str()), (12, "`)`"));
        let e = parse("error_rate > 1 > 2").unwrap_err();
        assert_eq!(e.at, 15);
    }

    #[test]
    fn before_needs_exactly_one_metric_and_a_condition_needs_one() {
        let e = parse("error_rate + latency_p95_ms > before").unwrap_err();
        assert_eq!(e.at, 30);
        assert!(e.message.contains("ambiguous"), "{e:?}");
        let e = parse("1 > 0").unwrap_err();
        assert!(e.message.contains("names no metric"), "{e:?}");
    }
}
