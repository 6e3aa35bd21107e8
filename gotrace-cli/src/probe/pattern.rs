//! `[PATH:]FUNC` patterns as funccount and funclatency take them.
//!
//! FUNC is a glob over Go symbol names, which themselves contain `.`, `(`,
//! `)`, `*`, `/` and `[`: only `*` (any run of characters) and `?` (one
//! character) are special, everything else (brackets too) matches itself,
//! and the glob matches the whole name. A generic function's instances are
//! named with their type arguments (`main.Map[go.shape.int]`,
//! `main.(*List[go.shape.string]).Push`): a glob without brackets also
//! matches names with their type arguments left out, so `main.Map` selects
//! every instance. With `-r` FUNC is a regular expression instead,
//! anchored at the start only, as bcc's `-r` is (`re.match`).

use regex::Regex;

/// A parsed `[PATH:]FUNC` pattern.
#[derive(Debug)]
pub struct Pattern {
    /// The binary or library named before the first `:`, if any.
    pub path: Option<String>,
    /// The function part, as typed.
    pub func: String,
    matcher: Regex,
    /// A glob without `[`: also matched against names without their type
    /// arguments.
    generic_blind: bool,
    /// `-r`: the expression unanchored, to tell a user whose expression
    /// matched nothing whether it would have matched inside names.
    unanchored: Option<Regex>,
}

/// Errors in a pattern as typed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    /// Nothing after the `:` (or nothing at all).
    #[error("pattern {0:?} names no function: write [PATH:]FUNC, e.g. /usr/bin/app:main.*")]
    NoFunction(String),
    /// Nothing before the `:`.
    #[error("pattern {0:?} has an empty path before ':'")]
    EmptyPath(String),
    /// `-r` was given and FUNC is not a valid regular expression.
    #[error("bad regular expression {pattern:?}: {message}")]
    BadRegex { pattern: String, message: String },
}

impl Pattern {
    /// Parses `text`. With `regex`, FUNC is a regular expression, else a glob.
    ///
    /// The path is what precedes the first `:`, unless that is a prefix Go
    /// puts inside symbol names (`type:.eq.main.T`, Go 1.21+).
    pub fn parse(text: &str, regex: bool) -> Result<Self, PatternError> {
        let (path, func) = match text.split_once(':') {
            Some((path, func)) if !is_symbol_prefix(path) => (Some(path), func),
            _ => (None, text),
        };
        if path == Some("") {
            return Err(PatternError::EmptyPath(text.to_owned()));
        }
        if func.is_empty() {
            return Err(PatternError::NoFunction(text.to_owned()));
        }
        let source = if regex {
            format!("^(?:{func})")
        } else {
            glob_to_regex(func)
        };
        let matcher = Regex::new(&source).map_err(|e| PatternError::BadRegex {
            pattern: func.to_owned(),
            message: regex_error(&e),
        })?;
        Ok(Self {
            path: path.map(str::to_owned),
            func: func.to_owned(),
            matcher,
            generic_blind: !regex && !func.contains('['),
            unanchored: regex.then(|| Regex::new(func).ok()).flatten(),
        })
    }

    /// Whether the function part matches a symbol name.
    pub fn matches(&self, name: &str) -> bool {
        self.matcher.is_match(name)
            || (self.generic_blind
                && name.contains('[')
                && self.matcher.is_match(&without_type_arguments(name)))
    }

    /// With `-r`, whether the expression matches `name` anywhere (it is
    /// anchored at the start).
    pub fn matches_unanchored(&self, name: &str) -> bool {
        self.unanchored.as_ref().is_some_and(|r| r.is_match(name))
    }
}

/// `main.Map` of `main.Map[go.shape.int]`, `main.(*List).Push` of
/// `main.(*List[go.shape.string]).Push`: every bracketed part removed.
fn without_type_arguments(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    for c in name.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Whether `part` is the prefix the Go linker puts before a `:` inside code
/// symbol names (`type:.eq.T`, Go 1.21+). `go:` also starts Go symbols, but
/// bcc users mean libgo by `go:`, so it stays a library name.
fn is_symbol_prefix(part: &str) -> bool {
    part == "type"
}

/// The last line of a regex error (`unclosed group`): its others draw the
/// pattern with a caret, which a one-line error cannot hold.
pub(crate) fn regex_error(error: &regex::Error) -> String {
    error
        .to_string()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .trim_start_matches("error: ")
        .to_owned()
}

pub(crate) fn glob_to_regex(glob: &str) -> String {
    let mut source = String::with_capacity(glob.len() * 2 + 2);
    source.push('^');
    for c in glob.chars() {
        match c {
            '*' => source.push_str(".*"),
            '?' => source.push('.'),
            c => source.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    source.push('$');
    source
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Pattern {
        Pattern::parse(text, false).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn splits_path_from_function() {
        let p = parse("/bin/hello:fmt.*");
        assert_eq!(p.path.as_deref(), Some("/bin/hello"));
        assert_eq!(p.func, "fmt.*");
        let p = parse("go:fmt.Println");
        assert_eq!(p.path.as_deref(), Some("go"));
        let p = parse("main.add");
        assert_eq!(p.path, None);
        assert_eq!(p.func, "main.add");
    }

    #[test]
    fn glob_treats_go_punctuation_literally() {
        let p = parse("fmt.(*pp).*");
        assert!(p.matches("fmt.(*pp).doPrint"));
        assert!(!p.matches("fmt.(*fmt).fmtS"));
        // '.' is not "any character" as it is in bcc.
        assert!(!parse("fmt.Println").matches("fmtXPrintln"));
        assert!(parse("main.F[...]").matches("main.F[...]"));
        assert!(parse("main.ad?").matches("main.add"));
        assert!(!parse("main.ad?").matches("main.addd"));
    }

    #[test]
    fn glob_is_anchored() {
        let p = parse("main.add");
        assert!(p.matches("main.add"));
        assert!(!p.matches("main.add.abi0"));
        assert!(!p.matches("xmain.add"));
    }

    #[test]
    fn keeps_colon_of_go_type_symbols() {
        let p = parse("type:.eq.*");
        assert_eq!(p.path, None);
        assert!(p.matches("type:.eq.main.T"));
        let p = parse("/bin/app:type:.eq.*");
        assert_eq!(p.path.as_deref(), Some("/bin/app"));
        assert_eq!(p.func, "type:.eq.*");
    }

    #[test]
    fn generic_instances() {
        let p = parse("main.Map");
        assert!(p.matches("main.Map[go.shape.int,go.shape.string]"));
        assert!(p.matches("main.Map[go.shape.int_0]"));
        assert!(!p.matches("main.MapKeys[go.shape.int]"));
        assert!(parse("main.(*List).Push").matches("main.(*List[go.shape.string]).Push"));
        assert!(parse("main.(*List).*").matches("main.(*List[go.shape.int_0]).Push"));
        // Brackets in the glob are literal, and then the name must have them.
        let exact = parse("main.Map[go.shape.int]");
        assert!(exact.matches("main.Map[go.shape.int]"));
        assert!(!exact.matches("main.Map[go.shape.string]"));
        assert_eq!(without_type_arguments("a.F[b.T[c.U]].G[x]"), "a.F.G");
    }

    #[test]
    fn regex_mode() {
        let p = Pattern::parse("/bin/app:main\\.(add|sub)$", true).unwrap();
        assert!(p.matches("main.add"));
        assert!(p.matches("main.sub"));
        assert!(!p.matches("main.adder"));
        // Anchored at the start only, as bcc's re.match.
        let p = Pattern::parse("main\\.(add|sub)", true).unwrap();
        assert!(p.matches("main.adder"));
        assert!(!p.matches("xmain.add"));
        let p = Pattern::parse("handleStream$", true).unwrap();
        assert!(!p.matches("google.golang.org/grpc.(*Server).handleStream"));
        assert!(p.matches_unanchored("google.golang.org/grpc.(*Server).handleStream"));
        assert!(!parse("main.add").matches_unanchored("main.add"));
        let err = Pattern::parse("/bin/app:main.(", true).unwrap_err();
        assert!(matches!(err, PatternError::BadRegex { .. }), "{err:?}");
    }

    #[test]
    fn rejects_empty_parts() {
        assert_eq!(
            Pattern::parse("/bin/app:", false).unwrap_err(),
            PatternError::NoFunction("/bin/app:".into())
        );
        assert_eq!(
            Pattern::parse(":main.add", false).unwrap_err(),
            PatternError::EmptyPath(":main.add".into())
        );
        assert_eq!(
            Pattern::parse("", false).unwrap_err(),
            PatternError::NoFunction("".into())
        );
    }
}
