//! The safe Rust layer over the shim: the execution spec ([`Options`]: the isolate, the run),
//! and [`execute`], which runs one execution in a fresh isolate: one made when it starts, or
//! the one [`prepare`] made ahead of it on the same thread. Live contexts (`context.rs`) take
//! the same spec apart: the isolate when they are made, the run each time.

use std::ffi::{c_void, CString};
use std::os::raw::{c_char, c_int};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::console::DEFAULT_CONSOLE_LIMIT_BYTES;
use crate::console::{on_console, ConsoleLine, ConsoleSink};
use crate::envelope;
use crate::error::EngineError;
use crate::fetch::{self, FetchPolicy, Fetcher};
use crate::ffi;
use crate::host_calls::{on_host_call, Dispatch, HostCall, Replies};
use crate::outcome::{monotonic_ns, source_failure, Outcome, Phase, Response};
use crate::prepared;
use crate::source::{self, Language};
use crate::tools::{self, TOOL};
pub use crate::v8_process::{initialize, jitless, set_jitless, v8_version};

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

/// The execution spec: everything about one execution except the code. A live context takes
/// the same parts apart: [`IsolateOptions`] when it is made (`ContextOptions`), [`RunOptions`]
/// for each run.
#[derive(Default)]
pub struct Options<'a> {
    pub isolate: IsolateOptions<'a>,
    pub run: RunOptions<'a>,
    /// Where the calls of `fetch` go instead of a [`Fetcher`] of the execution's own (then
    /// `isolate.fetch` is not used): a worker process that makes no connection hands them to
    /// the server that runs it.
    pub fetch_relay: Option<Relay>,
    /// Where the calls of `tools.<server>.<tool>()` / `mcp.callTool()` go (`crate::tools`);
    /// `None`: they are refused. With a `fetch_relay` too, both share one inbox (`replies`).
    pub tool_relay: Option<Relay>,
}

/// The calls of an execution's `fetch` (or of its tools), handed on: `dispatch` receives each one on the
/// executing thread (it must not block on the run), and its answer is posted to `replies`
/// from any thread. An answer posted after the run ended is dropped.
pub struct Relay {
    pub dispatch: Dispatch,
    pub replies: Arc<Replies>,
}

/// The isolate code runs in: the heap it starts from, whether it makes snapshots, how far its
/// heap may grow and what `fetch` may reach.
#[derive(Default)]
pub struct IsolateOptions<'a> {
    /// Envelope of the heap snapshot to start from; `None` starts from the base context.
    pub heap: Option<&'a [u8]>,
    /// A `SnapshotCreator` isolate (no WebAssembly there): an execution returns a new
    /// snapshot, a live context can take them.
    pub snapshot: bool,
    /// V8 heap cap; off-heap ArrayBuffer bytes get a budget of the same size. 0 = none.
    pub heap_limit_bytes: u64,
    /// `fetch` for the allowed origins; `None`: fetch rejects (it is off).
    pub fetch: Option<&'a FetchPolicy>,
}

/// What one run of code is held to: a one-shot execution, or one run (or call) in a live
/// context.
pub struct RunOptions<'a> {
    pub timeout: Option<Duration>,
    /// JavaScript, TypeScript (types stripped keeping positions) or Auto (the default).
    pub language: Language,
    /// Name of the script in stack traces ([`DEFAULT_FILENAME`] when empty).
    pub filename: String,
    /// Largest JSON result accepted (0 = unlimited); a larger one fails the run.
    pub max_result_bytes: u64,
    /// Console bytes kept in the outcome (0 = no limit, as for every limit); later calls
    /// are counted and dropped (the live callback still sees them).
    pub console_limit_bytes: usize,
    /// Whether the outcome keeps console calls at all (a caller that streams them through
    /// `on_console` may not need them twice).
    pub keep_console: bool,
    /// ArrayBuffers and their views in the result come back as byte strings
    /// ([`Outcome::buffers`], named by markers in the JSON).
    pub bytes_result: bool,
    pub control: Option<&'a Control>,
    /// Called on the executing thread for every console call, while the script runs.
    pub on_console: Option<&'a mut dyn FnMut(&ConsoleLine)>,
}

/// The script's name in stack traces unless one is given.
pub const DEFAULT_FILENAME: &str = "<input>";

impl Default for RunOptions<'_> {
    fn default() -> Self {
        RunOptions {
            timeout: None,
            language: Language::Auto,
            filename: String::new(),
            max_result_bytes: 0,
            console_limit_bytes: DEFAULT_CONSOLE_LIMIT_BYTES,
            keep_console: true,
            bytes_result: false,
            control: None,
            on_console: None,
        }
    }
}

impl IsolateOptions<'_> {
    /// Opens the envelope of `heap` into `buffer` (checked before V8 sees it); whether there
    /// is a heap to restore.
    pub(crate) fn unseal_heap(&self, buffer: &mut Vec<u8>) -> Result<bool, EngineError> {
        match self.heap {
            Some(envelope) => envelope::unseal_into(envelope, v8_version(), buffer)
                .map(|()| true)
                .map_err(EngineError::Snapshot),
            None => Ok(false),
        }
    }

    /// The shim's form, starting from the raw blob `heap` unsealed to (`None`: no heap).
    pub(crate) fn raw(&self, blob: Option<&[u8]>) -> ffi::mv8_isolate_options {
        ffi::mv8_isolate_options {
            snapshot: blob.map_or(std::ptr::null(), |b| b.as_ptr()),
            snapshot_len: blob.map_or(0, |b| b.len()),
            snapshots: self.snapshot as c_int,
            heap_limit_bytes: self.heap_limit_bytes,
        }
    }
}

/// A script ready for the shim: the source prepared (`source::prepare`) and its name.
pub(crate) struct Script {
    pub(crate) code: String,
    pub(crate) name: CString,
    /// How long preparing it took: the outcome's first phase.
    pub(crate) transpile: Phase,
}

impl Script {
    /// `Err`: the outcome of a source that does not compile, which never reaches V8.
    pub(crate) fn prepare(
        code: &str,
        run: &RunOptions,
        started: Instant,
    ) -> Result<Script, Box<Outcome>> {
        let name = if run.filename.is_empty() {
            DEFAULT_FILENAME.to_string()
        } else {
            run.filename.replace('\0', "")
        };
        let start_ns = monotonic_ns();
        let prepared = source::prepare(code, run.language);
        let transpile = Phase {
            name: "transpile",
            start_ns,
            end_ns: monotonic_ns(),
        };
        match prepared {
            Ok(prepared) => Ok(Script {
                code: prepared.code,
                name: CString::new(name).expect("NUL bytes were removed"),
                transpile,
            }),
            Err(e) => Err(Box::new(source_failure(e, &name, started, transpile))),
        }
    }

    /// `outcome` (of this script's run) with the phase of its preparation first.
    pub(crate) fn with_transpile(
        &self,
        outcome: Result<Outcome, EngineError>,
    ) -> Result<Outcome, EngineError> {
        outcome.map(|mut outcome| {
            outcome.phases.insert(0, self.transpile);
            outcome
        })
    }
}

/// Runs one piece of code through the shim: `call` hands the shim the run's options (`name`:
/// the script's, if any) and the response to fill. The console feeds a sink of this run; once
/// the shim returns, the fetches of the run stop and the outcome is read.
pub(crate) fn run_in_shim(
    opts: RunOptions<'_>,
    name: Option<&CString>,
    fetcher: Option<&Fetcher>,
    started: Instant,
    call: impl FnOnce(ffi::mv8_run_options, *mut ffi::mv8_response),
) -> Result<Outcome, EngineError> {
    let mut sink = ConsoleSink::new(opts.console_limit_bytes, opts.keep_console, opts.on_console);
    let run = ffi::mv8_run_options {
        filename: name.map_or(std::ptr::null(), |n| n.as_ptr()),
        timeout_secs: opts.timeout.map_or(0.0, |d| d.as_secs_f64().max(1e-6)),
        max_result_bytes: opts.max_result_bytes,
        bytes_result: opts.bytes_result as c_int,
        console: Some(on_console),
        console_user_data: &mut sink as *mut ConsoleSink as *mut c_void,
        control: opts.control.map_or(std::ptr::null_mut(), |c| c.raw),
    };
    let mut response = Response::new();
    call(run, response.as_mut_ptr());
    if let Some(fetcher) = fetcher {
        fetcher.end_run(); // its requests still in flight stop
    }
    response.outcome(sink, started)
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
pub fn execute(code: &str, opts: Options<'_>) -> Result<Outcome, EngineError> {
    let started = Instant::now();
    initialize()?;
    let Options {
        isolate,
        run,
        fetch_relay,
        tool_relay,
    } = opts;
    let mut blob = RawHeap::take();
    let restores = isolate.unseal_heap(&mut blob.0)?;
    let script = match Script::prepare(code, &run, started) {
        Ok(script) => script,
        Err(refused) => return Ok(*refused),
    };
    // fetch: the calls of this execution's fetch go to its relay, or to a Fetcher of its own.
    let (replies, fetch_dispatch, fetcher) = match (fetch_relay, isolate.fetch) {
        (Some(relay), _) => (Some(relay.replies), Some(relay.dispatch), None),
        (None, Some(policy)) => {
            let replies = Arc::new(Replies::new());
            let fetcher = Arc::new(Fetcher::new(policy.clone(), replies.clone()));
            let f = fetcher.clone();
            let dispatch = Box::new(move |call: HostCall<'_>| f.dispatch(call)) as Dispatch;
            (Some(replies), Some(dispatch), Some(fetcher))
        }
        (None, None) => (None, None, None),
    };
    let (replies, dispatch) = route(replies, fetch_dispatch, tool_relay)?;
    let raw_isolate = isolate.raw(restores.then_some(blob.0.as_slice()));
    let prepared = prepared::take_fitting(&raw_isolate); // null: none fits, the shim makes one
    let outcome = run_in_shim(
        run,
        Some(&script.name),
        fetcher.as_deref(),
        started,
        |run, response| {
            let request = ffi::mv8_request {
                code: script.code.as_ptr() as *const c_char,
                code_len: script.code.len(),
                isolate: raw_isolate,
                run,
                host_call: dispatch.as_ref().map(|_| on_host_call as _),
                host_call_user_data: dispatch.as_ref().map_or(std::ptr::null_mut(), |d| {
                    d as *const Dispatch as *mut c_void
                }),
                replies: replies.as_ref().map_or(std::ptr::null_mut(), |r| r.raw()),
            };
            unsafe { ffi::mv8_execute(prepared, &request, response) };
        },
    );
    script.with_transpile(outcome)
}

/// Makes the isolate of this thread's next execution now, while the thread is idle: the base
/// context, no snapshot, `isolate.heap_limit_bytes` (`isolate.fetch` is the execution's, not
/// the isolate's: any applies). The next [`execute`] on this thread that restores no heap,
/// makes no snapshot and has the same heap cap runs in it and does not create an isolate; any
/// other execution creates its own and leaves it for a later one. One per thread: preparing
/// again replaces it. Nothing of the run is fixed now: its clock (`performance.timeOrigin`)
/// starts when the execution does, and the process-wide WebAssembly memory cap is set then, so
/// preparing never changes the cap of an execution running on another thread.
pub fn prepare(isolate: &IsolateOptions<'_>) -> Result<(), EngineError> {
    initialize()?;
    if isolate.heap.is_some() || isolate.snapshot {
        return Err(EngineError::Internal(
            "only an isolate from the base context that makes no snapshot can be prepared".into(),
        ));
    }
    prepared::prepare(&isolate.raw(None))
}

/// The heap cap (bytes, 0: none) of the isolate this thread holds prepared ([`prepare`]), if
/// it holds one.
pub fn prepared_heap_limit() -> Option<u64> {
    prepared::held()
}

/// Disposes the isolate this thread holds prepared, if any (its memory goes back).
pub fn discard_prepared() {
    prepared::discard()
}

/// One dispatch for the calls out of an execution: tool calls to `tool_relay`, `fetch` to
/// `fetch` (each refused where it is missing), and the inbox they answer to. `None` when
/// nothing answers (the shim refuses every call).
fn route(
    replies: Option<Arc<Replies>>,
    fetch: Option<Dispatch>,
    tool_relay: Option<Relay>,
) -> Result<(Option<Arc<Replies>>, Option<Dispatch>), EngineError> {
    let (replies, tool) = match (replies, tool_relay) {
        (Some(r), Some(t)) if !Arc::ptr_eq(&r, &t.replies) => {
            return Err(EngineError::Internal(
                "the fetch relay and the tool relay must share one inbox".into(),
            ))
        }
        (_, Some(t)) => (t.replies, Some(t.dispatch)),
        (Some(r), None) => (r, None),
        (None, None) => return Ok((None, None)),
    };
    let inbox = replies.clone();
    let dispatch = Box::new(move |call: HostCall<'_>| {
        if call.name == TOOL {
            match &tool {
                Some(tool) => tool(call),
                None => tools::refuse_off(&inbox, call.id),
            }
        } else {
            match &fetch {
                Some(fetch) => fetch(call),
                None => fetch::refuse_off(&inbox, call.id),
            }
        }
    }) as Dispatch;
    Ok((Some(replies), Some(dispatch)))
}
