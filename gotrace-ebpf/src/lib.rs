//! Kernel programs of gotrace live in the `gotrace` binary target
//! (`src/main.rs`), built for `bpfel-unknown-none` by `gotrace-cli/build.rs`.
//! This empty library only lets `gotrace-cli` name the crate as a build
//! dependency, so cargo rebuilds the programs when they change.
#![no_std]
