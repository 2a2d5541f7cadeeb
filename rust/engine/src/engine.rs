//! The safe Rust layer over the shim: one call runs one execution in a fresh isolate.

use std::ffi::{c_void, CStr, CString};
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::context::{on_host_call, Dispatch, HostCall, Replies};
use crate::envelope::{self, EnvelopeError, Sealed};
use crate::fetch::{FetchPolicy, Fetcher};
use crate::ffi;
use crate::source::{self, Language};

/// How an execution ended. The cause is this flag, never a parsed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Completed,
    Failed,
    TimedOut,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Cancelled => "cancelled",
        }
    }
}

/// Console levels, with the marker used when lines are rendered as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Log,
    Info,
    Warn,
    Error,
    Debug,
    Trace,
}

impl Level {
    fn from_raw(level: c_int) -> Level {
        match level {
            1 => Level::Info,
            2 => Level::Warn,
            3 => Level::Error,
            4 => Level::Debug,
            5 => Level::Trace,
            _ => Level::Log,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Log => "log",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    /// The prefix a line of this level carries in rendered output: none for `log`,
    /// `[info] `, `[warn] `, `[error] `, `[debug] `, `[trace] ` for the others.
    pub fn marker(self) -> &'static str {
        match self {
            Level::Log => "",
            Level::Info => "[info] ",
            Level::Warn => "[warn] ",
            Level::Error => "[error] ",
            Level::Debug => "[debug] ",
            Level::Trace => "[trace] ",
        }
    }
}

/// One console call. `text` may hold several lines (an inspected object, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    pub level: Level,
    pub text: String,
}

impl ConsoleLine {
    /// The line as it appears in rendered output: level marker, text, newline.
    pub fn render(&self) -> String {
        format!("{}{}\n", self.level.marker(), self.text)
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
    /// Byte strings the result's markers name (live contexts asked for them; else empty).
    pub buffers: Vec<Vec<u8>>,
}

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

/// Console bytes an outcome keeps unless told otherwise.
pub const DEFAULT_CONSOLE_LIMIT_BYTES: usize = 16 << 20;

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

/// Errors that prevent an execution from starting at all.
#[derive(Debug)]
pub enum EngineError {
    Init(String),
    Snapshot(EnvelopeError),
    Internal(String),
    /// A live context that is closed (a run went over its heap cap, or it was closed).
    Closed(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Init(m) => write!(f, "V8 initialisation failed: {m}"),
            EngineError::Snapshot(e) => write!(f, "{e}"),
            EngineError::Internal(m) => write!(f, "engine error: {m}"),
            EngineError::Closed(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// Initialises V8 (once per process; later calls return the first result).
pub fn initialize() -> Result<(), EngineError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| unsafe {
        crate::web::install();
        let mut err: *mut c_char = std::ptr::null_mut();
        if ffi::mv8_initialize(&mut err) == 0 {
            Ok(())
        } else {
            let msg = take_cstr(err).unwrap_or_else(|| "unknown error".into());
            Err(msg)
        }
    })
    .clone()
    .map_err(EngineError::Init)
}

/// The V8 version string, e.g. `10.2.154.26-node.28`.
pub fn v8_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| unsafe {
        CStr::from_ptr(ffi::mv8_v8_version())
            .to_string_lossy()
            .into_owned()
    })
}

pub(crate) unsafe fn take_cstr(p: *mut c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
    libc_free(p as *mut c_void);
    Some(s)
}

extern "C" {
    #[link_name = "free"]
    fn libc_free(p: *mut c_void);
}

unsafe fn borrowed_cstr(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        Some(CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

pub(crate) struct ConsoleSink<'a> {
    lines: Vec<ConsoleLine>,
    bytes: usize,
    /// 0: no limit.
    limit: usize,
    keep: bool,
    dropped: u64,
    callback: Option<&'a mut dyn FnMut(&ConsoleLine)>,
}

impl<'a> ConsoleSink<'a> {
    pub(crate) fn new(
        limit: usize,
        keep: bool,
        callback: Option<&'a mut dyn FnMut(&ConsoleLine)>,
    ) -> Self {
        ConsoleSink {
            lines: Vec::new(),
            bytes: 0,
            limit,
            keep,
            dropped: 0,
            callback,
        }
    }
}

pub(crate) unsafe extern "C" fn on_console(
    user_data: *mut c_void,
    level: c_int,
    text: *const c_char,
    len: usize,
) {
    let sink = &mut *(user_data as *mut ConsoleSink);
    let bytes = std::slice::from_raw_parts(text as *const u8, len);
    let line = ConsoleLine {
        level: Level::from_raw(level),
        text: String::from_utf8_lossy(bytes).into_owned(),
    };
    // A panicking callback must not unwind into C++.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if let Some(cb) = sink.callback.as_mut() {
            cb(&line);
        }
    }));
    if sink.keep && (sink.limit == 0 || sink.bytes + len <= sink.limit) {
        sink.bytes += len;
        sink.lines.push(line);
    } else {
        sink.dropped += 1;
    }
}

pub(crate) fn source_failure(
    err: source::SourceError,
    filename: &str,
    started: Instant,
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
    let mut response: ffi::mv8_response = unsafe { std::mem::zeroed() };
    unsafe { ffi::mv8_execute(&request, &mut response) };
    if let Some(fetcher) = &fetcher {
        fetcher.end_run(); // its requests still in flight stop
    }
    let outcome = unsafe { convert(&response, sink, started) };
    unsafe { ffi::mv8_response_free(&mut response) };
    outcome
}

pub(crate) unsafe fn convert(
    r: &ffi::mv8_response,
    sink: ConsoleSink,
    started: Instant,
) -> Result<Outcome, EngineError> {
    let status = match r.status {
        ffi::MV8_COMPLETED => Status::Completed,
        ffi::MV8_FAILED => Status::Failed,
        ffi::MV8_TIMED_OUT => Status::TimedOut,
        ffi::MV8_CANCELLED => Status::Cancelled,
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
    let error = if status == Status::Completed {
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
    })
}
