//! How every Redis connection of runbook is opened (flush, restore, measure, `[lock]`,
//! `[store]`): plain text for `redis://`, TLS for `rediss://`.
//!
//! The TLS files travel on the URL as query parameters (`tls_ca`, `tls_cert`, `tls_key`): the
//! parser folds the `tls_*` keys of a step or table into its `redis` URL, so the one string the
//! plan renders, the journal records and a rollback of a past run reads also says how to reach
//! the server. They are taken off again here, before the URL reaches the redis crate.
//!
//! A `rediss://` server's certificate is verified, against `tls_ca` when given and the public web
//! roots otherwise; one that does not verify fails the connection. Nothing ever falls back to
//! plain text: a `tls_*` key on a `redis://` URL is refused rather than ignored.

use std::path::{Path, PathBuf};

use redis::{ClientTlsConfig, TlsCertificates};

/// The query parameters that carry the TLS files, as the runbook keys are named.
pub const KEYS: [&str; 3] = ["tls_ca", "tls_cert", "tls_key"];

/// The TLS files named on a URL.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// Why a client could not be made; the text names the file or key at fault.
#[derive(thiserror::Error, Debug)]
pub enum ClientError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

/// A client for `url`, with the TLS files on it loaded. Does not connect yet.
pub fn client(url: &str) -> Result<redis::Client, ClientError> {
    let (url, files) = split(url);
    if files.is_empty() {
        return Ok(redis::Client::open(url.as_str())?);
    }
    if !url.starts_with("rediss://") {
        return Err(ClientError::Config(
            "tls_ca, tls_cert and tls_key need a rediss:// URL (TLS); this one is plain text, and a TLS setting is never dropped silently".into(),
        ));
    }
    let client_tls = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read(cert, "tls_cert")?,
            client_key: read(key, "tls_key")?,
        }),
        (None, None) => None,
        _ => {
            return Err(ClientError::Config(
                "tls_cert and tls_key go together: a client certificate needs its key".into(),
            ));
        }
    };
    let root_cert = files.ca.as_deref().map(|ca| read(ca, "tls_ca")).transpose()?;
    Ok(redis::Client::build_with_tls(url.as_str(), TlsCertificates { client_tls, root_cert })?)
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| ClientError::Config(format!("cannot read {key} file {}: {e}", path.display())))
}

/// Does this error say the server's certificate (or ours) was not accepted?
pub fn is_certificate_error(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("certificate") || d.contains("unknownissuer") || d.contains("handshake")
}

/// `url` with the TLS files added as query parameters (before any `#fragment`).
pub fn with_files(url: &str, files: &TlsFiles) -> String {
    let (base, fragment) = url.split_at(url.find('#').unwrap_or(url.len()));
    let mut out = base.to_string();
    let pairs = [(KEYS[0], &files.ca), (KEYS[1], &files.cert), (KEYS[2], &files.key)];
    for (key, path) in pairs {
        let Some(path) = path else { continue };
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str(&format!("{key}={}", encode(&path.display().to_string())));
    }
    out + fragment
}

/// The URL without its TLS parameters, and the files they named.
pub fn split(url: &str) -> (String, TlsFiles) {
    let mut files = TlsFiles::default();
    let (base, fragment) = url.split_at(url.find('#').unwrap_or(url.len()));
    let Some((head, query)) = base.split_once('?') else { return (url.to_string(), files) };
    let mut kept = Vec::new();
    for param in query.split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let path = Some(PathBuf::from(decode(value)));
        match key {
            "tls_ca" => files.ca = path,
            "tls_cert" => files.cert = path,
            "tls_key" => files.key = path,
            _ => kept.push(param),
        }
    }
    let query = if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) };
    (format!("{head}{query}{fragment}"), files)
}

/// The URL as it names its server, without the TLS parameters (for messages and node names).
pub fn without_files(url: &str) -> String {
    split(url).0
}

/// Only what would end or split a query value: `%`, `&`, `#`. Template placeholders
/// (`{{ name }}`) never hold these, so a not-yet-rendered value survives too.
pub fn encode(value: &str) -> String {
    value.replace('%', "%25").replace('&', "%26").replace('#', "%23")
}

fn decode(value: &str) -> String {
    value.replace("%23", "#").replace("%26", "&").replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_survive_the_url() {
        let files = TlsFiles {
            ca: Some("/etc/a&b #c%d/ca.pem".into()),
            cert: None,
            key: Some("k.pem".into()),
        };
        let url = with_files("rediss://:pw@h:6380/0?protocol=resp3#insecure", &files);
        assert_eq!(
            url,
            "rediss://:pw@h:6380/0?protocol=resp3&tls_ca=/etc/a%26b %23c%25d/ca.pem&tls_key=k.pem#insecure"
        );
        let (plain, back) = split(&url);
        assert_eq!(plain, "rediss://:pw@h:6380/0?protocol=resp3#insecure");
        assert_eq!(back, files);
        assert_eq!(split("redis://h/0").0, "redis://h/0");
    }

    #[test]
    fn tls_files_on_a_plain_url_are_refused() {
        let url = with_files(
            "redis://h:6379/0",
            &TlsFiles { ca: Some("/ca".into()), ..Default::default() },
        );
        let err = client(&url).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("need a rediss:// URL"), "{err}");
    }
}
