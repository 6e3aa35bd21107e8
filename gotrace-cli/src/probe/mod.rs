//! Parsers for what the user types: probe patterns, trace probe specs,
//! format strings and filters. Pure functions over strings, no I/O.

pub mod arg;
pub mod filter;
pub mod format;
pub mod lexer;
pub mod pattern;
pub mod spec;
