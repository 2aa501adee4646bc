//! The matching core of the `watch` step over a whole file, for bench/watch/run.sh:
//! `watch_bench FILE PATTERN...` prints the line count and the matching-line count.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!("usage: FILE PATTERN..."))?);
    let patterns: Vec<String> = args.collect();
    let (lines, matches) = runbook::steps::watch::scan_file(&path, &patterns)?;
    println!("{lines} {matches}");
    Ok(())
}
