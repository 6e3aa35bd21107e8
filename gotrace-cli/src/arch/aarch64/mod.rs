//! arm64: the kernel's uprobe rules (`uprobes`), where probes go in
//! machine code (`placement`), and the calling conventions' registers
//! (`abi`).
//!
//! Instructions are decoded with `yaxpeax-arm`: pure Rust (so the static
//! musl build needs no C cross compiler, unlike `bad64`, which wraps
//! Binary Ninja's C decoder), `no_std`-capable, maintained with the rest
//! of the yaxpeax decoders, and it gives branch targets and operands as
//! data rather than text.

pub mod abi;
pub mod placement;
pub mod uprobes;
