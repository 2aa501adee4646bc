//! Secret values never reach the terminal, the journal, the logs or the note: everything the
//! program writes goes through a `Masker` that knows the run's secrets.

use std::borrow::Cow;

#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<String>,
}

pub const MASK: &str = "***";

/// The shortest line of a multi-line secret that is masked on its own.
const MIN_LINE_SECRET: usize = 6;

impl Masker {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Masker {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Output is masked a line at a time, so a secret of several lines (a PEM key) is also
        // masked line by line; lines too short to be telling are left alone.
        let lines: Vec<String> = secrets
            .iter()
            .filter(|s| s.contains('\n'))
            .flat_map(|s| {
                s.lines().map(|l| l.trim_end_matches('\r').to_string()).collect::<Vec<_>>()
            })
            .filter(|l| l.trim().len() >= MIN_LINE_SECRET)
            .collect();
        secrets.extend(lines);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Masker { secrets }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The length of the longest secret: how much output must be held back before a cut.
    pub fn longest(&self) -> usize {
        self.secrets.first().map_or(0, String::len)
    }

    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), MASK);
        }
        Cow::Owned(out)
    }

    /// Mask bytes that may not be UTF-8 (a step's output).
    pub fn mask_bytes<'t>(&self, bytes: &'t [u8]) -> Cow<'t, [u8]> {
        if self.secrets.is_empty() {
            return Cow::Borrowed(bytes);
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => match self.mask(text) {
                Cow::Borrowed(_) => Cow::Borrowed(bytes),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            },
            Err(_) => {
                Cow::Owned(self.mask(&String::from_utf8_lossy(bytes)).into_owned().into_bytes())
            }
        }
    }
}

/// `redis://user:secret@host:6379/0` becomes `redis://user:***@host:6379/0`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_string() };
    let userinfo = &rest[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    let masked = if userinfo.contains(':') { format!("{user}:{MASK}") } else { MASK.to_string() };
    format!("{}{masked}{}", &url[..scheme_end], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_secret_longest_first() {
        let m = Masker::new(["abc".to_string(), "abcdef".to_string()]);
        assert_eq!(m.mask("x abcdef y abc"), "x *** y ***");
    }

    #[test]
    fn a_secret_of_several_lines_is_masked_line_by_line() {
        let m =
            Masker::new(["-----BEGIN KEY-----\nMIIEabcdef123\nok\n-----END KEY-----".to_string()]);
        assert_eq!(m.mask("line MIIEabcdef123"), "line ***");
        assert_eq!(m.mask("ok"), "ok", "too short to mask alone");
    }

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact_url("rediss://u:pw@h/0"), "rediss://u:***@h/0");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
    }
}
