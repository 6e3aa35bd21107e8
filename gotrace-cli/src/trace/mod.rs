//! The `trace` tool's user side, apart from its command line: planning
//! what the kernel program reads for each probe (`plan`) and decoding what
//! it sends back (`decode`).

pub mod decode;
pub mod plan;
