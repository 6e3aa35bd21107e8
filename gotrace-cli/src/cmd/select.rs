//! Choosing the functions a pattern names in a binary, and saying clearly
//! why none were found.

use std::collections::BTreeMap;

use anyhow::bail;

use crate::{
    probe::pattern::Pattern,
    symbols::{inline::InlinedSite, Binary, Function},
};

/// A function a pattern selected: its out-of-line code, if the binary has
/// any, and the call sites where the compiler inlined it.
#[derive(Debug)]
pub struct Selected<'b> {
    pub name: &'b str,
    pub function: Option<&'b Function>,
    pub inlined: Vec<&'b InlinedSite>,
}

impl Selected<'_> {
    /// The name shown in output: inlined sites are marked, since their
    /// counts come from probes inside other functions.
    pub fn label(&self) -> String {
        match (self.function, self.inlined.len()) {
            (_, 0) => self.name.to_owned(),
            (None, n) => format!("{} [inlined x{n}]", self.name),
            (Some(_), n) => format!("{} [+inlined x{n}]", self.name),
        }
    }

    /// The functions its inlined copies live in, each once.
    pub fn callers(&self) -> Vec<&str> {
        let mut callers: Vec<&str> = self.inlined.iter().map(|s| s.caller.as_str()).collect();
        callers.dedup();
        callers
    }
}

/// Whether `pattern` matches anything in `binary`, out-of-line or
/// inlined: the quick test host-wide runs put every Go binary to.
pub fn selects_any(binary: &Binary, pattern: &Pattern) -> bool {
    binary.functions().iter().any(|f| pattern.matches(&f.name))
        || binary.inlined().iter().any(|s| pattern.matches(&s.name))
}

/// Similarity above which a name is offered as "did you mean".
const SUGGESTION_THRESHOLD: f64 = 0.85;

/// The functions of `binary` that `pattern` matches, out-of-line or
/// inlined, in address order of their first code; or an error naming the
/// binary searched and the closest name it holds.
pub fn matching<'b>(
    binary: &'b Binary,
    pattern: &Pattern,
    shown_as: &str,
) -> anyhow::Result<Vec<Selected<'b>>> {
    let mut inlined: BTreeMap<&str, Vec<&InlinedSite>> = BTreeMap::new();
    for site in binary.inlined().iter().filter(|s| pattern.matches(&s.name)) {
        inlined.entry(site.name.as_str()).or_default().push(site);
    }
    let mut selected: Vec<Selected<'b>> = binary
        .functions()
        .iter()
        .filter(|f| pattern.matches(&f.name))
        .map(|f| Selected {
            name: &f.name,
            function: Some(f),
            inlined: inlined.remove(f.name.as_str()).unwrap_or_default(),
        })
        .collect();
    selected.extend(inlined.into_iter().map(|(name, sites)| Selected {
        name,
        function: None,
        inlined: sites,
    }));
    if !selected.is_empty() {
        return Ok(selected);
    }
    if binary.functions().is_empty() {
        match binary.toolchain() {
            Some(_) => bail!(
                "{shown_as} is a stripped Go binary whose .gopclntab gotrace cannot read: \
                 trace an unstripped build"
            ),
            None => bail!(
                "{shown_as} is not a Go binary (no .gopclntab, .go.buildinfo or gccgo symbols) \
                 and has no function symbols; PATH:FUNC works on any ELF with a symbol table"
            ),
        }
    }
    let mut message = format!("no function in {shown_as} matches {:?}", pattern.func);
    let inside = binary
        .functions()
        .iter()
        .map(|f| f.name.as_str())
        .chain(binary.inlined().iter().map(|s| s.name.as_str()))
        .find(|name| pattern.matches_unanchored(name));
    if let Some(name) = inside {
        message += &format!(
            " (-r anchors at the start of names, as bcc does; it matches inside {name:?}: \
             write '.*{}')",
            pattern.func
        );
    } else if let Some(suggestion) = closest(binary, &pattern.func) {
        message += &format!(" (did you mean {suggestion:?}?)");
    } else if binary.toolchain().is_some() {
        message += &format!(
            " (its largest packages: {}; try PKG.*)",
            largest_packages(binary, 6).join(", ")
        );
    }
    if binary.toolchain().is_none() {
        message += &format!(
            "; {shown_as} is not a Go binary (no .gopclntab, .go.buildinfo or gccgo symbols), \
             but PATH:FUNC works for the functions of any ELF symbol table"
        );
    }
    bail!(message)
}

/// The Go packages with the most functions, largest first.
fn largest_packages(binary: &Binary, n: usize) -> Vec<&str> {
    let mut sizes: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    // `type:.eq.T` and `go:buildid` are the linker's, not packages.
    for package in binary.functions().iter().map(|f| package_of(&f.name)) {
        if !package.contains(':') {
            *sizes.entry(package).or_default() += 1;
        }
    }
    let mut sizes: Vec<(&str, usize)> = sizes.into_iter().collect();
    sizes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    sizes.into_iter().take(n).map(|(p, _)| p).collect()
}

/// `net/http` of `net/http.(*Client).Do`: up to the first dot after the
/// last slash. The linker writes a dot in the last path element as `%2e`
/// (`gopkg.in/yaml%2ev3.Unmarshal`), so that dot always ends the package.
fn package_of(name: &str) -> &str {
    let base = name.rfind('/').map_or(0, |slash| slash + 1);
    name[base..]
        .find('.')
        .map_or(name, |dot| &name[..base + dot])
}

/// The name closest to `wanted` (wildcards ignored), if any is close enough.
/// A name that extends it with a suffix (gccgo's `main.add.constprop.0`
/// clones, `.abi0` assembly) is the closest of all.
fn closest<'b>(binary: &'b Binary, wanted: &str) -> Option<&'b str> {
    let wanted: String = wanted.chars().filter(|c| !matches!(c, '*' | '?')).collect();
    let extended = format!("{wanted}.");
    if let Some(f) = binary
        .functions()
        .iter()
        .find(|f| f.name.starts_with(&extended))
    {
        return Some(&f.name);
    }
    binary
        .functions()
        .iter()
        .map(|f| (strsim::jaro_winkler(&wanted, &f.name), f.name.as_str()))
        .filter(|(score, _)| *score >= SUGGESTION_THRESHOLD)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::package_of;

    #[test]
    fn packages_of_go_symbols() {
        assert_eq!(package_of("net/http.(*Client).Do"), "net/http");
        assert_eq!(package_of("main.main"), "main");
        assert_eq!(
            package_of("gopkg.in/yaml%2ev3.Unmarshal"),
            "gopkg.in/yaml%2ev3"
        );
        assert_eq!(package_of("go:buildid"), "go:buildid");
        assert_eq!(package_of("type:.eq.[2]string"), "type:");
    }
}
