//! mcp-v8's engine: runs JavaScript and TypeScript in V8 isolates (Debian's libnode,
//! V8 10.2, through the C++ shim in `cpp/`), with heap caps, timeouts, cancellation,
//! live console capture and heap snapshots in checked envelopes.
//!
//! The core is free of PyO3; `python/` (feature `python`) is the only boundary.
//!
//! The modules, each above the ones it uses (no module uses one above it):
//! - `python/`: the PyO3 boundary;
//! - `context.rs`: live contexts, made and run with the parts of the spec;
//! - `engine.rs`: the execution spec ([`Options`]) and one-shot executions;
//! - `prepared.rs`: the isolate of a thread's next execution, made ahead of it;
//! - `outcome.rs` (how a run ended), `v8_process.rs` (V8 started once), `web.rs` (services the
//!   shim asks of Rust), `fetch/` (fetch under an allowlist), `host_calls.rs` (calls out of
//!   JavaScript), `console.rs`, `error.rs`;
//! - `source.rs` (the source pipeline), `transform.rs` (TypeScript code generation),
//!   `parse.rs` (its one door to the parser), `nesting.rs`, `positions.rs`;
//! - `sandbox/` (the walls a worker process raises around itself: namespaces, capabilities,
//!   limits, Landlock, seccomp), used by nothing else;
//! - `envelope.rs` (snapshot envelopes) and `ffi.rs` (the shim's C ABI) at the ground.

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
mod prepared;
pub mod sandbox;
pub mod source;
pub mod tools;
mod transform;
mod v8_process;
mod web;

#[cfg(feature = "python")]
mod python;

pub use console::{ConsoleLine, Level};
pub use context::{ContextOptions, LiveContext};
pub use engine::{
    discard_prepared, execute, initialize, jitless, prepare, prepared_heap_limit, set_jitless,
    v8_version, Control, IsolateOptions, Options, Relay, RunOptions, DEFAULT_CONSOLE_LIMIT_BYTES,
    DEFAULT_FILENAME,
};
pub use error::EngineError;
pub use fetch::{FetchPolicy, FetchRun};
pub use host_calls::{Dispatch, HostCall, Replies};
pub use outcome::{monotonic_ns, JsError, Outcome, Phase, Status};
pub use source::Language;
