//! Watch the output of a command: `bash -c CMD` in a process group of its own, stdout and stderr
//! merged into one pipe (so a line is never interleaved with half of another), read on a thread so
//! the watch stays responsive to the clock and to Ctrl-C. However the watch ends, the whole group
//! is killed and the shell reaped.

use super::{Run, WatchEnd, read_some};
use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};

pub(super) fn follow(cmd: &str, env: &[(String, String)], run: &mut Run) -> Result<WatchEnd> {
    let (mut child, output) = spawn(cmd, env)?;
    let group = Group(child.id() as i32);
    let end = pump(&output, run);
    group.kill();
    let status = child.wait();
    match end {
        Pumped::Ended(end) => Ok(end),
        Pumped::Exhausted => match run.finish_stream() {
            Some(end) => Ok(end),
            None => bail!(
                "the watched command `{cmd}` exited ({}) after {} line(s), before the watch's time \
                 was up: nothing more could be watched",
                describe(status),
                run.scanner.lines
            ),
        },
    }
}

fn spawn(cmd: &str, env: &[(String, String)]) -> Result<(Child, Receiver<Vec<u8>>)> {
    let (reader, writer) =
        std::io::pipe().context("cannot create a pipe for the watched command")?;
    let writer2 = writer.try_clone().context("cannot duplicate the pipe for stderr")?;
    let mut command = Command::new("bash");
    command.arg("-c").arg(cmd).stdin(Stdio::null()).stdout(writer).stderr(writer2).process_group(0);
    command.envs(env.iter().map(|(k, v)| (k, v)));
    let child = crate::signals::unblocked(|| command.spawn())
        .with_context(|| format!("cannot start `bash -c {cmd}`"))?;
    // The Command still holds the write ends: drop it so the pipe ends when the group does.
    drop(command);
    let (tx, rx) = mpsc::sync_channel(16);
    std::thread::spawn(move || read_into(reader, tx));
    Ok((child, rx))
}

/// Runs on its own thread: forwards output until EOF or until the watch stops listening.
fn read_into(mut reader: std::io::PipeReader, tx: mpsc::SyncSender<Vec<u8>>) {
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = read_some(&mut reader, &mut buf) {
        if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
            return;
        }
    }
}

enum Pumped {
    Ended(WatchEnd),
    /// The command's output ended (every process in the group closed it) before the watch did.
    Exhausted,
}

fn pump(output: &Receiver<Vec<u8>>, run: &mut Run) -> Pumped {
    loop {
        if let Some(end) = run.interrupted() {
            return Pumped::Ended(end);
        }
        match output.recv_timeout(run.nap()) {
            Ok(data) => {
                if let Some(end) = run.feed(&data) {
                    return Pumped::Ended(end);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Pumped::Exhausted,
        }
    }
}

/// A process group, killed whole.
struct Group(i32);

impl Group {
    fn kill(&self) {
        // The id is our child's, which leads its own group; a group already gone is fine.
        crate::process::kill_group(self.0, nix::sys::signal::Signal::SIGKILL);
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => s.to_string(),
        },
        Err(e) => format!("status unknown: {e}"),
    }
}
