//! Filters: `(ARG OP VALUE [&& ...])` or the same joined by `||`, where
//! ARG is an argument expression, OP one of `== != < <= > >=`, and VALUE
//! an integer (decimal, `0x` hex, negative) or a "string" (`==`/`!=`).
//! Evaluated in the kernel, so they are limited to what the `trace`
//! program does: up to four comparisons, all `&&` or all `||`.

use gotrace_common::trace::MAX_CONDITIONS;

use super::spec::ArgExpr;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

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
}

impl std::str::FromStr for Filter {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<Self, FilterError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(FilterError::Empty);
        }
        let (ands, ors) = (text.contains("&&"), text.contains("||"));
        if ands && ors {
            return Err(FilterError::Mixed);
        }
        let parts: Vec<&str> = if ors {
            text.split("||").collect()
        } else {
            text.split("&&").collect()
        };
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

fn comparison(text: &str) -> Result<Comparison, FilterError> {
    let text = text
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim();
    const OPS: [(&str, Op); 6] = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let (at, symbol, op) = OPS
        .iter()
        .filter_map(|(symbol, op)| text.find(symbol).map(|at| (at, *symbol, *op)))
        .min_by_key(|(at, symbol, _)| (*at, std::cmp::Reverse(symbol.len())))
        .ok_or_else(|| FilterError::NotAComparison(text.to_owned()))?;
    let arg = text[..at]
        .trim()
        .parse::<ArgExpr>()
        .map_err(|e| FilterError::Argument(e.to_string()))?;
    let raw = text[at + symbol.len()..].trim();
    let value = if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        if !matches!(op, Op::Eq | Op::Ne) {
            return Err(FilterError::StringOrder(text.to_owned()));
        }
        Value::Str(inner.to_owned())
    } else {
        Value::Int(integer(raw).ok_or_else(|| FilterError::BadValue(raw.to_owned()))?)
    };
    Ok(Comparison { arg, op, value })
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
        assert!(matches!(
            err(r#"name < "bob""#),
            FilterError::StringOrder(_)
        ));
        assert!(matches!(err("1 == goarg1"), FilterError::Argument(_)));
    }
}
