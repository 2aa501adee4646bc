//! The Redis side of a flush: connecting (with the checks that refuse replicas and clusters up
//! front), raw pipelining over one connection, SCAN replies, INFO fields, and the glob matcher
//! that keeps a key matching two patterns from being counted or backed up twice.

use std::time::Duration;

use redis::{Connection, RedisError, Value};

use super::error::{Context, FlushError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a single reply may take; a SCAN or UNLINK batch takes milliseconds, so this only
/// fires on a server that hangs.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// One connection and what is needed to explain its errors.
pub struct Link {
    pub con: Connection,
    pub server: String,
    /// `INFO cluster` said `cluster_enabled:1`: this is one node of a cluster (`cluster` module).
    pub cluster: bool,
    password: Option<String>,
    buf: Vec<u8>,
}

impl Link {
    /// Connect (over TLS for `rediss://`), authenticate and select the database; with
    /// `for_writing`, refuse a replica. A cluster node is not refused but marked `cluster`: its
    /// caller must work every primary, never this node alone.
    pub fn open(url: &str, for_writing: bool) -> Result<Link, FlushError> {
        let server = crate::secret::redact(&crate::tls::without_files(url)).into_owned();
        let client = crate::tls::client(url)
            .map_err(|e| FlushError::InvalidUrl { url: server.clone(), detail: e.to_string() })?;
        let password = client.get_connection_info().redis_settings().password().map(str::to_string);
        let ctx = Context {
            server: &server,
            password: password.as_deref(),
            command: "connect",
            deleted: None,
            backup_file: None,
        };
        let con =
            client.get_connection_with_timeout(CONNECT_TIMEOUT).map_err(|e| ctx.classify(&e))?;
        let _ = con.set_read_timeout(Some(IO_TIMEOUT));
        let _ = con.set_write_timeout(Some(IO_TIMEOUT));
        let mut link =
            Link { con, server, cluster: false, password, buf: Vec::with_capacity(1 << 16) };
        link.refuse_unsupported(for_writing)?;
        Ok(link)
    }

    pub fn ctx(&self, command: &'static str) -> Context<'_> {
        Context {
            server: &self.server,
            password: self.password.as_deref(),
            command,
            deleted: None,
            backup_file: None,
        }
    }

    fn refuse_unsupported(&mut self, for_writing: bool) -> Result<(), FlushError> {
        let info = self.info("cluster").map_err(|e| self.ctx("INFO").classify(&e))?;
        if info_field(&info, "cluster_enabled") == Some("1") {
            // Which nodes are primaries now is the cluster's answer, not this node's role.
            self.cluster = true;
            return Ok(());
        }
        if for_writing {
            let info = self.info("replication").map_err(|e| self.ctx("INFO").classify(&e))?;
            if info_field(&info, "role") == Some("slave") {
                return Err(FlushError::ReadOnlyReplica { server: self.server.clone() });
            }
        }
        Ok(())
    }

    pub fn info(&mut self, section: &str) -> Result<String, RedisError> {
        redis::cmd("INFO").arg(section).query(&mut self.con)
    }

    /// Start a pipeline: commands are packed into one buffer and sent with `send`.
    pub fn begin(&mut self) -> &mut Vec<u8> {
        self.buf.clear();
        &mut self.buf
    }

    pub fn send(&mut self) -> Result<(), RedisError> {
        self.con.send_packed_command(&self.buf)
    }

    /// The next reply, with a server error turned into `Err`.
    pub fn recv(&mut self) -> Result<Value, RedisError> {
        self.con.recv_response()?.extract_error()
    }

    /// The next reply, keeping a server error as a value (for RESTORE's BUSYKEY).
    pub fn recv_raw(&mut self) -> Result<Value, RedisError> {
        self.con.recv_response()
    }
}

pub fn push_scan(buf: &mut Vec<u8>, cursor: u64, pattern: &str, count: usize) {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(count)
        .write_packed_command(buf);
}

/// A SCAN reply: the next cursor (0 when done) and the keys.
pub fn parse_scan(value: Value) -> Result<(u64, Vec<Vec<u8>>), RedisError> {
    from_value(value)
}

/// A reply converted to `T`, with a type mismatch as a `RedisError`.
pub fn from_value<T: redis::FromRedisValue>(value: Value) -> Result<T, RedisError> {
    redis::from_redis_value(value).map_err(RedisError::from)
}

/// One field of an INFO reply, e.g. `keyspace_hits`.
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

/// Does `key` match the Redis glob `pattern` (`*`, `?`, `[abc]`, `[^a-z]`, `\x`)? The same
/// rules as the server's MATCH.
pub fn glob_match(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            p += 1;
            star = Some((p, k));
            continue;
        }
        if let Some(next) = match_one(pattern, p, key[k]) {
            p = next;
            k += 1;
            continue;
        }
        match star {
            Some((sp, sk)) => {
                p = sp;
                k = sk + 1;
                star = Some((sp, sk + 1));
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Match one key byte at pattern position `p`; the position after the token when it matches.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match *pattern.get(p)? {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => match_class(pattern, p + 1, c),
        other => (other == c).then_some(p + 1),
    }
}

fn match_class(pattern: &[u8], mut p: usize, c: u8) -> Option<usize> {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut hit = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            hit |= pattern[p + 1] == c;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (lo, hi) = (pattern[p].min(pattern[p + 2]), pattern[p].max(pattern[p + 2]));
            hit |= (lo..=hi).contains(&c);
            p += 3;
        } else {
            hit |= pattern[p] == c;
            p += 1;
        }
    }
    (hit != negate).then_some((p + 1).min(pattern.len()))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_follows_redis_rules() {
        assert!(glob_match(b"page:upload:*", b"page:upload:17"));
        assert!(!glob_match(b"page:upload:*", b"page:home:17"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*b*c", b"axxbyyc"));
        assert!(!glob_match(b"a*b*c", b"axxbyy"));
        assert!(glob_match(b"h?llo", b"hello"));
        assert!(glob_match(b"h[ae]llo", b"hallo"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-c]llo", b"hbllo"));
        assert!(glob_match(b"a\\*b", b"a*b"));
        assert!(!glob_match(b"a\\*b", b"axb"));
    }
}
