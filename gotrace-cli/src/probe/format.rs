//! bcc trace's printf subset: `%d %i %u %x %X %s %c %p`, with the length
//! modifiers `l`, `ll` and `h` accepted and ignored (every value is read as
//! a 64-bit word), and `%%`; plus Go's `%v` (a value as Go prints it: the
//! only way to print slices and interfaces). Checked before anything is
//! attached.

/// How one value is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    Signed,
    Unsigned,
    Hex {
        upper: bool,
    },
    String,
    Char,
    Pointer,
    /// `%v`: integers in decimal, strings as text, slices and interfaces
    /// decoded.
    Go,
}

/// A piece of a format: text, or a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Value(Conversion),
}

/// A parsed format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    pub pieces: Vec<Piece>,
}

/// What is wrong with a format string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("format ends in a lone '%'")]
    Trailing,
    #[error("unsupported conversion '%{0}' (use %d %u %x %s %c %p %v, optionally with l/ll/h)")]
    Unsupported(String),
}

impl Format {
    /// Number of values the format prints.
    pub fn conversions(&self) -> usize {
        self.pieces
            .iter()
            .filter(|p| matches!(p, Piece::Value(_)))
            .count()
    }

    /// The conversions in order.
    pub fn values(&self) -> impl Iterator<Item = Conversion> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Value(c) => Some(*c),
            Piece::Text(_) => None,
        })
    }
}

impl std::str::FromStr for Format {
    type Err = FormatError;

    fn from_str(text: &str) -> Result<Self, FormatError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => literal.push('\n'),
                    Some('t') => literal.push('\t'),
                    Some('"') => literal.push('"'),
                    Some('\\') => literal.push('\\'),
                    Some(other) => {
                        literal.push('\\');
                        literal.push(other);
                    }
                    None => literal.push('\\'),
                },
                '%' => {
                    let mut spec = String::new();
                    while let Some(&m) = chars.peek() {
                        if m == 'l' || m == 'h' {
                            spec.push(m);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    let Some(letter) = chars.next() else {
                        return Err(FormatError::Trailing);
                    };
                    if letter == '%' && spec.is_empty() {
                        literal.push('%');
                        continue;
                    }
                    spec.push(letter);
                    let conversion = match (spec.trim_start_matches(['l', 'h']), spec.len() <= 3) {
                        ("d" | "i", true) => Conversion::Signed,
                        ("u", true) => Conversion::Unsigned,
                        ("x", true) => Conversion::Hex { upper: false },
                        ("X", true) => Conversion::Hex { upper: true },
                        ("s", true) if spec == "s" => Conversion::String,
                        ("c", true) if spec == "c" => Conversion::Char,
                        ("p", true) if spec == "p" => Conversion::Pointer,
                        ("v", true) if spec == "v" => Conversion::Go,
                        _ => return Err(FormatError::Unsupported(spec)),
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Value(conversion));
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Format { pieces })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        let f: Format = "%d %lld %llu %lx 100%% %s %c %p %v\\n".parse().unwrap();
        assert_eq!(
            f.values().collect::<Vec<_>>(),
            [
                Conversion::Signed,
                Conversion::Signed,
                Conversion::Unsigned,
                Conversion::Hex { upper: false },
                Conversion::String,
                Conversion::Char,
                Conversion::Pointer,
                Conversion::Go
            ]
        );
        assert!(f.pieces.contains(&Piece::Text(" 100% ".into())));
        assert_eq!(f.pieces.last(), Some(&Piece::Text("\n".into())));
        assert_eq!("plain".parse::<Format>().unwrap().conversions(), 0);
    }

    #[test]
    fn rejects() {
        assert_eq!("%".parse::<Format>(), Err(FormatError::Trailing));
        assert_eq!("%ll".parse::<Format>(), Err(FormatError::Trailing));
        assert_eq!(
            "%f".parse::<Format>(),
            Err(FormatError::Unsupported("f".into()))
        );
        assert_eq!(
            "%ls".parse::<Format>(),
            Err(FormatError::Unsupported("ls".into()))
        );
        assert_eq!(
            "%lllld".parse::<Format>(),
            Err(FormatError::Unsupported("lllld".into()))
        );
        assert_eq!(
            "%lv".parse::<Format>(),
            Err(FormatError::Unsupported("lv".into()))
        );
        assert_eq!(
            "%q".parse::<Format>(),
            Err(FormatError::Unsupported("q".into()))
        );
    }
}
