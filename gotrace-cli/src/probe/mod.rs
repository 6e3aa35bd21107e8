//! Parsers for what the user types: probe patterns, trace probe specs,
//! format strings and filters. Pure functions over strings, no I/O.

pub mod filter;
pub mod format;
pub mod pattern;
pub mod spec;
