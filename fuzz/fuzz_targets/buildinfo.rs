//! The Go build info blob (`.go.buildinfo`): both layouts, with pointers
//! into the fuzzed bytes themselves for the pre-1.18 one.
#![no_main]

use gotrace_cli::symbols::buildinfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = buildinfo::parse(data, |address, len| {
        let start = usize::try_from(address).ok()?;
        data.get(start..start.checked_add(len)?)
    });
});
