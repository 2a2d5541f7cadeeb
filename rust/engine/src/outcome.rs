//! How a run ended, read from the shim's response (`mv8_response`): status, result or error,
//! console, snapshot and counters.

use std::time::{Duration, Instant};

use crate::console::{ConsoleLine, ConsoleSink};
use crate::envelope::{self, Sealed};
use crate::error::EngineError;
use crate::ffi::{self, borrowed_cstr};
use crate::positions::SourceError;
use crate::v8_process::v8_version;

/// How an execution ended. The cause is this flag, never a parsed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Completed,
    Failed,
    TimedOut,
    Cancelled,
    /// Only tool calls the script holds (answered `{"held": true}`) could settle its result:
    /// the run stopped there (`crate::tools`), with a snapshot when the isolate makes them.
    Suspended,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Cancelled => "cancelled",
            Status::Suspended => "suspended",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsError {
    /// `TypeError`, `SyntaxError`, ...; `None` when a non-Error value was thrown.
    pub name: Option<String>,
    pub message: String,
    /// `Name: message` followed by `    at ...` frames pointing into the input.
    pub stack: String,
    /// 1-based position in the user's source, when known.
    pub line: Option<u32>,
    pub column: Option<u32>,
}

/// One phase of a run, between two readings of the monotonic clock ([`monotonic_ns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// `transpile` (the source checked, TypeScript's types erased: before V8), `restore` (the
    /// isolate and its context made, restored from a heap, or taken prepared), `evaluate` (the
    /// script compiled and its top level run: one call to V8 in REPL mode, which cannot be
    /// split), `run` (the event loop until the result settled, and the result serialised),
    /// `snapshot` (the heap snapshot made).
    pub name: &'static str,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The clock of [`Phase`]: CLOCK_MONOTONIC in nanoseconds (Python's `time.monotonic_ns()`
/// on Linux).
pub fn monotonic_ns() -> u64 {
    unsafe { ffi::mv8_monotonic_ns() }
}

/// The phases the shim timed, in order: those it reached, both ends known.
fn phases_of(p: &ffi::mv8_phases) -> Vec<Phase> {
    [
        ("restore", p.started, p.restored),
        ("evaluate", p.evaluating, p.evaluated),
        ("run", p.evaluated, p.settled),
        ("snapshot", p.settled, p.snapshotted),
    ]
    .into_iter()
    .filter(|&(_, start, end)| start != 0 && end >= start)
    .map(|(name, start_ns, end_ns)| Phase {
        name,
        start_ns,
        end_ns,
    })
    .collect()
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// JSON text of the completion value (status `Completed`).
    pub result: Option<String>,
    pub error: Option<JsError>,
    pub heap_limit_exceeded: bool,
    /// The source did not compile (status `Failed`): a syntax error, refused TypeScript,
    /// nesting too deep. Errors thrown while the script runs never set it.
    pub syntax_error: bool,
    pub console: Vec<ConsoleLine>,
    /// Console calls dropped after `console_limit_bytes` was reached.
    pub console_dropped: u64,
    pub snapshot: Option<Sealed>,
    pub duration: Duration,
    pub heap_used_bytes: u64,
    pub external_peak_bytes: u64,
    /// Byte strings the result's markers name (`bytes_result` asked for them; else empty).
    pub buffers: Vec<Vec<u8>>,
    /// The phases of the run, in the order they ran (see [`Phase`]).
    pub phases: Vec<Phase>,
}

/// The outcome of a source that did not get to V8: it does not compile (`SourceError`).
/// `transpile`: the phase that refused it.
pub(crate) fn source_failure(
    err: SourceError,
    filename: &str,
    started: Instant,
    transpile: Phase,
) -> Outcome {
    let stack = format!(
        "SyntaxError: {}\n    at {}:{}:{}",
        err.message, filename, err.line, err.column
    );
    Outcome {
        status: Status::Failed,
        result: None,
        error: Some(JsError {
            name: Some("SyntaxError".into()),
            message: err.message,
            stack,
            line: Some(err.line),
            column: Some(err.column),
        }),
        heap_limit_exceeded: false,
        syntax_error: true,
        console: Vec::new(),
        console_dropped: 0,
        snapshot: None,
        duration: started.elapsed(),
        heap_used_bytes: 0,
        external_peak_bytes: 0,
        buffers: Vec::new(),
        phases: vec![transpile],
    }
}

/// A response for the shim to fill; what it holds is freed when it is dropped.
pub(crate) struct Response(ffi::mv8_response);

impl Response {
    pub(crate) fn new() -> Response {
        // All null and zero: what mv8_response_free accepts and the shim starts from.
        Response(unsafe { std::mem::zeroed() })
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut ffi::mv8_response {
        &mut self.0
    }

    /// The outcome the response describes, with the console lines `sink` kept. `Err` for the
    /// statuses that are no end of a script (a closed context, an engine failure).
    pub(crate) fn outcome(
        &self,
        sink: ConsoleSink,
        started: Instant,
    ) -> Result<Outcome, EngineError> {
        unsafe { convert(&self.0, sink, started) }
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        unsafe { ffi::mv8_response_free(&mut self.0) }
    }
}

unsafe fn convert(
    r: &ffi::mv8_response,
    sink: ConsoleSink,
    started: Instant,
) -> Result<Outcome, EngineError> {
    let status = match r.status {
        ffi::MV8_COMPLETED => Status::Completed,
        ffi::MV8_FAILED => Status::Failed,
        ffi::MV8_TIMED_OUT => Status::TimedOut,
        ffi::MV8_CANCELLED => Status::Cancelled,
        ffi::MV8_SUSPENDED => Status::Suspended,
        ffi::MV8_CLOSED => {
            let msg = borrowed_cstr(r.error_message).unwrap_or_else(|| "closed".into());
            return Err(EngineError::Closed(msg));
        }
        _ => {
            let msg = borrowed_cstr(r.error_message).unwrap_or_else(|| "unknown".into());
            return Err(EngineError::Internal(msg));
        }
    };
    let result = if r.result.is_null() {
        None
    } else {
        let bytes = std::slice::from_raw_parts(r.result as *const u8, r.result_len);
        Some(String::from_utf8_lossy(bytes).into_owned())
    };
    let error = if matches!(status, Status::Completed | Status::Suspended) {
        None
    } else {
        let message = borrowed_cstr(r.error_message).unwrap_or_default();
        Some(JsError {
            name: borrowed_cstr(r.error_name),
            stack: borrowed_cstr(r.error_stack).unwrap_or_else(|| message.clone()),
            message,
            line: (r.error_line > 0).then_some(r.error_line as u32),
            column: (r.error_column > 0).then_some(r.error_column as u32),
        })
    };
    let snapshot = if r.snapshot.is_null() {
        None
    } else {
        let raw = std::slice::from_raw_parts(r.snapshot, r.snapshot_len);
        Some(envelope::seal(raw, v8_version()))
    };
    Ok(Outcome {
        status,
        result,
        error,
        heap_limit_exceeded: r.heap_limit_exceeded != 0,
        syntax_error: r.syntax_error != 0,
        console: sink.lines,
        console_dropped: sink.dropped,
        snapshot,
        duration: started.elapsed(),
        heap_used_bytes: r.heap_used_bytes,
        external_peak_bytes: r.external_bytes,
        buffers: (0..r.n_buffers)
            .map(|i| {
                let b = &*r.buffers.add(i);
                std::slice::from_raw_parts(b.data, b.len).to_vec()
            })
            .collect(),
        phases: phases_of(&r.phases),
    })
}
