//! Go's function table (`.gopclntab`), read from binaries gotrace is pointed
//! at, stripped ones included: every accessor must stay in bounds.
#![no_main]

use gotrace_cli::symbols::{
    image::{Image, Segment},
    inline,
    pclntab::Pclntab,
};
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
        // The fuzzed bytes are also go:func.*, at address 0.
        let segments = [Segment {
            address: 0,
            file_offset: 0,
            file_size: data.len() as u64,
        }];
        let image = Image::new(data, &segments);
        let _ = inline::sites(&table, &image, 0);
        for pc in [0x401000, 0x401020, 0x401100, u64::MAX] {
            let _ = inline::frames_at(&table, &image, 0, pc);
        }
    }
});
