//! Printers, generic over `io::Write` so that each has golden tests.

pub mod counts;
pub mod events;
pub mod govalue;
pub mod histogram;
pub mod time;
