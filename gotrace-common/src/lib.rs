//! The contract between gotrace's kernel programs (`gotrace-ebpf`) and its
//! user-space loader (`gotrace-cli`): map and program names, map value
//! layouts, and the meaning of the per-probe bpf cookie.
//!
//! Everything here is `#[repr(C)]` with fixed-width fields and no implicit
//! padding, so both sides read the same bytes.
#![no_std]

pub mod funccount;
pub mod funclatency;
pub mod probe;
pub mod trace;
