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

    /// Every known secret becomes `***`, and so does the password of any URL in the text
    /// (`redis://:pw@cache`), secret or not: a password is never shown.
    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let known = self.secrets.iter().any(|s| text.contains(s.as_str()));
        let url = memchr::memmem::find(text.as_bytes(), b"://").is_some() && text.contains('@');
        if !known && !url {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for s in self.secrets.iter().filter(|_| known) {
            out = out.replace(s.as_str(), MASK);
        }
        if url {
            out = redact_urls_in(&out).into_owned();
        }
        Cow::Owned(out)
    }

    /// Mask bytes that may not be UTF-8 (a step's output).
    pub fn mask_bytes<'t>(&self, bytes: &'t [u8]) -> Cow<'t, [u8]> {
        let url = memchr::memmem::find(bytes, b"://").is_some();
        if self.secrets.is_empty() && !url {
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

/// The password of every `scheme://user:password@host` in a text becomes `***`.
pub fn redact_urls_in(text: &str) -> Cow<'_, str> {
    static URL_PASSWORD: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = URL_PASSWORD.get_or_init(|| {
        regex::Regex::new(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+@")
            .expect("a valid regex")
    });
    re.replace_all(text, "${1}***@")
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
    fn passwords_in_urls_inside_any_text_are_masked() {
        let m = Masker::default();
        assert_eq!(
            m.mask("redis-cli -u redis://:pw1@h:1/0 ping"),
            "redis-cli -u redis://:***@h:1/0 ping"
        );
        assert_eq!(m.mask("see https://example.com/a@b"), "see https://example.com/a@b");
        assert_eq!(
            m.mask("postgres://app:s3cr3t@db/app and more"),
            "postgres://app:***@db/app and more"
        );
    }

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact_url("rediss://u:pw@h/0"), "rediss://u:***@h/0");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
    }
}
