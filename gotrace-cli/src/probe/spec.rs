//! bcc trace's probe syntax:
//! `[p:|r:][PATH:]FUNC [(FILTER)] ["FORMAT"[, ARG, ...]]`.
//!
//! Split as bpftrace splits attach points: the probe point by Go's symbol
//! syntax, then the rest as tokens (both by [`super::lexer`]): a filter in
//! balanced parentheses, a quoted format, then comma-separated argument
//! expressions. Each part has its own parser ([`super::format`],
//! [`super::filter`], [`ArgExpr`]).

pub use super::arg::ArgExpr;
use super::{
    arg::ArgError,
    filter::{self, Filter},
    format::{self, Format},
    lexer::{self, Token},
};

/// Entry (`p:`, the default) or return (`r:`) probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Entry,
    Return,
}

/// A parsed probe.
#[derive(Debug)]
pub struct Spec {
    pub kind: Kind,
    /// `[PATH:]FUNC` as typed.
    pub target: String,
    pub filter: Option<Filter>,
    pub format: Option<Format>,
    pub args: Vec<ArgExpr>,
}

/// What is wrong with a probe as typed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("empty probe: write [p:|r:][PATH:]FUNC [(FILTER)] [\"FORMAT\"[, ARG...]]")]
    Empty,
    #[error("probe {0:?}: unbalanced parentheses in the filter")]
    UnbalancedFilter(String),
    #[error("probe {0:?}: unterminated string")]
    UnterminatedString(String),
    #[error("probe {0:?}: expected a \"FORMAT\" after the filter, found {1:?}")]
    ExpectedFormat(String, String),
    #[error("{0}")]
    BadArgument(ArgError),
    // The reasons are part of the message, not error sources: a source
    // would print twice in the one-line `{:#}` report.
    #[error("probe {probe:?}: {reason}")]
    Format {
        probe: String,
        reason: format::FormatError,
    },
    #[error("probe {probe:?}: {reason}")]
    Filter {
        probe: String,
        reason: filter::FilterError,
    },
    #[error("probe {0:?}: {1}")]
    Mismatch(String, String),
}

impl std::str::FromStr for Spec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let probe = text.trim();
        if probe.is_empty() {
            return Err(SpecError::Empty);
        }
        let (point, rest) = lexer::split_point(probe);
        let (kind, target) = match point.split_once(':') {
            Some(("p", target)) => (Kind::Entry, target),
            Some(("r", target)) => (Kind::Return, target),
            _ => (Kind::Entry, point),
        };
        if target.is_empty() {
            return Err(SpecError::Empty);
        }
        let tokens = lexer::tokenize(rest).map_err(|err| match err {
            // A quote inside the filter swallowed its closing parenthesis.
            lexer::LexError::UnterminatedString(at) if inside_parentheses(&rest[..at]) => {
                SpecError::UnbalancedFilter(probe.to_owned())
            }
            lexer::LexError::UnterminatedString(_) => {
                SpecError::UnterminatedString(probe.to_owned())
            }
            reason => SpecError::Filter {
                probe: probe.to_owned(),
                reason: reason.into(),
            },
        })?;
        let mut rest: &[Token] = &tokens;
        let mut filter = None;
        if let [Token::Open, ..] = rest {
            let close =
                closing(rest).ok_or_else(|| SpecError::UnbalancedFilter(probe.to_owned()))?;
            let parsed =
                Filter::from_tokens(&rest[1..close]).map_err(|reason| SpecError::Filter {
                    probe: probe.to_owned(),
                    reason,
                })?;
            filter = Some(parsed);
            rest = &rest[close + 1..];
        }
        let mut format = None;
        let mut args = Vec::new();
        match rest {
            [] => {}
            [Token::Str(raw), after @ ..] => {
                let parsed = raw.parse::<Format>().map_err(|reason| SpecError::Format {
                    probe: probe.to_owned(),
                    reason,
                })?;
                format = Some(parsed);
                // bcc wants a comma after the format; gotrace's own examples
                // (and the 2017 post's) leave it out. Both read the same.
                let list = match after {
                    [Token::Comma, list @ ..] => list,
                    list => list,
                };
                if !after.is_empty() {
                    args = arguments(list)?;
                }
            }
            [other, ..] => {
                let found = rest.iter().map(Token::text).collect::<Vec<_>>().join(" ");
                return Err(match other {
                    Token::Close => SpecError::UnbalancedFilter(probe.to_owned()),
                    _ => SpecError::ExpectedFormat(probe.to_owned(), found),
                });
            }
        }
        let conversions = format.as_ref().map_or(0, Format::conversions);
        if conversions != args.len() {
            return Err(SpecError::Mismatch(
                probe.to_owned(),
                format!(
                    "the format has {conversions} conversion(s) but {} argument(s) follow",
                    args.len()
                ),
            ));
        }
        Ok(Spec {
            kind,
            target: target.to_owned(),
            filter,
            format,
            args,
        })
    }
}

/// `ARG, ARG, ...`: one word between commas.
fn arguments(tokens: &[Token]) -> Result<Vec<ArgExpr>, SpecError> {
    tokens
        .split(|t| *t == Token::Comma)
        .map(|part| match part {
            [Token::Word(word)] => word.parse().map_err(SpecError::BadArgument),
            other => {
                let text = other.iter().map(Token::text).collect::<Vec<_>>().join(" ");
                Err(SpecError::BadArgument(ArgError::NotAnArgument(text)))
            }
        })
        .collect()
}

/// Whether `text` (well-formed tokens) leaves a parenthesis open.
fn inside_parentheses(text: &str) -> bool {
    let tokens = lexer::tokenize(text).unwrap_or_default();
    let opened = tokens.iter().filter(|t| **t == Token::Open).count();
    let closed = tokens.iter().filter(|t| **t == Token::Close).count();
    opened > closed
}

/// Index of the `)` closing the `(` at 0.
fn closing(tokens: &[Token]) -> Option<usize> {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Open => depth += 1,
            Token::Close => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_posts_example() {
        let bcc_style: Spec = r#"/bin/app:main.add "%d %d", goarg1, goarg2"#.parse().unwrap();
        assert_eq!(bcc_style.args, [ArgExpr::GoArg(1), ArgExpr::GoArg(2)]);
        let spec: Spec = r#"/bin/app:main.add "%d %d" goarg1, goarg2"#.parse().unwrap();
        assert_eq!(spec.kind, Kind::Entry);
        assert_eq!(spec.target, "/bin/app:main.add");
        assert_eq!(spec.args, [ArgExpr::GoArg(1), ArgExpr::GoArg(2)]);
        assert!(spec.filter.is_none());
    }

    #[test]
    fn return_probe_with_filter() {
        let spec: Spec = r#"r:app:main.add (retval > 50) "sum %d", retval"#.parse().unwrap();
        assert_eq!(spec.kind, Kind::Return);
        assert_eq!(spec.target, "app:main.add");
        assert!(spec.filter.is_some());
        assert_eq!(spec.args, [ArgExpr::Retval(1)]);
    }

    #[test]
    fn bare_function_and_named_fields() {
        let spec: Spec = "main.work".parse().unwrap();
        assert_eq!((spec.target.as_str(), spec.args.len()), ("main.work", 0));
        let spec: Spec = r#"p:main.serve (req.Method == "GET") "%s %d", req.URL, n"#
            .parse()
            .unwrap();
        assert_eq!(
            spec.args[0],
            ArgExpr::Named {
                name: "req".into(),
                fields: vec!["URL".into()]
            }
        );
        // A parenthesis inside a quoted filter string does not end the filter.
        let spec: Spec = r#"main.f (name == "a)b") "%s", name"#.parse().unwrap();
        assert!(spec.filter.is_some());
    }

    #[test]
    fn errors() {
        let err = |text: &str| text.parse::<Spec>().unwrap_err();
        assert_eq!(err(""), SpecError::Empty);
        assert_eq!(err("r:"), SpecError::Empty);
        assert!(matches!(
            err("main.f (goarg1 == 1"),
            SpecError::UnbalancedFilter(_)
        ));
        assert!(matches!(
            err(r#"main.f "%d"#),
            SpecError::UnterminatedString(_)
        ));
        assert!(matches!(
            err(r#"main.f (a == 1) "%d"#),
            SpecError::UnterminatedString(_)
        ));
        assert!(matches!(
            err(r#"main.f (name == "x)"#),
            SpecError::UnbalancedFilter(_)
        ));
        assert!(matches!(err(r#"main.f "%d""#), SpecError::Mismatch(..)));
        assert!(matches!(
            err(r#"main.f "%d", goarg1, goarg2"#),
            SpecError::Mismatch(..)
        ));
        assert!(matches!(
            err(r#"main.f "x" goarg1"#),
            SpecError::Mismatch(..)
        ));
        assert!(matches!(
            err(r#"main.f "%d" ,"#),
            SpecError::BadArgument(..)
        ));
        assert!(matches!(
            err("main.f goarg1"),
            SpecError::ExpectedFormat(..)
        ));
        assert!(matches!(
            err(r#"main.f "%d", goarg0"#),
            SpecError::BadArgument(..)
        ));
        assert!(matches!(
            err(r#"main.f "%d", 1+2"#),
            SpecError::BadArgument(..)
        ));
        assert!(matches!(
            err(r#"main.f "%q", goarg1"#),
            SpecError::Format { .. }
        ));
    }

    #[test]
    fn go_symbols_as_functions() {
        let spec: Spec = "net/http.(*conn).serve".parse().unwrap();
        assert_eq!(spec.target, "net/http.(*conn).serve");
        assert!(spec.filter.is_none());
        let spec: Spec = r#"p:/bin/app:net/http.(*conn).serve (goarg1 != 0) "%x", goarg1"#
            .parse()
            .unwrap();
        assert_eq!(spec.target, "/bin/app:net/http.(*conn).serve");
        assert_eq!(spec.filter.unwrap().comparisons.len(), 1);
        for symbol in [
            "main.main.func1",
            "main.Map[go.shape.int,go.shape.string]",
            "main.(*List[...]).Push",
            "main.F[go.shape.struct { X int }]",
            "type:.eq.main.T",
            "go:fmt.Println",
        ] {
            let spec: Spec = format!(r#"{symbol} (n > 1) "%d", n"#).parse().unwrap();
            assert_eq!(spec.target, symbol);
            assert!(spec.filter.is_some(), "{symbol}");
            assert_eq!(spec.args.len(), 1, "{symbol}");
        }
        // A filter right after the name still reads as one.
        let spec: Spec = r#"main.f(n > 1) "%d", n"#.parse().unwrap();
        assert_eq!(spec.target, "main.f");
        assert!(spec.filter.is_some());
    }

    #[test]
    fn quotes_are_respected_everywhere() {
        let spec: Spec = r#"main.f (name == "a&&b" || name == "(x)") "%s, %d", name, n"#
            .parse()
            .unwrap();
        let filter = spec.filter.unwrap();
        assert!(filter.any);
        assert_eq!(filter.comparisons.len(), 2);
        assert_eq!(spec.args.len(), 2);
    }
}
