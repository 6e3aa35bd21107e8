//! The one tokenizer of probe specs (as bpftrace lexes attach points
//! before parsing each part): the probe point first, by Go's own symbol
//! syntax, then everything after it (filter, format, arguments) as tokens
//! that respect quotes.
//!
//! A Go symbol may contain parentheses (`net/http.(*conn).serve`), brackets
//! with anything inside (`main.Map[go.shape.struct { X int }]`), dots,
//! slashes and stars. So the probe point runs to the first blank or quote
//! outside brackets, or to a `(` that does not follow a `.` (a receiver
//! opens only after a dot): a filter is recognised only after the
//! function's name.

/// A comparison operator of a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// One token after the probe point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// A run of anything else: `goarg1`, `req.Method`, `-0x10`, `42`.
    Word(String),
    /// A quoted string, as written between the quotes (escapes kept, for
    /// the format parser to read).
    Str(String),
    Open,
    Close,
    Comma,
    Cmp(Op),
    And,
    Or,
}

impl Token {
    /// How the token reads, for messages.
    pub fn text(&self) -> String {
        match self {
            Token::Word(w) => w.clone(),
            Token::Str(s) => format!("\"{s}\""),
            Token::Open => "(".to_owned(),
            Token::Close => ")".to_owned(),
            Token::Comma => ",".to_owned(),
            Token::Cmp(op) => op.symbol().to_owned(),
            Token::And => "&&".to_owned(),
            Token::Or => "||".to_owned(),
        }
    }
}

/// What the tokenizer cannot read.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LexError {
    /// The string opened at this byte offset never closes.
    #[error("unterminated string")]
    UnterminatedString(usize),
    #[error("unexpected {0:?} (operators are == != < <= > >= && ||)")]
    Unexpected(String),
}

/// Splits `text` (trimmed) into its probe point and what follows.
pub fn split_point(text: &str) -> (&str, &str) {
    let mut brackets = 0usize;
    let mut parens = 0usize;
    let mut previous = None;
    for (i, c) in text.char_indices() {
        match c {
            '[' => brackets += 1,
            ']' => brackets = brackets.saturating_sub(1),
            '(' if brackets > 0 || previous == Some('.') => parens += 1,
            ')' if parens > 0 => parens -= 1,
            '(' | '"' if brackets == 0 && parens == 0 => return text.split_at(i),
            c if c.is_whitespace() && brackets == 0 && parens == 0 => return text.split_at(i),
            _ => {}
        }
        previous = Some(c);
    }
    (text, "")
}

/// The tokens of `text`.
pub fn tokenize(text: &str) -> Result<Vec<Token>, LexError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        // The second character of a two-character operator.
        let mut then = |second: char, token: Token| match chars.next_if(|&(_, n)| n == second) {
            Some(_) => Ok(token),
            None => Err(LexError::Unexpected(c.to_string())),
        };
        let token = match c {
            c if c.is_whitespace() => continue,
            '(' => Token::Open,
            ')' => Token::Close,
            ',' => Token::Comma,
            '=' => then('=', Token::Cmp(Op::Eq))?,
            '!' => then('=', Token::Cmp(Op::Ne))?,
            '&' => then('&', Token::And)?,
            '|' => then('|', Token::Or)?,
            '<' | '>' => {
                let equal = chars.next_if(|&(_, n)| n == '=').is_some();
                Token::Cmp(match (c, equal) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                })
            }
            '"' => {
                let mut escaped = false;
                let mut end = None;
                for (i, n) in chars.by_ref() {
                    match n {
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.ok_or(LexError::UnterminatedString(start))?;
                Token::Str(text[start + 1..end].to_owned())
            }
            _ => {
                let mut end = start + c.len_utf8();
                while let Some(&(i, n)) = chars.peek() {
                    if n.is_whitespace() || "()\",=!<>&|".contains(n) {
                        break;
                    }
                    end = i + n.len_utf8();
                    chars.next();
                }
                Token::Word(text[start..end].to_owned())
            }
        };
        tokens.push(token);
    }
    Ok(tokens)
}

/// A quoted string's value: `\"` and `\\` unescaped (for filter strings;
/// the format parser reads its own escapes).
pub fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(n @ ('"' | '\\'))) => {
                out.push(n);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_points_are_go_symbols() {
        for (spec, point) in [
            ("main.add \"%d\", goarg1", "main.add"),
            ("net/http.(*conn).serve", "net/http.(*conn).serve"),
            (
                "r:/bin/app:net/http.(*conn).serve (goarg1 > 0)",
                "r:/bin/app:net/http.(*conn).serve",
            ),
            ("main.(*List[...]).Push \"%d\"", "main.(*List[...]).Push"),
            ("main.Map[go.shape.int]", "main.Map[go.shape.int]"),
            (
                "main.F[go.shape.struct { X int }] (n == 1)",
                "main.F[go.shape.struct { X int }]",
            ),
            (
                "main.F[go.shape.func(int) string]",
                "main.F[go.shape.func(int) string]",
            ),
            ("main.main.func1\"%d\"", "main.main.func1"),
            ("type:.eq.main.T", "type:.eq.main.T"),
            ("go:fmt.Println", "go:fmt.Println"),
            ("main.f(n > 1)", "main.f"),
        ] {
            assert_eq!(split_point(spec).0, point, "{spec}");
        }
    }

    #[test]
    fn tokens_respect_quotes() {
        use Token::*;
        assert_eq!(
            tokenize(r#"(name == "a&&b" || n>=-0x10) "%s %d\"", name, req.URL"#).unwrap(),
            [
                Open,
                Word("name".into()),
                Cmp(Op::Eq),
                Str("a&&b".into()),
                Or,
                Word("n".into()),
                Cmp(Op::Ge),
                Word("-0x10".into()),
                Close,
                Str(r#"%s %d\""#.into()),
                Comma,
                Word("name".into()),
                Comma,
                Word("req.URL".into()),
            ]
        );
        assert_eq!(tokenize("a<b a<=b a>b a!=b").unwrap()[4], Cmp(Op::Le));
        assert_eq!(tokenize("a \"open"), Err(LexError::UnterminatedString(2)));
        assert!(tokenize("a = b").is_err());
        assert!(tokenize("a & b").is_err());
        assert_eq!(unescape(r#"a\"b\\c\n"#), "a\"b\\c\\n");
    }
}
