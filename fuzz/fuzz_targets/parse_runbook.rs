//! Any text given to the runbook parser yields a runbook or a report, never a panic, and every
//! report renders (line, column and carets under each span).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use runbook::runbook::LoadError;
use runbook::runbook::parse::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    if let Err(LoadError::Invalid(report)) = parse(Path::new("fuzz.toml"), source.to_string()) {
        let _ = report.to_string();
    }
});
