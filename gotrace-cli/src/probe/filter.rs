//! Filters: `(ARG OP VALUE [&& ...])` or the same joined by `||`, where
//! ARG is an argument expression, OP one of `== != < <= > >=`, and VALUE
//! an integer (decimal, `0x` hex, negative) or a "string" (`==`/`!=`).
//! Evaluated in the kernel, so they are limited to what the `trace`
//! program does: up to four comparisons, all `&&` or all `||`. Read from
//! the tokens of [`super::lexer`], so `&&` inside a string is text.

use gotrace_common::trace::MAX_CONDITIONS;

pub use super::lexer::Op;
use super::{
    arg::ArgExpr,
    lexer::{self, Token},
};

/// The constant side of a comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Str(String),
}

/// One comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comparison {
    pub arg: ArgExpr,
    pub op: Op,
    pub value: Value,
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub comparisons: Vec<Comparison>,
    /// Joined by `||` (else `&&`).
    pub any: bool,
}

/// What is wrong with a filter.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("empty filter")]
    Empty,
    #[error("filter mixes && and ||: gotrace evaluates one kind per filter")]
    Mixed,
    #[error("filter has more than {MAX_CONDITIONS} comparisons")]
    TooMany,
    #[error("{0:?} is not a comparison ARG OP VALUE (OP one of == != < <= > >=)")]
    NotAComparison(String),
    #[error("{0:?} is not an integer or a \"string\"")]
    BadValue(String),
    #[error("strings compare only with == and !=: {0:?}")]
    StringOrder(String),
    #[error("{0}")]
    Argument(String),
    #[error("{0}")]
    Lex(#[from] lexer::LexError),
}

impl std::str::FromStr for Filter {
    type Err = FilterError;

    /// Parses a filter's inside (without its outer parentheses).
    fn from_str(text: &str) -> Result<Self, FilterError> {
        Filter::from_tokens(&lexer::tokenize(text)?)
    }
}

impl Filter {
    /// Parses the tokens between a filter's outer parentheses.
    pub fn from_tokens(tokens: &[Token]) -> Result<Self, FilterError> {
        if tokens.is_empty() {
            return Err(FilterError::Empty);
        }
        let (ands, ors) = (tokens.contains(&Token::And), tokens.contains(&Token::Or));
        if ands && ors {
            return Err(FilterError::Mixed);
        }
        let join = if ors { Token::Or } else { Token::And };
        let parts: Vec<&[Token]> = tokens.split(|t| *t == join).collect();
        if parts.len() > MAX_CONDITIONS {
            return Err(FilterError::TooMany);
        }
        let comparisons = parts
            .into_iter()
            .map(comparison)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Filter {
            comparisons,
            any: ors,
        })
    }
}

/// `ARG OP VALUE`, in parentheses or not.
fn comparison(tokens: &[Token]) -> Result<Comparison, FilterError> {
    let mut tokens = tokens;
    while let [Token::Open, inner @ .., Token::Close] = tokens {
        tokens = inner;
    }
    let shown = || tokens.iter().map(Token::text).collect::<Vec<_>>().join(" ");
    let (arg, op, value) = match tokens {
        [Token::Word(arg), Token::Cmp(op), value] => (arg, op, Some(value)),
        [Token::Word(arg), Token::Cmp(op)] => (arg, op, None),
        _ => return Err(FilterError::NotAComparison(shown())),
    };
    let arg = arg
        .parse::<ArgExpr>()
        .map_err(|e| FilterError::Argument(e.to_string()))?;
    let value = match value {
        Some(Token::Str(raw)) if matches!(op, Op::Eq | Op::Ne) => Value::Str(lexer::unescape(raw)),
        Some(Token::Str(_)) => return Err(FilterError::StringOrder(shown())),
        Some(Token::Word(word)) => {
            Value::Int(integer(word).ok_or_else(|| FilterError::BadValue(word.clone()))?)
        }
        other => {
            return Err(FilterError::BadValue(
                other.map(Token::text).unwrap_or_default(),
            ))
        }
    };
    Ok(Comparison {
        arg,
        op: *op,
        value,
    })
}

fn integer(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i64>().ok()?,
    };
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons() {
        let f: Filter = "goarg1 == 42 && retval >= -0x10".parse().unwrap();
        assert!(!f.any);
        assert_eq!(
            f.comparisons,
            [
                Comparison {
                    arg: ArgExpr::GoArg(1),
                    op: Op::Eq,
                    value: Value::Int(42)
                },
                Comparison {
                    arg: ArgExpr::Retval(1),
                    op: Op::Ge,
                    value: Value::Int(-16)
                }
            ]
        );
        let f: Filter = r#"name == "bob" || n < 3"#.parse().unwrap();
        assert!(f.any);
        assert_eq!(f.comparisons[0].value, Value::Str("bob".into()));
        assert_eq!(f.comparisons[1].op, Op::Lt);
    }

    #[test]
    fn rejects() {
        let err = |t: &str| t.parse::<Filter>().unwrap_err();
        assert_eq!(err(""), FilterError::Empty);
        assert_eq!(err("a == 1 && b == 2 || c == 3"), FilterError::Mixed);
        assert_eq!(err("a==1&&b==1&&c==1&&d==1&&e==1"), FilterError::TooMany);
        assert!(matches!(err("goarg1"), FilterError::NotAComparison(_)));
        assert!(matches!(err("goarg1 == forty"), FilterError::BadValue(_)));
        assert_eq!(err("goarg1 == "), FilterError::BadValue(String::new()));
        assert!(matches!(
            err(r#"name < "bob""#),
            FilterError::StringOrder(_)
        ));
        assert!(matches!(err("1 == goarg1"), FilterError::Argument(_)));
        assert!(matches!(err("a = 1"), FilterError::Lex(_)));
    }

    #[test]
    fn strings_hold_anything() {
        let f: Filter = r#"(name == "a&&b") && (path != "x || \"y\")")"#.parse().unwrap();
        assert!(!f.any);
        assert_eq!(f.comparisons[0].value, Value::Str("a&&b".into()));
        assert_eq!(f.comparisons[1].value, Value::Str(r#"x || "y")"#.into()));
        assert_eq!(f.comparisons[1].op, Op::Ne);
    }
}
