//! The `measure` step through the library.
