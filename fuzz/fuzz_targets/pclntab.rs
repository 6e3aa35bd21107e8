//! Go's function table (`.gopclntab`), read from binaries gotrace is pointed
//! at, stripped ones included: every accessor must stay in bounds.
#![no_main]

use gotrace_cli::symbols::{inline, pclntab::Pclntab};
use libfuzzer_sys::fuzz_target;

/// Bounds the walk over a table that claims millions of functions.
const MAX_FUNCTIONS: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let _ = Pclntab::header_text_start(data);
    for text_start in [None, Some(0x401000)] {
        let Ok(table) = Pclntab::parse(data, text_start) else {
            continue;
        };
        for function in table.functions().take(MAX_FUNCTIONS) {
            let _ = function.name.len();
            let Some(record) = table.record(&function) else {
                continue;
            };
            for index in 0..4 {
                if let Some(offset) = record.pcdata(index) {
                    let _ = table.pc_values(offset, function.entry);
                }
                let _ = record.funcdata(index);
            }
        }
        let gofunc = |offset: u64, len| {
            let start = usize::try_from(offset).ok()?;
            data.get(start..start.checked_add(len)?)
        };
        let _ = inline::sites(&table, gofunc);
        for pc in [0x401000, 0x401020, 0x401100, u64::MAX] {
            let _ = inline::frames_at(&table, gofunc, pc);
        }
    }
});
