//! The runbook file: its model, how it is parsed with spans, checked, and how `{{var}}`
//! placeholders are found.

pub mod diagnostic;
pub mod duration;
mod fields;
mod kinds;
pub mod model;
pub mod parse;
pub mod template;
pub mod validate;

pub use model::*;
pub use parse::{LoadError, load};
