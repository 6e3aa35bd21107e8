//! Tracing every Go program of the host, or of a container: which
//! processes a run keeps ([`scope`]), which Go binaries they run
//! ([`discover`]), and the executions that start new ones ([`exec`]).

pub mod discover;
pub mod exec;
pub mod scope;

pub use discover::FileKey;
pub use scope::Scope;
