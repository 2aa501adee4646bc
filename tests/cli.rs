//! The command line itself: completions that load in the shells, a man page that renders,
//! help that describes every option, ends with examples and lists the exit codes.

use crate::support::Runbook;

#[test]
fn bash_completions_load_and_complete_runbook() {
    let t = Runbook::new();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_runbook")).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = std::process::Command::new("bash")
        .args(["-c", "source <(runbook completions bash); complete -p runbook"])
        .env("PATH", path)
        .current_dir(t.path())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("-F _runbook runbook"), "{stdout}");
}

#[test]
fn every_shell_gets_a_completion_script_naming_the_commands() {
    let t = Runbook::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = t.run(&["completions", shell]).success();
        for word in ["history", "rollback", "since", "json"] {
            assert!(out.stdout.contains(word), "{shell} lacks {word}");
        }
    }
    let out = t.run(&["completions", "tcsh"]).code(64);
    assert!(out.stderr.contains("possible values: bash, elvish, fish, powershell, zsh"), "{out:?}");
}

#[test]
fn the_man_page_renders_with_man() {
    let t = Runbook::new();
    let page = t.run(&["man"]).success().stdout;
    t.file("runbook.1", &page);
    let out = std::process::Command::new("man")
        .args(["--warnings", "-l", "runbook.1"])
        .current_dir(t.path())
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man (install man-db; scripts/test.sh does)");
    let text = String::from_utf8_lossy(&out.stdout);
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(warnings.trim().is_empty(), "man warned: {warnings}");
    for expected in [
        "runbook history",
        "--since <DURATION>",
        "130  interrupted by Ctrl-C or SIGTERM",
        "runbook check --json runbooks/*.toml",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
}

#[test]
fn the_main_help_lists_the_exit_codes() {
    let out = Runbook::new().run(&["--help"]).success();
    for line in ["  0    success", "  3    a step failed", "  5    refused by policy", "  130  "] {
        assert!(out.stdout.contains(line), "{line:?} missing from\n{}", out.stdout);
    }
}

#[test]
fn every_command_help_describes_its_arguments_and_ends_with_examples() {
    let t = Runbook::new();
    let commands = [
        "check",
        "plan",
        "run",
        "rehearse",
        "resume",
        "history",
        "show",
        "logs",
        "report",
        "rollback",
        "list",
        "completions",
        "man",
        "schema",
    ];
    for command in commands {
        let help = t.run(&[command, "--help"]).success().stdout;
        let (body, examples) = help.split_once("\nExamples:\n").expect("an Examples section");
        let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!((2..=3).contains(&lines.len()), "{command}: {examples}");
        assert!(lines.iter().all(|l| l.contains("runbook ")), "{command}: {examples}");
        // Every argument line in Arguments/Options carries text after its name.
        for line in body.lines().filter(|l| l.starts_with("  ")) {
            let described =
                line.trim_start().split_once("  ").is_some_and(|(_, d)| !d.trim().is_empty());
            assert!(described, "{command}: undescribed: {line:?}");
        }
    }
}
