//! Secrets: how recorded text refers to them, the one place those references are filled in, and
//! the one masker every text leaving the process goes through.
//!
//! - What the program records and replays (the journal's commands, URLs, patterns, paths) holds a
//!   secret only as a reference, `${RUNBOOK_SECRET_NAME}`. [`expand`] fills references in from
//!   the step environment at the moment of use, so a `rollback RUN` that reads the secret again
//!   from its source replays exactly what ran.
//! - What the program prints or stores from elsewhere (step output, error and check texts, watch
//!   lines) goes through [`Masker::mask`]: every known secret value becomes `***`, and so does
//!   every password in a URL ([`redact`]), secret or not.

use std::borrow::Cow;
use std::ops::Range;

use anyhow::{Result, bail};

pub const MASK: &str = "***";

/// The shortest secret value accepted (and the shortest line of a multi-line secret masked on
/// its own). A shorter value is too likely to occur in ordinary output: masking it there garbles
/// the output and, by where the `***` lands, shows what the secret is (a secret `e` turns
/// `echo hello` into `***cho h***llo`).
pub const MIN_SECRET: usize = 6;

/// Why a short secret is refused, for messages.
pub const SHORT_REASON: &str = "a shorter value is too likely to appear in ordinary output, where masking it would garble the output and show what the secret is (`e` would turn `echo hello` into `***cho h***llo`)";

/// How every reference starts.
const REFERENCE_START: &str = "${RUNBOOK_SECRET_";

/// Query parameters that carry a password (`unix:///run/redis.sock?pass=...`).
const PASSWORD_PARAMS: &[&str] = &["password", "pass", "passwd", "pwd"];

/// The environment variable that carries the secret variable `var` to commands.
pub fn env_name(var: &str) -> String {
    format!("RUNBOOK_SECRET_{}", var.to_ascii_uppercase())
}

/// How recorded text refers to the secret variable `var`: `${RUNBOOK_SECRET_VAR}`.
pub fn reference(var: &str) -> String {
    format!("${{{}}}", env_name(var))
}

/// Whether `text` holds something that reads as a secret reference.
pub fn has_reference(text: &str) -> bool {
    text.contains(REFERENCE_START)
}

/// Whether a value is too short to be masked safely (see [`MIN_SECRET`]). Empty is not: there is
/// nothing to hide.
pub fn too_short(value: &str) -> bool {
    (1..MIN_SECRET).contains(&value.chars().count())
}

/// `text` with every `${RUNBOOK_SECRET_NAME}` replaced by that variable's value in `env` (the step
/// environment). This is the one place a recorded value gets its secrets back, right before use.
/// A reference to a secret `env` does not hold is an error: using the text with a hole in it (a
/// Redis URL without its password, a pattern missing a part) would do something else.
pub fn expand(text: &str, env: &[(String, String)]) -> Result<String> {
    if !has_reference(text) {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(REFERENCE_START) {
        out.push_str(&rest[..at]);
        let Some((name, len)) = parse_reference(&rest[at..]) else {
            out.push_str(REFERENCE_START);
            rest = &rest[at + REFERENCE_START.len()..];
            continue;
        };
        match env.iter().find(|(k, _)| k == name) {
            Some((_, value)) => out.push_str(value),
            None => bail!(
                "the recorded text refers to ${{{name}}}, a secret this run was not given; expected one of the run's secrets ({}); nothing was done with it: set {name} in the environment (or make the runbook's source for it readable) and retry",
                known_secrets(env)
            ),
        }
        rest = &rest[at + len..];
    }
    out.push_str(rest);
    Ok(out)
}

fn known_secrets(env: &[(String, String)]) -> String {
    let names: Vec<&str> =
        env.iter().map(|(k, _)| k.as_str()).filter(|k| k.starts_with("RUNBOOK_SECRET_")).collect();
    if names.is_empty() { "it has none".to_string() } else { names.join(", ") }
}

/// A reference at the start of `text`: the variable's name and the reference's length.
fn parse_reference(text: &str) -> Option<(&str, usize)> {
    let body = text.strip_prefix("${")?;
    let close = body.find('}')?;
    let name = &body[..close];
    let suffix = name.strip_prefix("RUNBOOK_SECRET_")?;
    let valid = !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    valid.then_some((name, close + 3))
}

/// Whether `text` is made only of secret references (a URL password written as `{{pw}}`).
fn only_references(mut text: &str) -> bool {
    if text.is_empty() {
        return false;
    }
    while !text.is_empty() {
        match parse_reference(text) {
            Some((_, len)) => text = &text[len..],
            None => return false,
        }
    }
    true
}

#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<String>,
}

impl Masker {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Masker {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Output is masked a line at a time, so a secret of several lines (a PEM key) is also
        // masked line by line, and a URL's password also on its own (as typed and decoded);
        // parts too short to be telling are left alone.
        let lines = secrets
            .iter()
            .filter(|s| s.contains('\n'))
            .flat_map(|s| s.lines().map(|l| l.trim_end_matches('\r').to_string()))
            .filter(|l| l.trim().len() >= MIN_SECRET);
        let passwords = secrets.iter().flat_map(|s| url_passwords(s)).flat_map(|p| {
            let decoded = percent_encoding::percent_decode_str(&p).decode_utf8_lossy().into_owned();
            [p, decoded]
        });
        let parts: Vec<String> =
            lines.chain(passwords.filter(|p| p.chars().count() >= MIN_SECRET)).collect();
        secrets.extend(parts);
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

    /// Every known secret becomes `***`, and so does every password in a URL of the text
    /// (`redis://:pw@cache`, `?pass=pw`), secret or not: a password is never shown.
    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let known = self.secrets.iter().any(|s| text.contains(s.as_str()));
        if !known {
            return redact(text);
        }
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), MASK);
        }
        Cow::Owned(redact(&out).into_owned())
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

/// Every password of every URL in `text` replaced by `***`: the userinfo password
/// (`redis://user:***@host`; for Redis URLs a lone user part too, which some clients read as the
/// password) and password query parameters (`?password=***`, `?pass=***`). A password written
/// unencoded with `/`, `#`, `?` or `@` in it is found whole: the URL parser is asked which `@`
/// ends the userinfo. A secret reference (`${RUNBOOK_SECRET_PW}`) is not a password and stays.
/// The one URL redactor of the program; it works on a single URL and on any text.
pub fn redact(text: &str) -> Cow<'_, str> {
    let hidden = hidden_ranges(text);
    if hidden.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in hidden {
        out.push_str(&text[at..r.start]);
        out.push_str(MASK);
        at = r.end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// An error text from a library that was handed `url`: the URL and its password, as written and
/// decoded and whatever their length, hidden, and any other URL redacted. For error messages
/// only, which are short and rare: a password of one letter garbles them, but is not shown.
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact(url));
    for p in url_passwords(url) {
        let decoded = percent_encoding::percent_decode_str(&p).decode_utf8_lossy().into_owned();
        for p in [p, decoded].iter().filter(|p| !p.is_empty()) {
            out = out.replace(p.as_str(), MASK);
        }
    }
    redact(&out).into_owned()
}

/// Whether `value` holds a URL with a password: such a value is a secret, declared or not.
pub fn holds_url_password(value: &str) -> bool {
    !url_passwords(value).is_empty()
}

/// The passwords of the URLs in `value`, as written. A value that is one URL is also read whole,
/// so a password holding a space is found too.
pub fn url_passwords(value: &str) -> Vec<String> {
    let mut ranges = hidden_ranges(value);
    let trimmed = value.trim();
    let one_url = starts_with_scheme(trimmed) && trimmed.matches("://").count() == 1;
    if let Some(start) = value.find(trimmed).filter(|_| one_url) {
        ranges.extend(password_ranges(value, start..start + trimmed.len()));
    }
    ranges.into_iter().map(|r| value[r].to_string()).collect()
}

fn starts_with_scheme(text: &str) -> bool {
    text.find("://").is_some_and(|i| {
        i > 0
            && text.as_bytes()[0].is_ascii_alphabetic()
            && text.as_bytes()[..i].iter().all(|&b| is_scheme_byte(b))
    })
}

/// The byte ranges of `text` holding URL passwords, in order and not overlapping.
fn hidden_ranges(text: &str) -> Vec<Range<usize>> {
    url_tokens(text).into_iter().flat_map(|tok| password_ranges(text, tok)).collect()
}

fn is_scheme_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')
}

/// Where a URL written in running text ends.
fn ends_token(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'`' | b'<' | b'>')
}

/// Each `scheme://...` in `text`, up to the next blank or quote.
fn url_tokens(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(sep) = memchr::memmem::find(&bytes[from..], b"://").map(|i| i + from) {
        let mut start = sep;
        while start > from && is_scheme_byte(bytes[start - 1]) {
            start -= 1;
        }
        while start < sep && !bytes[start].is_ascii_alphabetic() {
            start += 1;
        }
        let end = bytes[sep + 3..]
            .iter()
            .position(|&b| ends_token(b))
            .map_or(bytes.len(), |p| p + sep + 3);
        if start < sep {
            out.push(start..end);
        }
        from = end.max(sep + 3);
    }
    out
}

/// Redis URLs: the path is a database number, so an `@` after it can only be a password's.
fn is_redis(scheme: &str) -> bool {
    matches!(scheme, "redis" | "rediss" | "redis+unix" | "unix" | "valkey" | "valkeys")
}

/// The password ranges of the URL at `tok` in `text`.
fn password_ranges(text: &str, tok: Range<usize>) -> Vec<Range<usize>> {
    let url = &text[tok.clone()];
    let Some(sep) = url.find("://") else { return Vec::new() };
    let scheme = url[..sep].to_ascii_lowercase();
    let base = tok.start + sep + 3;
    let rest = &url[sep + 3..];
    let mut out = Vec::new();
    let mut query_from = 0;
    if let Some(at) = userinfo_end(&scheme, rest) {
        let userinfo = &rest[..at];
        let hide = match userinfo.find(':') {
            Some(colon) => Some(colon + 1..at),
            None if is_redis(&scheme) => Some(0..at),
            None => None,
        };
        out.extend(hide.filter(|r| is_password(&rest[r.clone()])));
        query_from = at + 1;
    }
    out.extend(query_passwords(rest, query_from));
    out.into_iter().map(|r| base + r.start..base + r.end).collect()
}

/// Where the userinfo of `rest` (the URL after `://`) ends: the `@` that leaves a URL with a
/// host after it. Normally the last `@` before the first `/`, `?` or `#`; but a password may hold
/// those unencoded (`redis://:p/ss#w?rd@host/0`), so a later `@` counts when the parser accepts
/// what follows it as a host: always for Redis URLs, whose path never holds an `@`, and for
/// others when the authority holds a colon (`user:pass` cut short) or no host. A URL that has a
/// port and an `@` in its path may so be shown with more hidden than needed, never less.
fn userinfo_end(scheme: &str, rest: &str) -> Option<usize> {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let in_authority = rest[..authority_end].rfind('@');
    let later = || {
        rest[authority_end..]
            .match_indices('@')
            .map(|(i, _)| i + authority_end)
            .rev()
            .find(|&at| has_host(scheme, &rest[at + 1..]))
    };
    match in_authority {
        Some(at) if !is_redis(scheme) && has_host(scheme, &rest[at + 1..]) => Some(at),
        Some(at) => later().or(Some(at)),
        None if is_redis(scheme) || rest[..authority_end].contains(':') => later(),
        None => None,
    }
}

fn has_host(scheme: &str, after_userinfo: &str) -> bool {
    url::Url::parse(&format!("{scheme}://{after_userinfo}"))
        .is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()))
}

/// The values of password parameters in the query of `rest`, looked for from `from`. A value
/// runs to the next `&`: a `#` in it is taken as part of the password, not as a fragment.
fn query_passwords(rest: &str, from: usize) -> Vec<Range<usize>> {
    let Some(q) = rest[from..].find('?') else { return Vec::new() };
    let mut pos = from + q + 1;
    let mut out = Vec::new();
    for param in rest[pos..].split('&') {
        if let Some((key, value)) = param.split_once('=') {
            let start = pos + key.len() + 1;
            if PASSWORD_PARAMS.contains(&key.to_ascii_lowercase().as_str()) && is_password(value) {
                out.push(start..start + value.len());
            }
        }
        pos += param.len() + 1;
    }
    out
}

/// Text in a password's place that must be hidden: not empty, not already `***`, and not only
/// secret references (which hold no value).
fn is_password(text: &str) -> bool {
    !text.is_empty() && text != MASK && !only_references(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_secret_longest_first() {
        let m = Masker::new(["abcdef".to_string(), "abcdefghij".to_string()]);
        assert_eq!(m.mask("x abcdefghij y abcdef"), "x *** y ***");
    }

    #[test]
    fn a_secret_of_several_lines_is_masked_line_by_line() {
        let m =
            Masker::new(["-----BEGIN KEY-----\nMIIEabcdef123\nok\n-----END KEY-----".to_string()]);
        assert_eq!(m.mask("line MIIEabcdef123"), "line ***");
        assert_eq!(m.mask("ok"), "ok", "too short to mask alone");
    }

    #[test]
    fn the_password_of_a_secret_url_is_masked_on_its_own_too() {
        let m = Masker::new(["redis://:p%2Fss-word@h:1/0".to_string()]);
        assert_eq!(m.mask("pw is p/ss-word or p%2Fss-word"), "pw is *** or ***");
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
    fn redacts_userinfo_passwords() {
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("rediss://u:pw@h/0"), "rediss://u:***@h/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact("rediss://secret@host/0"), "rediss://***@host/0");
        assert_eq!(redact("https://git@example.com/x"), "https://git@example.com/x");
        assert_eq!(
            redact("redis://u:p%40ss@host/0?password=x&db=1"),
            "redis://u:***@host/0?password=***&db=1"
        );
    }

    #[test]
    fn passwords_with_slash_hash_question_mark_and_at_are_found_whole() {
        for pw in ["p/ss", "p#ss", "p?ss", "p@ss", "a/b#c?d@e", "12/x", "@/#?"] {
            for url in [format!("redis://:{pw}@h:6379/0"), format!("https://u:{pw}@h/x")] {
                let out = redact(&url).into_owned();
                assert!(!out.contains(pw), "{url} -> {out}");
                assert!(out.contains(":***@h"), "{url} -> {out}");
            }
        }
        assert_eq!(redact("redis://:p/s@s@h/0 and more"), "redis://:***@h/0 and more");
    }

    #[test]
    fn query_passwords_are_masked() {
        assert_eq!(
            redact("unix:///run/r.sock?db=1&pass=s3cret"),
            "unix:///run/r.sock?db=1&pass=***"
        );
        assert_eq!(
            redact("redis+unix:///run/r.sock?PASSWORD=a#b&db=2"),
            "redis+unix:///run/r.sock?PASSWORD=***&db=2"
        );
        assert_eq!(redact("https://h/?q=pass=1"), "https://h/?q=pass=1");
    }

    #[test]
    fn references_are_not_passwords() {
        let url = "redis://:${RUNBOOK_SECRET_PW}@h/0?pass=${RUNBOOK_SECRET_PW}";
        assert_eq!(redact(url), url);
        assert!(!holds_url_password(url));
        assert!(holds_url_password("redis://:pw@h/0"));
        assert!(holds_url_password("redis://:p w@h/0"));
        assert!(!holds_url_password("redis://h/0 and https://example.com/a@b"));
    }

    #[test]
    fn expand_fills_in_references_and_refuses_unknown_ones() {
        let env = vec![
            ("RUNBOOK_RUN_ID".to_string(), "r1".to_string()),
            ("RUNBOOK_SECRET_PW".to_string(), "p/ss$1".to_string()),
        ];
        assert_eq!(
            expand("redis://:${RUNBOOK_SECRET_PW}@h/0", &env).unwrap(),
            "redis://:p/ss$1@h/0"
        );
        assert_eq!(
            expand("a ${HOME} ${RUNBOOK_SECRET_} $", &env).unwrap(),
            "a ${HOME} ${RUNBOOK_SECRET_} $"
        );
        let err = expand("x${RUNBOOK_SECRET_OTHER}", &env).unwrap_err().to_string();
        assert!(
            err.contains("${RUNBOOK_SECRET_OTHER}") && err.contains("RUNBOOK_SECRET_PW"),
            "{err}"
        );
        assert!(!err.contains("p/ss"), "{err}");
    }

    #[test]
    fn short_secrets_are_told() {
        assert!(too_short("e"));
        assert!(too_short("abcde"));
        assert!(!too_short("abcdef"));
        assert!(!too_short(""));
    }
}
