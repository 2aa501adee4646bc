//! The ssh runner against real `sshd` hosts (tests/support/sshd.rs): output streamed back, stdin
//! closed, secrets off every command line on both sides, a timeout or an interrupt ending the
//! remote process group, unreachable hosts and wrong host keys refused, a link that drops.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use runbook::runner::ssh::{ConnectionLost, Masters, SshOptions, Unreachable};
use runbook::runner::{Exit, Runner, Spawn};

use crate::support::sshd::{Fleet, Mode};

fn masters(fleet: &Fleet) -> Arc<Masters> {
    Masters::new(SshOptions {
        config: Some(fleet.config.clone()),
        connect_timeout: Duration::from_secs(2),
        alive_interval: Duration::from_secs(1),
        persist: Duration::from_secs(30),
    })
    .unwrap()
}

static NEVER: AtomicBool = AtomicBool::new(false);

fn spawn<'a>(command: &'a str, env: &'a [(String, String)]) -> Spawn<'a> {
    Spawn { command, cwd: None, timeout: None, env, interrupt: &NEVER }
}

fn run(runner: &dyn Runner, spawn: &Spawn<'_>) -> (anyhow::Result<Exit>, String) {
    let mut out = Vec::new();
    let exit = runner.run(spawn, &mut |chunk| out.extend_from_slice(chunk));
    (exit, String::from_utf8_lossy(&out).into_owned())
}

/// Every process's command line on this machine: the hosts' sshd sessions run here too, so this
/// is `ps` on both sides.
fn all_command_lines() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            out.push(String::from_utf8_lossy(&bytes).replace('\0', " "));
        }
    }
    out
}

fn alive(pid: &str) -> bool {
    Path::new("/proc").join(pid.trim()).exists()
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.ends_with('\n') {
            return text;
        }
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn runs_on_each_host_with_output_and_exit_code() {
    let fleet = Fleet::start(2);
    let masters = masters(&fleet);
    for name in fleet.names() {
        let host = masters.host(&name).unwrap();
        host.connect().unwrap();
        assert_eq!(host.target(), name);
        let (exit, out) = run(&host, &spawn("echo out; echo err >&2; exit 3", &[]));
        let exit = exit.unwrap();
        assert_eq!(exit.code, Some(3), "{out}");
        assert!(out.contains("out\n") && out.contains("err\n"), "{out:?}");
    }
    masters.close_all();
}

#[test]
fn remote_stdin_is_closed_and_hostile_text_is_kept() {
    let fleet = Fleet::start(1);
    let masters = masters(&fleet);
    let host = masters.host("h1").unwrap();
    // `cat` would wait for ever on an open stdin.
    let (exit, out) = run(&host, &spawn("cat; echo 'it'\"'\"'s $HOME;' \"$(echo a  b)\"", &[]));
    assert_eq!(exit.unwrap().code, Some(0));
    assert_eq!(out, "it's $HOME; a b\n");
    let dir = fleet.dir.path().join("a dir; $(x)");
    std::fs::create_dir(&dir).unwrap();
    let s = Spawn { cwd: Some(&dir), ..spawn("pwd", &[]) };
    let (exit, out) = run(&host, &s);
    assert_eq!(exit.unwrap().code, Some(0));
    assert_eq!(out.trim_end(), dir.display().to_string());
    let missing = fleet.dir.path().join("missing");
    let s = Spawn { cwd: Some(&missing), ..spawn("echo ran", &[]) };
    let (exit, out) = run(&host, &s);
    assert_eq!(exit.unwrap().code, Some(1));
    assert!(out.contains("does not exist on this host") && !out.contains("ran"), "{out}");
}

#[test]
fn a_secret_is_absent_from_ps_on_both_sides() {
    let fleet = Fleet::start(1);
    let masters = masters(&fleet);
    let host = masters.host("h1").unwrap();
    let secret = "s3cr3t-'quoted' $(not run)\nsecond line".to_string();
    let env = vec![("RUNBOOK_SECRET_TOKEN".to_string(), secret.clone())];
    let marker = fleet.dir.path().join("started");
    let command =
        format!("echo up > {}; sleep 2; printf '%s' \"$RUNBOOK_SECRET_TOKEN\"", marker.display());
    let handle = std::thread::scope(|scope| {
        let job = scope.spawn(|| run(&host, &spawn(&command, &env)));
        wait_for_file(&marker);
        let seen: Vec<String> = all_command_lines()
            .into_iter()
            .filter(|l| l.contains("s3cr3t") || l.contains("second line"))
            .collect();
        assert!(seen.is_empty(), "the secret is on a command line: {seen:?}");
        let ssh_lines = all_command_lines().into_iter().filter(|l| l.contains("bash -c")).count();
        assert!(ssh_lines > 0, "no ssh session was seen while the step ran");
        job.join().unwrap()
    });
    let (exit, out) = handle;
    assert_eq!(exit.unwrap().code, Some(0));
    assert_eq!(out, secret, "the command did not get the secret intact");
}

/// A step that starts a background child and ignores SIGTERM: both must be gone after a timeout.
fn stubborn(pids: &Path) -> String {
    format!(
        "sleep 300 & echo $! > {p}; (trap '' TERM; exec sleep 301) & echo $! >> {p}; echo $$ >> {p}; wait",
        p = pids.display()
    )
}

fn assert_all_ended(pids: &Path) {
    let text = std::fs::read_to_string(pids).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while text.lines().any(alive) {
        assert!(Instant::now() < deadline, "remote processes outlived the step: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_timeout_ends_the_remote_process_group() {
    let fleet = Fleet::start(1);
    let masters = masters(&fleet);
    let host = masters.host("h1").unwrap();
    let pids = fleet.dir.path().join("pids");
    let command = stubborn(&pids);
    let s = Spawn { timeout: Some(Duration::from_secs(1)), ..spawn(&command, &[]) };
    let started = Instant::now();
    let (exit, _) = run(&host, &s);
    let exit = exit.unwrap();
    assert!(exit.timed_out, "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    assert_all_ended(&pids);
}

#[test]
fn an_interrupt_ends_the_remote_process_group() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let fleet = Fleet::start(1);
    let masters = masters(&fleet);
    let host = masters.host("h1").unwrap();
    let pids = fleet.dir.path().join("pids");
    let command = stubborn(&pids);
    let s = Spawn { interrupt: &STOP, ..spawn(&command, &[]) };
    let (exit, _) = std::thread::scope(|scope| {
        let job = scope.spawn(|| run(&host, &s));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::read_to_string(&pids).unwrap_or_default().lines().count() < 3 {
            assert!(Instant::now() < deadline, "the step never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        STOP.store(true, std::sync::atomic::Ordering::SeqCst);
        job.join().unwrap()
    });
    assert!(exit.unwrap().interrupted);
    assert_all_ended(&pids);
}

#[test]
fn a_host_down_is_unreachable_and_nothing_runs() {
    let mut fleet = Fleet::start(2);
    fleet.stop(1);
    let masters = masters(&fleet);
    masters.host("h1").unwrap().connect().unwrap();
    let started = Instant::now();
    let err: Unreachable = masters.host("h2").unwrap().connect().unwrap_err();
    assert_eq!(err.host, "h2");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(err.to_string().contains("a retry is safe"), "{err}");
}

#[test]
fn a_wrong_host_key_is_refused_not_accepted() {
    let fleet = Fleet::start(2);
    // Swap the two hosts' keys in known_hosts: each host now presents a key that is not its own.
    let known = fleet.dir.path().join("known_hosts");
    let text = std::fs::read_to_string(&known).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let key = |l: &str| l.split_once(' ').unwrap().1.to_string();
    let host = |l: &str| l.split_once(' ').unwrap().0.to_string();
    let swapped = format!("{} {}\n", host(lines[0]), key(lines[1]));
    std::fs::write(&known, swapped).unwrap();
    let masters = masters(&fleet);
    let err = masters.host("h1").unwrap().connect().unwrap_err();
    assert!(err.reason.contains("verification failed"), "{err}");
    // A host with no known key at all is refused as well (never accepted on first use).
    let err = masters.host("h2").unwrap().connect().unwrap_err();
    assert!(err.reason.contains("verification failed"), "{err}");
}

#[test]
fn a_link_that_drops_mid_step_is_a_lost_connection() {
    let fleet = Fleet::start(1);
    if fleet.mode == Mode::Loopback {
        eprintln!("skipped: a link can only be dropped between network namespaces");
        return;
    }
    let masters = masters(&fleet);
    let host = masters.host("h1").unwrap();
    host.connect().unwrap();
    let marker = fleet.dir.path().join("started");
    let command = format!("echo begun; echo up > {}; sleep 30; echo never", marker.display());
    let started = Instant::now();
    let result = std::thread::scope(|scope| {
        let job = scope.spawn(|| run(&host, &spawn(&command, &[])));
        wait_for_file(&marker);
        // Let "begun" reach this side before the link goes.
        std::thread::sleep(Duration::from_millis(300));
        fleet.link_down(0);
        job.join().unwrap()
    });
    fleet.link_up(0);
    let (exit, out) = result;
    let err = exit.unwrap_err();
    assert!(err.downcast_ref::<ConnectionLost>().is_some(), "{err:#}; output {out}");
    assert!(out.contains("begun") && !out.contains("never"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
}
