//! Probe specs as typed on the command line (`trace` probes, with their
//! filters, format strings and argument lists; funccount patterns).
#![no_main]

use gotrace_cli::probe::{
    arg::ArgExpr, filter::Filter, format::Format, lexer, pattern::Pattern, spec::Spec,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(spec) = text.parse::<Spec>() {
        // What trace does next with a parsed spec.
        if let Some(format) = &spec.format {
            let _ = format.conversions();
            let _ = format.values().count();
        }
    }
    let (_point, rest) = lexer::split_point(text);
    let _ = lexer::tokenize(rest);
    let _ = lexer::unescape(text);
    let _ = text.parse::<ArgExpr>();
    let _ = text.parse::<Format>();
    let _ = text.parse::<Filter>();
    for regexp in [false, true] {
        if let Ok(pattern) = Pattern::parse(text, regexp) {
            let _ = pattern.matches("main.main");
        }
    }
});
