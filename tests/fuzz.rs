//! Fuzzing in the normal test suite: no text makes the runbook parser, its checks or the
//! rendering of their diagnostics panic, and no bytes make the journal reader panic. The
//! cargo-fuzz targets in `fuzz/` check the same for longer; each crash they find is pinned down
//! here by a test named after the bug.

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::select;
use runbook::journal::reader::{parse_lines, read};
use runbook::runbook::LoadError;
use runbook::runbook::diagnostic::position;
use runbook::runbook::parse::parse;

use crate::support::Runbook;

const UPLOAD_LIMITS: &str = include_str!("../runbooks/upload-limits.toml");
const CACHE_FLUSH: &str = include_str!("../runbooks/cache-flush.toml");

/// Every key a step, a variable or an environment may have, so generated tables reach the
/// checks behind each one.
const KEYS: &[&str] = &[
    "title",
    "kind",
    "id",
    "owner",
    "expect",
    "rollback",
    "irreversible",
    "timeout",
    "retries",
    "cwd",
    "only_env",
    "verify_rollback",
    "run",
    "instructions",
    "redis",
    "pattern",
    "max_keys",
    "backup",
    "batch",
    "file",
    "command",
    "for",
    "fail_on",
    "max",
    "until",
    "wait_for_file",
    "fail_if",
    "capture",
    "http",
    "requests",
    "exit",
    "stdout",
    "note",
    "value",
    "from_env",
    "from_file",
    "prompt",
    "secret",
    "vars",
    "require_rehearsal",
    "env",
    "within",
    "name",
    "description",
];

const KINDS: &[&str] = &["apply", "backup", "check", "manual", "flush", "watch", "measure"];

/// Parse `source`; when it is rejected, every diagnostic must point into it and render.
fn check_parse(source: &str) -> Result<(), TestCaseError> {
    let report = match parse(Path::new("fuzz.toml"), source.to_string()) {
        Ok(rb) => return check_plan(&rb),
        Err(LoadError::Invalid(report)) => report,
        Err(e) => return Err(TestCaseError::fail(format!("not a runbook error: {e}"))),
    };
    prop_assert!(!report.diagnostics.is_empty(), "rejected without saying why");
    for d in &report.diagnostics {
        prop_assert!(
            source.get(d.span.clone()).is_some(),
            "span {:?} is not in the {}-byte source: {}",
            d.span,
            source.len(),
            d.message
        );
    }
    let text = report.to_string();
    let first = &report.diagnostics[0];
    let at = position(source, first.span.start);
    let arrow = format!("--> fuzz.toml:{}:{}\n", at.line, at.column);
    prop_assert!(text.starts_with("error: "), "{text}");
    prop_assert!(text.contains(&arrow), "{arrow:?} missing from\n{text}");
    Ok(())
}

/// A runbook that passed `check` must plan (as `runbook plan` does) without a panic, in every
/// environment it defines, and every step must be found by its number.
fn check_plan(rb: &runbook::runbook::Runbook) -> Result<(), TestCaseError> {
    let envs: Vec<Option<&str>> = if rb.envs.is_empty() {
        vec![None]
    } else {
        rb.envs.keys().map(|e| Some(e.as_str())).collect()
    };
    for env in envs {
        let ctx = runbook::plan::Context {
            env,
            overrides: &[],
            run_id: "fuzz".into(),
            run_dir: "/nonexistent/fuzz".into(),
            operator: "fuzz".into(),
            ask_secret: None,
            dry: true,
        };
        // Variables may refer to each other in a loop or to an unset source: an error, not a panic.
        let Ok(plan) = runbook::plan::Plan::build(rb, ctx) else { continue };
        for step in &plan.steps {
            prop_assert!(plan.step_index(&step.number.to_string()).is_ok());
            let _ = step.work.summary();
            let _ = step.expect_text();
        }
    }
    Ok(())
}

/// A TOML basic string: JSON's escapes are a subset of TOML's.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

fn nested(depth: usize, open: &str, close: &str, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

/// Short strings that reach the interesting paths: placeholders, regexes, durations, kinds.
fn interesting_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        "[a-z_]{0,8}",
        "\\{\\{ ?[a-z_ é0-9]{0,6}( ?\\}\\})?",
        "/[()\\[\\]a-z.*+?{}\\\\^$|]{0,8}/",
        "[0-9]{1,22}(ms|s|m|h|d|x|)([0-9]{1,3}(ms|s|m|h|d))?",
        "(before|error_rate|latency_p95_ms|[a-zé_]{1,6}|[0-9.]{1,4}|[-+*/()<>=! ]{1,2}){0,6}",
        select(KINDS).prop_map(str::to_string),
        Just("*".to_string()),
        Just(String::new()),
    ]
}

/// Any TOML value, nested a little.
fn toml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        interesting_text().prop_map(|s| quoted(&s)),
        any::<i64>().prop_map(|n| n.to_string()),
        select(
            &[
                "99999999999999999999999",
                "-9223372036854775808",
                "0x7fffffffffffffff",
                "0o777",
                "0b101",
                "1_000",
                "+1",
                "-0",
                "1e400",
                "-1.5",
                "nan",
                "inf",
                "true",
                "false",
                "1979-05-27T07:32:00Z",
                "07:32:00",
                "1979-05-27"
            ][..]
        )
        .prop_map(str::to_string),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((select(KEYS), inner), 0..4).prop_map(|fields| {
                let fields: Vec<String> =
                    fields.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", fields.join(", "))
            }),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(KEYS).prop_map(str::to_string),
        1 => "[a-z_]{1,10}",
        1 => "\\PC{1,6}".prop_map(|k| quoted(&k)),
    ]
}

const CLASHING_HEADERS: [&str; 6] =
    ["[lock]", "[store]", "[vars]", "[runbook]", "[step.expect]", "[[step.expect]]"];

/// A table of keys with any values: mostly a step of a known kind, else an environment or a
/// header that clashes with the runbook's own tables.
fn table() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        4 => select(KINDS).prop_map(|kind| format!("[[step]]\ntitle = \"t\"\nkind = \"{kind}\"")),
        1 => Just("[[step]]".to_string()),
        1 => "[a-z]{1,3}".prop_map(|env| format!("[env.{env}]")),
        1 => "[a-z]{1,3}".prop_map(|env| format!("[env.{env}.require_rehearsal]")),
        1 => select(&CLASHING_HEADERS[..]).prop_map(str::to_string),
    ];
    let fields = prop::collection::btree_map(key(), toml_value(), 0..8);
    (header, fields).prop_map(|(header, fields)| {
        let fields: Vec<String> = fields
            .iter()
            .filter(|(k, _)| !header.contains(&format!("\n{k} =")))
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        format!("\n{header}\n{}", fields.concat())
    })
}

/// Text to insert into a runbook.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        interesting_text(),
        toml_value(),
        (key(), toml_value()).prop_map(|(k, v)| format!("\n{k} = {v}\n")),
        table(),
        (1..400usize).prop_map(|n| nested(n, "[", "]", "1")),
        (1..400usize).prop_map(|n| format!("a = {}", nested(n, "{ b = ", " }", "1"))),
        (1..100usize).prop_map(|n| format!("\n[{}]\n", vec!["t"; n].join("."))),
        select(
            &[
                "{{",
                "}}",
                "\"",
                "'''",
                "\"\"\"",
                "\\",
                "\r\n",
                "\r",
                "\t",
                "\0",
                "\u{feff}",
                "é",
                "\u{10ffff}",
                "#",
                "=",
                "[",
                "]",
                "\n"
            ][..]
        )
        .prop_map(str::to_string),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    Delete(usize, usize),
    Replace(usize, usize, String),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), fragment()).prop_map(|(at, s)| Edit::Insert(at, s)),
        2 => (any::<usize>(), 0..40usize).prop_map(|(at, n)| Edit::Delete(at, n)),
        2 => (any::<usize>(), 0..8usize, fragment()).prop_map(|(at, n, s)| Edit::Replace(at, n, s)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// The char boundary at or before `at`, wrapped into the text.
fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &mut String, edit: &Edit) {
    match edit {
        Edit::Insert(at, s) => text.insert_str(boundary(text, *at), s),
        Edit::Delete(at, n) | Edit::Replace(at, n, _) => {
            let start = boundary(text, *at);
            let end = boundary(text, start + n).max(start);
            let with = if let Edit::Replace(_, _, s) = edit { s.as_str() } else { "" };
            text.replace_range(start..end, with);
        }
        Edit::Truncate(at) => text.truncate(boundary(text, *at)),
    }
}

fn base() -> impl Strategy<Value = &'static str> {
    select(&[UPLOAD_LIMITS, CACHE_FLUSH][..])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_parses_or_reports(source in "\\PC*") {
        check_parse(&source)?;
    }

    #[test]
    fn any_toml_looking_text_parses_or_reports(
        source in "[\\[\\]{}=\",.a-z0-9 \n_#'\\\\é]{0,200}"
    ) {
        check_parse(&source)?;
    }

    #[test]
    fn an_edited_runbook_parses_or_reports(
        base in base(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut source = base.to_string();
        for e in &edits {
            apply(&mut source, e);
        }
        check_parse(&source)?;
    }

    #[test]
    fn a_runbook_with_any_tables_added_parses_or_reports(
        base in base(),
        tables in prop::collection::vec(table(), 1..4),
    ) {
        check_parse(&format!("{base}{}", tables.concat()))?;
    }

    #[test]
    fn a_runbook_cut_at_any_byte_parses_or_reports(base in base(), at in any::<usize>()) {
        let bytes = &base.as_bytes()[..at % (base.len() + 1)];
        check_parse(&String::from_utf8_lossy(bytes))?;
    }
}

/// A real journal, written once by the real binary: four steps run, the third fails and the
/// first three are rolled back.
fn real_journal() -> &'static [u8] {
    static JOURNAL: OnceLock<Vec<u8>> = OnceLock::new();
    JOURNAL.get_or_init(|| {
        let t = Runbook::new();
        let mut rb = String::from("[runbook]\nname = \"four\"\n\n[vars]\nout = \"{{run_dir}}\"\n");
        for n in 1..=4 {
            let fail = if n == 3 { " && exit 7" } else { "" };
            rb.push_str(&format!("\n[[step]]\ntitle = \"step {n}\"\nkind = \"apply\"\n"));
            rb.push_str(&format!("run = \"echo {n} > {{{{out}}}}/{n}{fail}\"\n"));
            rb.push_str(&format!("rollback = \"rm {{{{out}}}}/{n}\"\n"));
        }
        t.file("four.toml", &rb);
        t.run(&["run", "four.toml", "--yes"]).code(3);
        let id = t.last_run_id();
        let path = t.state_dir().join("runs").join(id).join("journal.jsonl");
        std::fs::read(path).expect("the run's journal")
    })
}

/// Read `bytes` as lines and as the journal of a run folder; neither may panic.
fn read_journal(bytes: &[u8]) -> Result<(), TestCaseError> {
    let _ = parse_lines(bytes);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("journal.jsonl"), bytes).expect("write the journal");
    let _ = read(dir.path());
    Ok(())
}

#[derive(Debug, Clone)]
enum Corruption {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    DuplicateLine(usize),
    DropLine(usize),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    let junk = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..8),
        select(
            &[
                "\n",
                "}",
                "{",
                "\"",
                "null",
                "-1",
                "18446744073709551616",
                "1e999",
                "\"\\ud800\"",
                "{\"seq\":1}",
                "\"event\":\"run_finished\","
            ][..]
        )
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Corruption::Flip(at, b)),
        (any::<usize>(), junk).prop_map(|(at, b)| Corruption::Insert(at, b)),
        (any::<usize>(), 1..64usize).prop_map(|(at, n)| Corruption::Delete(at, n)),
        any::<usize>().prop_map(Corruption::DuplicateLine),
        any::<usize>().prop_map(Corruption::DropLine),
    ]
}

fn corrupt(bytes: &mut Vec<u8>, c: &Corruption) {
    let at = |i: &usize, len: usize| i % (len + 1);
    match c {
        Corruption::Flip(i, b) if !bytes.is_empty() => {
            let i = i % bytes.len();
            bytes[i] ^= b;
        }
        Corruption::Flip(..) => {}
        Corruption::Insert(i, junk) => {
            let i = at(i, bytes.len());
            bytes.splice(i..i, junk.iter().copied());
        }
        Corruption::Delete(i, n) => {
            let start = at(i, bytes.len());
            bytes.drain(start..(start + n).min(bytes.len()));
        }
        Corruption::DuplicateLine(i) | Corruption::DropLine(i) => {
            let mut lines: Vec<Vec<u8>> =
                bytes.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
            if lines.is_empty() {
                return;
            }
            let i = i % lines.len();
            if matches!(c, Corruption::DuplicateLine(_)) {
                lines.insert(i, lines[i].clone());
            } else {
                lines.remove(i);
            }
            *bytes = lines.concat();
        }
    }
}

/// How many whole events `cut` bytes of `journal` hold: lines whose text ends before the cut.
fn complete_events(journal: &[u8], cut: usize) -> usize {
    let mut end = 0;
    journal
        .split_inclusive(|b| *b == b'\n')
        .filter(|line| {
            end += line.len();
            end - 1 <= cut
        })
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_read_as_a_journal_or_fail(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        read_journal(&bytes)?;
    }

    #[test]
    fn a_corrupted_journal_reads_or_fails(
        corruptions in prop::collection::vec(corruption(), 1..6),
    ) {
        let mut bytes = real_journal().to_vec();
        for c in &corruptions {
            corrupt(&mut bytes, c);
        }
        read_journal(&bytes)?;
    }

    #[test]
    fn a_journal_cut_at_any_byte_keeps_every_complete_event(cut in any::<usize>()) {
        let journal = real_journal();
        let cut = cut % (journal.len() + 1);
        let kept = complete_events(journal, cut);
        let (records, torn) = parse_lines(&journal[..cut]);
        let (all, _) = parse_lines(journal);
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        let expected: Vec<u64> = all.iter().take(kept).map(|r| r.seq).collect();
        prop_assert_eq!(seqs, expected);
        let lines = journal[..cut].split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
        prop_assert_eq!(torn, lines > kept, "only a cut inside a line leaves a torn line");

        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("journal.jsonl"), &journal[..cut]).expect("write");
        match read(dir.path()) {
            Ok(state) => {
                prop_assert!(kept > 0);
                prop_assert_eq!(state.records.len(), kept);
                prop_assert_eq!(state.torn_line, torn);
            }
            Err(_) => prop_assert_eq!(kept, 0),
        }
    }
}
