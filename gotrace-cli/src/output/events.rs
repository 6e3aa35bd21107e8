//! trace's event lines, in bcc trace's layout with a GOID column:
//! `PID TID GOID COMM FUNC -`, then one line per event, and the message
//! rendered from the probe's printf-style format.

use std::io::{self, Write};

use crate::probe::format::{Conversion, Format, Piece};

/// A decoded argument of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A word; `size` bytes of it are meaningful; `signed` for `%d`.
    Int { value: u64, size: u64, signed: bool },
    /// Text; `cut` when it was longer than the kernel kept.
    Text { bytes: Vec<u8>, cut: bool },
    /// A slice or interface, already written as Go prints it (see
    /// `output::govalue`).
    Go(String),
    /// The kernel could not read it (bad pointer, paged out).
    Unreadable,
    /// Nothing was read: DWARF gives no location for it at the probe (an
    /// argument of an inlined call the compiler kept nowhere).
    Missing,
}

impl Value {
    fn unsigned(&self) -> Option<u64> {
        match self {
            Value::Int { value, size, .. } if *size < 8 => Some(value & ((1u64 << (8 * size)) - 1)),
            Value::Int { value, .. } => Some(*value),
            _ => None,
        }
    }

    fn signed(&self) -> Option<i64> {
        let Value::Int { size, signed, .. } = self else {
            return None;
        };
        if !signed {
            return self.unsigned().map(|u| u as i64);
        }
        let bits = 8 * (*size).clamp(1, 8) as u32;
        let raw = self.unsigned()?;
        // Sign-extend from the value's own width.
        Some(((raw << (64 - bits)) as i64) >> (64 - bits))
    }
}

/// Which time column, if any, starts each line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeColumn {
    None,
    /// Seconds since the first event (`-t`).
    Relative,
    /// Wall clock `HH:MM:SS` (`-T`).
    Wall,
}

/// The header line; `cpu` adds bcc's CPU column (`-C`).
pub fn write_header(w: &mut impl Write, time: TimeColumn, cpu: bool) -> io::Result<()> {
    match time {
        TimeColumn::None => {}
        TimeColumn::Relative => write!(w, "{:<14} ", "TIME")?,
        TimeColumn::Wall => write!(w, "{:<8} ", "TIME")?,
    }
    if cpu {
        write!(w, "{:<3} ", "CPU")?;
    }
    writeln!(
        w,
        "{:<7} {:<7} {:<7} {:<15} {:<16} -",
        "PID", "TID", "GOID", "COMM", "FUNC"
    )
}

/// One event line. `time` is the rendered time column, if any; `cpu` the
/// CPU column's value, if shown.
pub fn write_event(
    w: &mut impl Write,
    time: Option<&str>,
    cpu: Option<u16>,
    ids: (u32, u32, u64),
    comm: &str,
    function: &str,
    message: &str,
) -> io::Result<()> {
    if let Some(time) = time {
        write!(w, "{time} ")?;
    }
    if let Some(cpu) = cpu {
        write!(w, "{cpu:<3} ")?;
    }
    let (pid, tid, goid) = ids;
    writeln!(
        w,
        "{pid:<7} {tid:<7} {goid:<7} {comm:<15} {function:<16} {message}"
    )
}

/// Renders `format` with `values` (as many as it has conversions).
pub fn message(format: &Format, values: &[Value]) -> String {
    let mut out = String::new();
    let mut values = values.iter();
    for piece in &format.pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Value(conversion) => {
                let value = values.next().unwrap_or(&Value::Unreadable);
                out.push_str(&render(*conversion, value));
            }
        }
    }
    out
}

fn render(conversion: Conversion, value: &Value) -> String {
    match (conversion, value) {
        (_, Value::Unreadable) => "<unreadable>".to_owned(),
        (_, Value::Missing) => "?".to_owned(),
        (Conversion::String | Conversion::Go, Value::Text { bytes, cut }) => {
            let mut text = String::from_utf8_lossy(bytes).into_owned();
            if *cut {
                text.push_str("...");
            }
            text
        }
        (_, Value::Go(text)) => text.clone(),
        (Conversion::String, Value::Int { .. }) => "<not a string>".to_owned(),
        (_, Value::Text { bytes, .. }) => bytes.len().to_string(),
        (Conversion::Signed | Conversion::Go, v) => v.signed().unwrap_or_default().to_string(),
        (Conversion::Unsigned, v) => v.unsigned().unwrap_or_default().to_string(),
        (Conversion::Hex { upper: false }, v) => format!("{:x}", v.unsigned().unwrap_or_default()),
        (Conversion::Hex { upper: true }, v) => format!("{:X}", v.unsigned().unwrap_or_default()),
        (Conversion::Pointer, v) => format!("0x{:x}", v.unsigned().unwrap_or_default()),
        (Conversion::Char, v) => char::from_u32(v.unsigned().unwrap_or_default() as u32 & 0xff)
            .unwrap_or('?')
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_printf() {
        let format: Format = "%d %d %u %x %p %c %d %s|%s".parse().unwrap();
        let int = |value, size, signed| Value::Int {
            value,
            size,
            signed,
        };
        let values = [
            int(42, 8, true),
            int(0xff, 1, true),
            int(u64::MAX, 4, true),
            int(255, 8, true),
            int(0xc000010000, 8, true),
            int(65, 1, true),
            int(0xffff, 2, false),
            Value::Text {
                bytes: b"bob".to_vec(),
                cut: false,
            },
            Value::Text {
                bytes: b"long".to_vec(),
                cut: true,
            },
        ];
        assert_eq!(
            message(&format, &values),
            "42 -1 4294967295 ff 0xc000010000 A 65535 bob|long..."
        );
        let format: Format = "%d".parse().unwrap();
        assert_eq!(message(&format, &[Value::Unreadable]), "<unreadable>");
    }

    #[test]
    fn line_layout() {
        let mut out = Vec::new();
        write_header(&mut out, TimeColumn::None, false).unwrap();
        write_event(
            &mut out,
            None,
            None,
            (14390, 14390, 1),
            "functions",
            "main.add",
            "42 13",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PID     TID     GOID    COMM            FUNC             -\n\
             14390   14390   1       functions       main.add         42 13\n"
        );
        let mut out = Vec::new();
        write_header(&mut out, TimeColumn::Wall, true).unwrap();
        write_event(
            &mut out,
            Some("12:00:00"),
            Some(1),
            (7, 8, 9),
            "app",
            "main.f",
            "",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "TIME     CPU PID     TID     GOID    COMM            FUNC             -\n\
             12:00:00 1   7       8       9       app             main.f           \n"
        );
    }
}
