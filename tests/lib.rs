//! Integration tests: one binary, one module per feature, each driving the real `runbook` binary
//! or, for the step kinds, the library.

mod check;
mod cli;
mod cluster;
mod crash;
mod engine;
mod fail_if;
mod full_disk;
mod fuzz;
mod history;
mod json;
mod list;
mod measure;
mod outputs;
mod readme;
mod rehearse;
mod run;
mod schema;
mod secrets;
mod ssh;
mod state_dir;
mod streams;
mod support;
mod team;
mod terminal;
mod tls;
mod values;
mod watch;
mod watch_run;

mod fleet;
mod flush;
mod flush_run;
mod hosts;
mod hosts_run;
mod process;
mod prompts;
mod report;
