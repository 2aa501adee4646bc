//! The runbook file: its model, how it is parsed with spans, checked, and how `{{var}}`
//! placeholders are found.

pub mod condition;
pub mod diagnostic;
pub mod duration;
mod fields;
mod hosts;
mod kinds;
mod measure_check;
pub mod model;
pub mod outputs;
pub mod parse;
mod redis_keys;
pub mod schema;
pub mod shell;
pub mod template;
pub mod validate;

pub use model::*;
pub use parse::{LoadError, load};
