//! Where a function's arguments and results are when a probe fires.

pub mod amd64;
pub mod named;
