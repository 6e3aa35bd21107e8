//! Printers, generic over `io::Write` so that each has golden tests.

pub mod counts;
pub mod events;
pub mod govalue;
pub mod histogram;
pub mod time;

/// A row's name as tables print it: marked with the calls it had when the
/// overhead budget took it out, if it did.
pub fn row_label(name: &str, detached_after: Option<u64>) -> String {
    match detached_after {
        Some(n) => format!("{name} [detached after {n} calls]"),
        None => name.to_owned(),
    }
}
