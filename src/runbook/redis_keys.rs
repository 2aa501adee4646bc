//! The `redis` key of flush and measure steps and of `[lock]`/`[store]`, with the TLS files
//! beside it (`tls_ca`, `tls_cert`, `tls_key`).

use super::diagnostic::Diagnostic;
use super::fields::Fields;
use super::model::Template;

/// `redis`, with the `tls_ca`, `tls_cert` and `tls_key` beside it folded into the URL as query
/// parameters (`crate::tls` takes them off again when it connects), so the one rendered URL says
/// everything about reaching the server, in the plan, the journal and a later rollback.
pub fn redis_with_tls(f: &mut Fields<'_, '_>, d: &mut Vec<Diagnostic>) -> Option<Template> {
    let mut redis = f.template("redis", d);
    for key in crate::tls::KEYS {
        let Some(path) = f.template(key, d) else { continue };
        let bad = |msg: String, expected: &str| {
            Diagnostic::new(path.span.clone(), msg).expected(expected)
        };
        if !path.text.starts_with('/') && !path.text.starts_with("{{") {
            let msg = format!("{key} {:?} is a relative path", path.text);
            d.push(bad(msg, "an absolute path, or one under \"{{runbook_dir}}/\"").hint(
                "a rollback may run from another folder, so the file is named the same way everywhere",
            ));
            continue;
        }
        match redis.as_mut() {
            Some(url) if url.text.starts_with("redis://") => {
                let msg = format!(
                    "{key} is set but the URL is plain text ({})",
                    crate::secret::redact(&url.text)
                );
                d.push(bad(msg, "a rediss:// URL: TLS settings are never dropped silently"));
            }
            Some(url) => {
                url.text.push(if url.text.contains('?') { '&' } else { '?' });
                url.text.push_str(&format!("{key}={}", crate::tls::encode(&path.text)));
            }
            None => d.push(bad(
                format!("{key} is set without a `redis` URL"),
                "redis = \"rediss://host:6380/0\"",
            )),
        }
    }
    redis
}
