//! Before its first deletion, a flush makes sure the connection may run every command the flush
//! and its restore need: a user allowed UNLINK but not RESTORE would delete keys that can never
//! come back.
//!
//! How, and why it is sound:
//! - `ACL DRYRUN` (Redis 7 and later) asks the server whether the connection's own user
//!   (`ACL WHOAMI`) may run each command, with a real key of the pattern as argument, so key
//!   patterns (`~page:*`) count as well as commands. It runs nothing.
//! - Where that cannot be asked (Redis 6 has no DRYRUN, Redis 5 no ACL, and DRYRUN is an admin
//!   command a restricted user may not run), the commands that can be tried without effect are
//!   tried on that key: DUMP, PTTL and EXISTS only read; RESTORE without REPLACE onto a key that
//!   exists answers BUSYKEY when allowed (a payload error if the key went meanwhile) and NOPERM
//!   when not, and writes nothing either way. UNLINK cannot be tried without effect, and need not
//!   be: a refused UNLINK deletes nothing, so the flush stops at its first batch having deleted
//!   nothing (its backup holds a copy of keys that are all still there).
//! - SCAN and INFO have already run on this connection by then.

use redis::Value;

use super::conn::Link;
use super::error::FlushError;

/// A DUMP payload no server accepts: RESTORE with it can never write anything.
const BOGUS_PAYLOAD: &[u8] = b"\x00runbook-permission-probe";

/// A command the flush or its restore sends, with the arguments to ask about it.
struct Need {
    command: &'static str,
    args: Vec<Vec<u8>>,
    /// Who needs it, for the message.
    for_what: &'static str,
    /// Whether it can be tried on the key without changing anything.
    probe: bool,
}

fn needs(key: &[u8], backup: bool) -> Vec<Need> {
    let need = |command, args: Vec<&[u8]>, for_what, probe| Need {
        command,
        args: args.into_iter().map(<[u8]>::to_vec).collect(),
        for_what,
        probe,
    };
    let mut out = vec![need("UNLINK", vec![key], "the flush", false)];
    if backup {
        out.push(need("DUMP", vec![key], "the backup", true));
        out.push(need("PTTL", vec![key], "the backup", true));
        out.push(need("EXISTS", vec![key], "the restore", true));
        out.push(need("RESTORE", vec![key, b"0", BOGUS_PAYLOAD], "the restore", true));
    }
    out
}

/// Refuse, naming what is missing, when the connection may not run what the flush of `key`'s
/// pattern and its restore need. `deleted` is what earlier patterns deleted, for the message.
pub(super) fn check(
    link: &mut Link,
    key: &[u8],
    backup: bool,
    deleted: u64,
) -> Result<(), FlushError> {
    let needs = needs(key, backup);
    let user = whoami(link);
    let missing = match user.as_deref().map(|u| dry_run(link, u, &needs)) {
        Some(Ok(missing)) => missing,
        _ => probe(link, &needs)?,
    };
    if missing.is_empty() {
        return Ok(());
    }
    Err(FlushError::NotPermitted {
        server: link.server.clone(),
        user: user.unwrap_or_else(|| "this connection's user".to_string()),
        missing,
        deleted,
    })
}

fn whoami(link: &mut Link) -> Option<String> {
    redis::cmd("ACL").arg("WHOAMI").query(&mut link.con).ok()
}

/// What `ACL DRYRUN` says is not allowed; `Err` when DRYRUN cannot be asked.
fn dry_run(link: &mut Link, user: &str, needs: &[Need]) -> Result<Vec<String>, ()> {
    let mut missing = Vec::new();
    for need in needs {
        let reply: Value = redis::cmd("ACL")
            .arg("DRYRUN")
            .arg(user)
            .arg(need.command)
            .arg(&need.args)
            .query(&mut link.con)
            .map_err(|_| ())?;
        match reply {
            Value::Okay => {}
            Value::SimpleString(s) if s == "OK" => {}
            Value::BulkString(b) if b == b"OK" => {}
            Value::BulkString(b) => missing.push(denied(need, &String::from_utf8_lossy(&b))),
            Value::SimpleString(s) => missing.push(denied(need, &s)),
            _ => return Err(()),
        }
    }
    Ok(missing)
}

/// Try what can be tried without effect; NOPERM means missing.
fn probe(link: &mut Link, needs: &[Need]) -> Result<Vec<String>, FlushError> {
    let mut missing = Vec::new();
    for need in needs.iter().filter(|n| n.probe) {
        let reply: Result<Value, _> = redis::cmd(need.command).arg(&need.args).query(&mut link.con);
        match reply {
            Err(e) if e.code() == Some("NOPERM") => missing.push(denied(need, &e.to_string())),
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                return Err(link.ctx(need.command).classify(&e));
            }
            // BUSYKEY or a payload error for the RESTORE probe, a reply for the reads: allowed.
            _ => {}
        }
    }
    Ok(missing)
}

fn denied(need: &Need, why: &str) -> String {
    format!("{} (for {}: {})", need.command, need.for_what, why.trim())
}
