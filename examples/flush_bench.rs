//! Benchmark driver for bench/flush/run.sh: one `flush()` call, the report printed as JSON.
//! Stands in for `runbook run` until the engine can run a flush step.
//!
//! usage: flush_bench URL PATTERN BACKUP_FILE|- [BATCH]   ("-" = no backup)

use std::path::Path;

use runbook::steps::flush::{self, FlushSpec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, pattern, backup, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: flush_bench URL PATTERN BACKUP_FILE|- [BATCH]");
    };
    let batch = rest.first().map(|b| b.parse()).transpose()?.unwrap_or(flush::DEFAULT_BATCH);
    let spec = FlushSpec {
        url: url.clone(),
        patterns: vec![pattern.clone()],
        max_keys: None,
        backup: backup != "-",
        batch,
    };
    let report = flush::flush(&spec, Path::new(backup), &mut |_| {})?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
