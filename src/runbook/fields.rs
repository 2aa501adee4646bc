//! Typed access to one TOML table, remembering which keys were read so that every key left over
//! is reported as unknown, with the nearest valid key as a hint.

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, Span};
use super::duration;
use super::model::Template;

/// One table of the runbook being read, and the problems found in it so far.
pub struct Fields<'a, 'i> {
    table: &'a DeTable<'i>,
    pub span: Span,
    /// How to name this table in messages: `step 2`, `[runbook]`.
    pub context: String,
    used: Vec<String>,
}

pub type Value<'i> = Spanned<DeValue<'i>>;

impl<'a, 'i> Fields<'a, 'i> {
    pub fn new(table: &'a DeTable<'i>, span: Span, context: impl Into<String>) -> Self {
        Fields { table, span, context: context.into(), used: Vec::new() }
    }

    /// The raw value under `key`, marking the key as known.
    pub fn get(&mut self, key: &str) -> Option<&'a Value<'i>> {
        self.used.push(key.to_string());
        self.table.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| v)
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.iter().any(|(k, _)| k.get_ref().as_ref() == key)
    }

    pub fn string(&mut self, key: &str, d: &mut Vec<Diagnostic>) -> Option<(String, Span)> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some((s.to_string(), value.span())),
            _ => {
                d.push(type_error(value, key, &self.context, "a string"));
                None
            }
        }
    }

    pub fn template(&mut self, key: &str, d: &mut Vec<Diagnostic>) -> Option<Template> {
        self.string(key, d).map(|(text, span)| Template { text, span })
    }

    pub fn required_string(&mut self, key: &str, d: &mut Vec<Diagnostic>) -> Option<String> {
        if !self.has(key) {
            d.push(self.missing(key, "a string"));
        }
        self.string(key, d).map(|(s, _)| s)
    }

    pub fn missing(&self, key: &str, what: &str) -> Diagnostic {
        Diagnostic::new(self.span.clone(), format!("{} has no `{key}`", self.context))
            .expected(format!("`{key} = ` {what}"))
    }

    pub fn integer(&mut self, key: &str, d: &mut Vec<Diagnostic>) -> Option<(i64, Span)> {
        let value = self.get(key)?;
        let parsed = match value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        if parsed.is_none() {
            d.push(type_error(value, key, &self.context, "a whole number"));
        }
        parsed.map(|n| (n, value.span()))
    }

    /// A non-negative whole number that fits the target type.
    pub fn count<T: TryFrom<i64>>(&mut self, key: &str, d: &mut Vec<Diagnostic>) -> Option<T> {
        let (n, span) = self.integer(key, d)?;
        match T::try_from(n) {
            Ok(v) if n >= 0 => Some(v),
            _ => {
                let msg = format!("`{key}` in {} is out of range: {n}", self.context);
                d.push(Diagnostic::new(span, msg).expected("a number from 0 up"));
                None
            }
        }
    }

    pub fn boolean(&mut self, key: &str, d: &mut Vec<Diagnostic>) -> Option<bool> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                d.push(type_error(value, key, &self.context, "true or false"));
                None
            }
        }
    }

    pub fn duration(&mut self, key: &str, d: &mut Vec<Diagnostic>) -> Option<std::time::Duration> {
        let (text, span) = self.string(key, d)?;
        let parsed = duration::parse(&text);
        if parsed.is_none() {
            let msg = format!("`{key}` in {} is not a duration: {text:?}", self.context);
            d.push(
                Diagnostic::new(span, msg)
                    .expected("a duration such as \"30s\", \"2m\", \"1h30m\", \"7d\"")
                    .hint("units are ms, s, m, h and d; no spaces or decimals"),
            );
        }
        parsed
    }

    /// A duration that must be longer than zero (a timeout, a watch's length).
    pub fn positive_duration(
        &mut self,
        key: &str,
        d: &mut Vec<Diagnostic>,
    ) -> Option<std::time::Duration> {
        let value =
            self.table.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| v.span());
        let parsed = self.duration(key, d)?;
        if parsed.is_zero() {
            let msg = format!("`{key}` in {} is zero", self.context);
            d.push(
                Diagnostic::new(value.unwrap_or(self.span.clone()), msg)
                    .expected("a duration longer than zero"),
            );
            return None;
        }
        Some(parsed)
    }

    /// One string or a list of strings, each with its span.
    pub fn strings(&mut self, key: &str, d: &mut Vec<Diagnostic>) -> Option<Vec<(String, Span)>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(vec![(s.to_string(), value.span())]),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push((s.to_string(), item.span())),
                        _ => d.push(type_error(item, key, &self.context, "a string")),
                    }
                }
                Some(out)
            }
            _ => {
                d.push(type_error(value, key, &self.context, "a string or a list of strings"));
                None
            }
        }
    }

    /// A sub-table such as `expect = { exit = 0 }`.
    pub fn table(&mut self, key: &str, d: &mut Vec<Diagnostic>) -> Option<Fields<'a, 'i>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Table(t) => {
                Some(Fields::new(t, value.span(), format!("`{key}` of {}", self.context)))
            }
            _ => {
                d.push(type_error(value, key, &self.context, "a table"));
                None
            }
        }
    }

    /// The keys in source order, for tables whose keys are names (`[vars]`, `[env]`).
    pub fn entries(&mut self) -> Vec<(String, Span, &'a Value<'i>)> {
        let mut out: Vec<_> =
            self.table.iter().map(|(k, v)| (k.get_ref().to_string(), k.span(), v)).collect();
        self.used.extend(out.iter().map(|(k, _, _)| k.clone()));
        out.sort_by_key(|(_, span, _)| span.start);
        out
    }

    /// Report every key that was never asked for.
    pub fn finish(self, allowed: &[&str], d: &mut Vec<Diagnostic>) {
        for (key, _) in self.table.iter() {
            let name = key.get_ref().as_ref();
            if self.used.iter().any(|u| u == name) {
                continue;
            }
            let mut diag =
                Diagnostic::new(key.span(), format!("unknown key `{name}` in {}", self.context))
                    .expected(format!("one of: {}", allowed.join(", ")));
            if let Some(near) = nearest(name, allowed) {
                diag = diag.hint(format!("did you mean `{near}`?"));
            }
            d.push(diag);
        }
    }
}

/// The closest word in `candidates`, when one is close enough to be a typo.
pub fn nearest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(dist, c)| *dist <= (c.len() / 3).max(1))
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, c)| c)
}

pub fn type_error(value: &Value<'_>, key: &str, context: &str, expected: &str) -> Diagnostic {
    let found = match value.get_ref() {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "a number",
        DeValue::Float(_) => "a decimal number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    };
    Diagnostic::new(value.span(), format!("`{key}` in {context} is {found}"))
        .expected(expected.to_string())
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn nearest_suggests_typos_only() {
        let keys = ["rollback", "run", "retries", "timeout"];
        assert_eq!(nearest("rollbak", &keys), Some("rollback"));
        assert_eq!(nearest("timout", &keys), Some("timeout"));
        assert_eq!(nearest("colour", &keys), None);
    }
}
