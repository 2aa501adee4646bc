//! The process table as `/proc` shows it: who is a zombie, whose child, in which group, and
//! whose environment carries given variables. One scan, used to stop a step's processes (the
//! group and those that left it with setsid) and by `resume` to find what a crashed run left.

use std::path::PathBuf;

/// One process, as far as a step's stop needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    /// Exited, not yet reaped by its parent: it can no longer run or be signalled usefully.
    pub zombie: bool,
}

/// Every process now in the table, this one excluded.
pub fn entries() -> Vec<Entry> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| *pid != me)
        .filter_map(entry)
        .collect()
}

/// `pid (comm) S ppid pgrp ...`: the command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn entry(pid: i32) -> Option<Entry> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Entry { pid, ppid, pgrp, zombie: state == "Z" || state == "X" })
}

/// Whether the environment of `pid` holds every one of `vars` (each `NAME=value`, exactly).
/// A zombie's environment is empty, and another user's unreadable: neither matches.
pub fn has_env(pid: i32, vars: &[&str]) -> bool {
    let environ: PathBuf = ["/proc", &pid.to_string(), "environ"].iter().collect();
    std::fs::read(environ)
        .is_ok_and(|env| vars.iter().all(|var| env.split(|b| *b == 0).any(|v| v == var.as_bytes())))
}

/// Live processes (zombies left out) whose environment holds every one of `vars`.
pub fn with_env(vars: &[&str]) -> Vec<i32> {
    entries().into_iter().filter(|e| !e.zombie && has_env(e.pid, vars)).map(|e| e.pid).collect()
}

/// This process's own children, from the kernel's list per thread
/// (`/proc/self/task/*/children`): no scan of the whole table.
pub fn own_children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    let mut out = Vec::new();
    for task in tasks.filter_map(|t| t.ok()) {
        let Ok(text) = std::fs::read_to_string(task.path().join("children")) else { continue };
        out.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    out
}
