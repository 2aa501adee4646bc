//! `runbook report RUN`: the final note.

use std::path::Path;

use anyhow::{Result, bail};

use crate::journal::Store;

pub fn run(_store: &Store, _run: &str, _format: &str, _out: Option<&Path>) -> Result<i32> {
    bail!("runbook report is being built")
}
