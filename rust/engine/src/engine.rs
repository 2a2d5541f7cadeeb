//! The safe Rust layer over the shim: one call runs one execution in a fresh isolate.

use std::ffi::{c_void, CString};
use std::os::raw::{c_char, c_int};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::console::DEFAULT_CONSOLE_LIMIT_BYTES;
use crate::console::{on_console, ConsoleLine, ConsoleSink};
use crate::envelope;
use crate::error::EngineError;
use crate::fetch::{FetchPolicy, Fetcher};
use crate::ffi;
use crate::host_calls::{on_host_call, Dispatch, HostCall, Replies};
use crate::outcome::{source_failure, Outcome, Response};
use crate::source::{self, Language};
pub use crate::v8_process::{initialize, v8_version};

/// A thread-safe handle that cancels the execution it is given to, before or while
/// it runs. Cancelling twice, or after the end, does nothing.
pub struct Control {
    pub(crate) raw: *mut ffi::mv8_control,
}

// The shim's control is a mutex-protected, reference-counted object.
unsafe impl Send for Control {}
unsafe impl Sync for Control {}

impl Control {
    pub fn new() -> Control {
        let raw = unsafe { ffi::mv8_control_new() };
        assert!(!raw.is_null(), "out of memory");
        Control { raw }
    }

    pub fn cancel(&self) {
        unsafe { ffi::mv8_control_terminate(self.raw, ffi::MV8_REASON_CANCEL) }
    }
}

impl Default for Control {
    fn default() -> Self {
        Control::new()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        unsafe { ffi::mv8_control_free(self.raw) }
    }
}

/// Everything about one execution except the code.
pub struct Options<'a> {
    /// Envelope of the heap snapshot to restore; `None` starts from a fresh context.
    pub heap: Option<&'a [u8]>,
    /// Produce a new snapshot (runs in a `SnapshotCreator`; no WebAssembly there).
    pub snapshot: bool,
    /// V8 heap cap; off-heap ArrayBuffer bytes get a budget of the same size. 0 = none.
    pub heap_limit_bytes: u64,
    pub timeout: Option<Duration>,
    /// JavaScript, TypeScript (types stripped keeping positions) or Auto (the default).
    pub language: Language,
    /// Name of the script in stack traces.
    pub filename: String,
    /// Largest JSON result accepted (0 = unlimited); a larger one fails the execution.
    pub max_result_bytes: u64,
    /// Console bytes kept in the outcome (0 = no limit, as for every limit); later calls
    /// are counted and dropped (the live callback still sees them).
    pub console_limit_bytes: usize,
    /// Whether the outcome keeps console calls at all (a caller that streams them through
    /// `on_console` may not need them twice).
    pub keep_console: bool,
    pub control: Option<&'a Control>,
    /// Called on the executing thread for every console call, while the script runs.
    pub on_console: Option<&'a mut dyn FnMut(&ConsoleLine)>,
    /// `fetch` for the allowed origins; `None`: fetch rejects (it is off).
    pub fetch: Option<&'a FetchPolicy>,
}

/// The script's name in stack traces unless one is given.
pub const DEFAULT_FILENAME: &str = "<input>";

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            heap: None,
            snapshot: false,
            heap_limit_bytes: 0,
            timeout: None,
            language: Language::Auto,
            filename: String::new(),
            max_result_bytes: 0,
            console_limit_bytes: DEFAULT_CONSOLE_LIMIT_BYTES,
            keep_console: true,
            control: None,
            on_console: None,
            fetch: None,
        }
    }
}

thread_local! {
    /// The buffer the last execution on this thread restored its heap into.
    static SPARE_RAW_HEAP: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The raw blob an execution restores, in a buffer the thread reuses: a chain of
/// executions decompresses each heap into the same memory instead of a fresh
/// blob-sized allocation every time. Taken for the whole execution (V8 reads the blob
/// while it runs; a nested execution on the same thread finds none and allocates), given
/// back on drop unless it grew beyond `envelope::MAX_KEPT_BUFFER`.
struct RawHeap(Vec<u8>);

impl RawHeap {
    fn take() -> RawHeap {
        RawHeap(SPARE_RAW_HEAP.with(|spare| spare.take()))
    }
}

impl Drop for RawHeap {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        if buffer.capacity() <= envelope::MAX_KEPT_BUFFER {
            // try_with: the thread-local may already be gone at thread exit.
            let _ = SPARE_RAW_HEAP.try_with(|spare| spare.set(buffer));
        }
    }
}

/// Runs `code` once. Errors of the script are in the outcome; `Err` means the
/// execution could not start (V8 failed to initialise, the heap envelope is invalid).
pub fn execute(code: &str, mut opts: Options<'_>) -> Result<Outcome, EngineError> {
    let started = Instant::now();
    initialize()?;
    let raw_heap = match opts.heap {
        Some(envelope) => {
            let mut raw = RawHeap::take();
            envelope::unseal_into(envelope, v8_version(), &mut raw.0)
                .map_err(EngineError::Snapshot)?;
            Some(raw)
        }
        None => None,
    };
    let filename = if opts.filename.is_empty() {
        DEFAULT_FILENAME.to_string()
    } else {
        opts.filename.replace('\0', "")
    };
    let prepared = match source::prepare(code, opts.language) {
        Ok(p) => p,
        Err(e) => return Ok(source_failure(e, &filename, started)),
    };
    let filename = CString::new(filename).expect("NUL bytes were removed");
    // fetch: the calls of this execution's fetch go to a Fetcher of its own.
    let replies = opts.fetch.map(|_| Arc::new(Replies::new()));
    let fetcher = opts
        .fetch
        .zip(replies.as_ref())
        .map(|(policy, r)| Arc::new(Fetcher::new(policy.clone(), r.clone())));
    let fetch_dispatch: Option<Dispatch> = fetcher
        .clone()
        .map(|f| Box::new(move |call: HostCall<'_>| f.dispatch(call)) as Dispatch);
    let mut sink = ConsoleSink::new(
        opts.console_limit_bytes,
        opts.keep_console,
        opts.on_console.take(),
    );
    let request = ffi::mv8_request {
        code: prepared.code.as_ptr() as *const c_char,
        code_len: prepared.code.len(),
        filename: filename.as_ptr(),
        snapshot: raw_heap.as_ref().map_or(std::ptr::null(), |b| b.0.as_ptr()),
        snapshot_len: raw_heap.as_ref().map_or(0, |b| b.0.len()),
        want_snapshot: opts.snapshot as c_int,
        heap_limit_bytes: opts.heap_limit_bytes,
        timeout_secs: opts.timeout.map_or(0.0, |d| d.as_secs_f64().max(1e-6)),
        max_result_bytes: opts.max_result_bytes,
        console: Some(on_console),
        console_user_data: &mut sink as *mut ConsoleSink as *mut c_void,
        control: opts.control.map_or(std::ptr::null_mut(), |c| c.raw),
        host_call: fetch_dispatch.as_ref().map(|_| on_host_call as _),
        host_call_user_data: fetch_dispatch.as_ref().map_or(std::ptr::null_mut(), |d| {
            d as *const Dispatch as *mut c_void
        }),
        replies: replies.as_ref().map_or(std::ptr::null_mut(), |r| r.raw()),
    };
    let mut response = Response::new();
    unsafe { ffi::mv8_execute(&request, response.as_mut_ptr()) };
    if let Some(fetcher) = &fetcher {
        fetcher.end_run(); // its requests still in flight stop
    }
    response.outcome(sink, started)
}
