//! `{{name}}` placeholders: finding them, and where each sits in the file.

use super::diagnostic::Span;
use super::model::Template;

/// One `{{name}}` in a text: its byte range in the text and the variable's name.
#[derive(Debug, PartialEq, Eq)]
pub struct Placeholder<'t> {
    pub range: std::ops::Range<usize>,
    pub name: &'t str,
}

/// Every placeholder in `text`, or the offset of an opening `{{` that is never closed.
pub fn placeholders(text: &str) -> Result<Vec<Placeholder<'_>>, usize> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("{{").map(|i| i + from) {
        let close = text[open..].find("}}").map(|i| i + open).ok_or(open)?;
        out.push(Placeholder { range: open..close + 2, name: text[open + 2..close].trim() });
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
    let Ok(found) = placeholders(text) else { return text.to_string() };
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for p in found {
        out.push_str(&text[last..p.range.start]);
        match value(p.name) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&text[p.range.clone()]),
        }
        last = p.range.end;
    }
    out.push_str(&text[last..]);
    out
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
    fn reports_an_unclosed_placeholder() {
        assert_eq!(placeholders("echo {{oops").unwrap_err(), 5);
    }

    #[test]
    fn substitutes_known_names_only() {
        let out = substitute("{{a}}-{{b}}", |n| (n == "a").then(|| "1".to_string()));
        assert_eq!(out, "1-{{b}}");
    }
}
