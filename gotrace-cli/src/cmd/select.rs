//! Choosing the functions a pattern names in a binary, and saying clearly
//! why none were found.

use anyhow::bail;

use crate::{
    probe::pattern::Pattern,
    symbols::{Binary, Function},
};

/// Similarity above which a name is offered as "did you mean".
const SUGGESTION_THRESHOLD: f64 = 0.85;

/// The functions of `binary` that `pattern` matches, or an error naming the
/// binary searched and the closest name it holds.
pub fn matching<'b>(
    binary: &'b Binary,
    pattern: &Pattern,
    shown_as: &str,
) -> anyhow::Result<Vec<&'b Function>> {
    let functions: Vec<&Function> = binary
        .functions()
        .iter()
        .filter(|f| pattern.matches(&f.name))
        .collect();
    if !functions.is_empty() {
        return Ok(functions);
    }
    if binary.functions().is_empty() {
        match binary.toolchain() {
            Some(_) => bail!(
                "{shown_as} is a stripped Go binary (no .symtab): gotrace cannot name its \
                 functions yet; trace an unstripped build"
            ),
            None => bail!(
                "{shown_as} is not a Go binary (no .gopclntab, .go.buildinfo or gccgo symbols) \
                 and has no function symbols; PATH:FUNC works on any ELF with a symbol table"
            ),
        }
    }
    let mut message = format!("no function in {shown_as} matches {:?}", pattern.func);
    if let Some(suggestion) = closest(binary, &pattern.func) {
        message += &format!(" (did you mean {suggestion:?}?)");
    }
    if binary.toolchain().is_none() {
        message += &format!(
            "; {shown_as} is not a Go binary (no .gopclntab, .go.buildinfo or gccgo symbols), \
             but PATH:FUNC works for the functions of any ELF symbol table"
        );
    }
    bail!(message)
}

/// The name closest to `wanted` (wildcards ignored), if any is close enough.
fn closest<'b>(binary: &'b Binary, wanted: &str) -> Option<&'b str> {
    let wanted: String = wanted.chars().filter(|c| !matches!(c, '*' | '?')).collect();
    binary
        .functions()
        .iter()
        .map(|f| (strsim::jaro_winkler(&wanted, &f.name), f.name.as_str()))
        .filter(|(score, _)| *score >= SUGGESTION_THRESHOLD)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}
