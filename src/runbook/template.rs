//! `{{name}}` placeholders: finding them, and where each sits in the file. `{{raw:name}}` is the
//! same variable, marked by the author as meant to be spliced as syntax (shell or regex) rather
//! than inserted as data.

use super::diagnostic::Span;
use super::model::Template;

/// One `{{name}}` in a text: its byte range in the text and the variable's name.
#[derive(Debug, PartialEq, Eq)]
pub struct Placeholder<'t> {
    pub range: std::ops::Range<usize>,
    pub name: &'t str,
    /// Written `{{raw:name}}`: the value is spliced as syntax, not quoted or escaped.
    pub raw: bool,
}

/// The prefix that marks a placeholder as raw.
pub const RAW: &str = "raw:";

/// Every placeholder in `text`, or the offset of an opening `{{` that is never closed.
pub fn placeholders(text: &str) -> Result<Vec<Placeholder<'_>>, usize> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("{{").map(|i| i + from) {
        let close = text[open..].find("}}").map(|i| i + open).ok_or(open)?;
        let inner = text[open + 2..close].trim();
        let (name, raw) = match inner.strip_prefix(RAW) {
            Some(name) => (name.trim(), true),
            None => (inner, false),
        };
        out.push(Placeholder { range: open..close + 2, name, raw });
        from = close + 2;
    }
    Ok(out)
}

pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where a piece of a template's text sits in the file. The template's span covers the quoted
/// string; the piece is found in the raw source so that escapes before it do not shift it.
pub fn locate(source: &str, template: &Template, piece: &str) -> Span {
    let raw = source.get(template.span.clone()).unwrap_or("");
    match raw.find(piece) {
        Some(i) => template.span.start + i..template.span.start + i + piece.len(),
        None => template.span.clone(),
    }
}

/// Replace each placeholder with what `value` returns for its name.
pub fn substitute(text: &str, mut value: impl FnMut(&str) -> Option<String>) -> String {
    substitute_each(text, |p| value(p.name))
}

/// Replace each placeholder with what `value` returns for it (it sees whether it is raw).
pub fn substitute_each(
    text: &str,
    mut value: impl FnMut(&Placeholder<'_>) -> Option<String>,
) -> String {
    let Ok(found) = placeholders(text) else { return text.to_string() };
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for p in found {
        out.push_str(&text[last..p.range.start]);
        match value(&p) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&text[p.range.clone()]),
        }
        last = p.range.end;
    }
    out.push_str(&text[last..]);
    out
}

/// A regex with each placeholder replaced by what stands for its value when the regex is
/// checked before values are known: literal text, or nothing for a raw one (its syntax is the
/// value's). An unclosed `{{` is left as it is (reported as such elsewhere).
pub fn regex_stand_in(pattern: &str) -> String {
    substitute_each(pattern, |p| Some(if p.raw { String::new() } else { "x".to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_placeholders_with_and_without_spaces() {
        let found = placeholders("cp {{a}} {{ b_2 }}/x").unwrap();
        let names: Vec<_> = found.iter().map(|p| p.name).collect();
        assert_eq!(names, ["a", "b_2"]);
        assert_eq!(found[0].range, 3..8);
    }

    #[test]
    fn a_raw_placeholder_names_its_variable_and_says_it_is_raw() {
        let found = placeholders("{{raw:flags}} {{ raw: b }} {{c}}").unwrap();
        let seen: Vec<_> = found.iter().map(|p| (p.name, p.raw)).collect();
        assert_eq!(seen, [("flags", true), ("b", true), ("c", false)]);
    }

    #[test]
    fn reports_an_unclosed_placeholder() {
        assert_eq!(placeholders("echo {{oops").unwrap_err(), 5);
    }

    #[test]
    fn substitutes_known_names_only() {
        let out = substitute("{{a}}-{{b}}", |n| (n == "a").then(|| "1".to_string()));
        assert_eq!(out, "1-{{b}}");
    }
}
