//! Parsers for what the user types: probe patterns (and, later, probe specs,
//! format strings and filters). Pure functions over strings, no I/O.

pub mod pattern;
