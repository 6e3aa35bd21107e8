//! bcc trace's probe syntax:
//! `[p:|r:][PATH:]FUNC [(FILTER)] ["FORMAT"[, ARG, ...]]`.
//!
//! Split as bpftrace splits attach points: the probe point up to the first
//! blank, `(` or `"`; a filter in balanced parentheses (quotes respected);
//! a quoted format; then comma-separated argument expressions. Each part
//! has its own parser ([`super::format`], [`super::filter`], [`ArgExpr`]).

use super::{
    filter::{self, Filter},
    format::{self, Format},
};

/// Entry (`p:`, the default) or return (`r:`) probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Entry,
    Return,
}

/// What an argument expression reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgExpr {
    /// `goargN`: the N-th word (1-based) of the Go argument area.
    GoArg(u32),
    /// `argN`: the N-th C (System V) integer argument.
    CArg(u32),
    /// `retval` (1) or `retvalN`: the N-th result register.
    Retval(u32),
    /// A parameter named in DWARF, with optional field path (`req.Method`).
    Named { name: String, fields: Vec<String> },
}

impl std::fmt::Display for ArgExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgExpr::GoArg(n) => write!(f, "goarg{n}"),
            ArgExpr::CArg(n) => write!(f, "arg{n}"),
            ArgExpr::Retval(n) => write!(f, "retval{n}"),
            ArgExpr::Named { name, fields } => {
                write!(f, "{name}")?;
                fields.iter().try_for_each(|field| write!(f, ".{field}"))
            }
        }
    }
}

impl std::str::FromStr for ArgExpr {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let text = text.trim();
        let numbered = |prefix: &str| -> Option<Result<u32, SpecError>> {
            let digits = text.strip_prefix(prefix)?;
            if digits.is_empty() && prefix == "retval" {
                return Some(Ok(1));
            }
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(match digits.parse::<u32>() {
                Ok(n) if (1..=32).contains(&n) => Ok(n),
                _ => Err(SpecError::BadArgument(
                    text.to_owned(),
                    "numbered from 1 to 32",
                )),
            })
        };
        if let Some(n) = numbered("goarg") {
            return n.map(ArgExpr::GoArg);
        }
        if let Some(n) = numbered("retval") {
            return n.map(ArgExpr::Retval);
        }
        if let Some(n) = numbered("arg") {
            return n.map(ArgExpr::CArg);
        }
        let mut parts = text.split('.');
        let name = parts.next().unwrap_or_default();
        let fields: Vec<String> = parts.map(str::to_owned).collect();
        let identifier = |s: &str| {
            s.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_alphanumeric() || c == '_')
        };
        if !identifier(name) || !fields.iter().all(|f| identifier(f)) {
            return Err(SpecError::BadArgument(
                text.to_owned(),
                "write goargN, argN, retval[N], or a parameter name (name.field)",
            ));
        }
        Ok(ArgExpr::Named {
            name: name.to_owned(),
            fields,
        })
    }
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
    #[error("bad argument {0:?}: {1}")]
    BadArgument(String, &'static str),
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
        let point_end = probe
            .find(|c: char| c.is_whitespace() || c == '(' || c == '"')
            .unwrap_or(probe.len());
        let (point, mut rest) = probe.split_at(point_end);
        let (kind, target) = match point.split_once(':') {
            Some(("p", target)) => (Kind::Entry, target),
            Some(("r", target)) => (Kind::Return, target),
            _ => (Kind::Entry, point),
        };
        if target.is_empty() {
            return Err(SpecError::Empty);
        }
        rest = rest.trim_start();
        let mut filter = None;
        if rest.starts_with('(') {
            let end =
                closing_paren(rest).ok_or_else(|| SpecError::UnbalancedFilter(probe.to_owned()))?;
            let parsed = rest[1..end]
                .parse::<Filter>()
                .map_err(|reason| SpecError::Filter {
                    probe: probe.to_owned(),
                    reason,
                })?;
            filter = Some(parsed);
            rest = rest[end + 1..].trim_start();
        }
        let mut format = None;
        let mut args = Vec::new();
        if !rest.is_empty() {
            if !rest.starts_with('"') {
                return Err(SpecError::ExpectedFormat(probe.to_owned(), rest.to_owned()));
            }
            let end = closing_quote(rest)
                .ok_or_else(|| SpecError::UnterminatedString(probe.to_owned()))?;
            let parsed = rest[1..end]
                .parse::<Format>()
                .map_err(|reason| SpecError::Format {
                    probe: probe.to_owned(),
                    reason,
                })?;
            format = Some(parsed);
            rest = rest[end + 1..].trim();
            if !rest.is_empty() {
                // bcc wants a comma after the format; gotrace's own examples
                // (and the 2017 post's) leave it out. Both read the same.
                let list = rest.strip_prefix(',').unwrap_or(rest);
                args = list
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<Vec<ArgExpr>, _>>()?;
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

/// Index of the `)` closing the `(` at 0, skipping quoted strings.
fn closing_paren(text: &str) -> Option<usize> {
    let mut depth = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Index of the `"` closing the `"` at 0.
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
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
    fn argument_names() {
        assert_eq!("retval".parse::<ArgExpr>(), Ok(ArgExpr::Retval(1)));
        assert_eq!("retval2".parse::<ArgExpr>(), Ok(ArgExpr::Retval(2)));
        assert_eq!("arg6".parse::<ArgExpr>(), Ok(ArgExpr::CArg(6)));
        assert_eq!(
            "args".parse::<ArgExpr>(),
            Ok(ArgExpr::Named {
                name: "args".into(),
                fields: vec![]
            })
        );
        assert!("goarg99".parse::<ArgExpr>().is_err());
    }
}
