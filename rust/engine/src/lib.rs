//! mcp-v8's engine: runs JavaScript and TypeScript in V8 isolates (Debian's libnode,
//! V8 10.2, through the C++ shim in `cpp/`), with heap caps, timeouts, cancellation,
//! live console capture and heap snapshots in checked envelopes.
//!
//! The core is free of PyO3; `python.rs` (feature `python`) is the only boundary.

mod console;
pub mod context;
pub mod engine;
pub mod envelope;
mod error;
pub mod fetch;
mod ffi;
mod host_calls;
pub mod nesting;
mod outcome;
mod parse;
mod positions;
pub mod source;
mod transform;
mod v8_process;
mod web;

#[cfg(feature = "python")]
mod python;

pub use console::{ConsoleLine, Level};
pub use context::{ContextOptions, LiveContext};
pub use engine::{
    execute, initialize, v8_version, Control, IsolateOptions, Options, RunOptions,
    DEFAULT_CONSOLE_LIMIT_BYTES, DEFAULT_FILENAME,
};
pub use error::EngineError;
pub use fetch::FetchPolicy;
pub use host_calls::{Dispatch, HostCall, Replies};
pub use outcome::{JsError, Outcome, Status};
pub use source::Language;
