//! The Go build info blob (`.go.buildinfo`): both layouts, with pointers
//! into the fuzzed bytes themselves for the pre-1.18 one.
#![no_main]

use gotrace_cli::symbols::{
    buildinfo,
    image::{Image, Segment},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The fuzzed bytes are the whole binary, loaded at address 0.
    let segments = [Segment {
        address: 0,
        file_offset: 0,
        file_size: data.len() as u64,
    }];
    let _ = buildinfo::parse(data, &Image::new(data, &segments));
});
