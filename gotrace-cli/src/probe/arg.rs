//! Argument expressions of trace probes and filters: `goargN` (Go ABI
//! word N), `argN` (C ABI), `retval[N]`, or a parameter named in DWARF
//! with an optional field path (`req.Method`).

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

/// Why an argument expression cannot be read.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgError {
    #[error("bad argument {0:?}: numbered from 1 to 32")]
    OutOfRange(String),
    #[error("bad argument {0:?}: write goargN, argN, retval[N], or a parameter name (name.field)")]
    NotAnArgument(String),
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
    type Err = ArgError;

    fn from_str(text: &str) -> Result<Self, ArgError> {
        let text = text.trim();
        let numbered = |prefix: &str| -> Option<Result<u32, ArgError>> {
            let digits = text.strip_prefix(prefix)?;
            if digits.is_empty() && prefix == "retval" {
                return Some(Ok(1));
            }
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(match digits.parse::<u32>() {
                Ok(n) if (1..=32).contains(&n) => Ok(n),
                _ => Err(ArgError::OutOfRange(text.to_owned())),
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
            return Err(ArgError::NotAnArgument(text.to_owned()));
        }
        Ok(ArgExpr::Named {
            name: name.to_owned(),
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_names() {
        assert_eq!("retval".parse::<ArgExpr>(), Ok(ArgExpr::Retval(1)));
        assert_eq!("retval2".parse::<ArgExpr>(), Ok(ArgExpr::Retval(2)));
        assert_eq!("arg6".parse::<ArgExpr>(), Ok(ArgExpr::CArg(6)));
        assert_eq!("goarg3".parse::<ArgExpr>(), Ok(ArgExpr::GoArg(3)));
        assert_eq!(
            "args".parse::<ArgExpr>(),
            Ok(ArgExpr::Named {
                name: "args".into(),
                fields: vec![]
            })
        );
        assert_eq!(
            "req.URL.Path".parse::<ArgExpr>().unwrap().to_string(),
            "req.URL.Path"
        );
        assert_eq!(
            "goarg99".parse::<ArgExpr>(),
            Err(ArgError::OutOfRange("goarg99".into()))
        );
        assert_eq!(
            "goarg0".parse::<ArgExpr>(),
            Err(ArgError::OutOfRange("goarg0".into()))
        );
        assert_eq!(
            "1+2".parse::<ArgExpr>(),
            Err(ArgError::NotAnArgument("1+2".into()))
        );
        assert!("req.".parse::<ArgExpr>().is_err());
        assert!("".parse::<ArgExpr>().is_err());
    }
}
