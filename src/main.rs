//! The `runbook` binary: everything lives in the library; this only passes the arguments in and
//! exits with the code the library chose.

fn main() {
    std::process::exit(runbook::run(std::env::args_os()));
}
