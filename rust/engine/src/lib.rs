//! mcp-v8's engine: runs JavaScript and TypeScript in V8 isolates (Debian's libnode,
//! V8 10.2, through the C++ shim in `cpp/`), with heap caps, timeouts, cancellation,
//! live console capture and heap snapshots in checked envelopes.
//!
//! The core is free of PyO3; `python.rs` (feature `python`) is the only boundary.

pub mod context;
pub mod engine;
pub mod envelope;
pub mod fetch;
mod ffi;
pub mod nesting;
pub mod source;
mod transform;
mod web;

#[cfg(feature = "python")]
mod python;

pub use context::{ContextOptions, LiveContext, Replies, RunOptions};
pub use engine::{
    execute, initialize, v8_version, ConsoleLine, Control, EngineError, JsError, Level, Options,
    Outcome, Status,
};
pub use fetch::FetchPolicy;
pub use source::Language;
