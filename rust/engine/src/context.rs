//! Live contexts: one isolate whose globals persist across runs (`cpp/live_context.h`).
//! Each context does its V8 work on a thread of its own; calls from any thread are
//! serialised by the shim. Values cross as JSON text with byte strings beside it.

use std::ffi::{c_void, CString};
use std::os::raw::{c_char, c_int};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::console::{on_console, ConsoleLine, ConsoleSink, DEFAULT_CONSOLE_LIMIT_BYTES};
use crate::engine::{self, initialize, v8_version, Control};
use crate::envelope::{self, Sealed};
use crate::error::EngineError;
use crate::fetch::{self, FetchPolicy, Fetcher, FETCH};
use crate::ffi::{self, take_cstr};
use crate::host_calls::{bytes_views, on_host_call, Dispatch, HostCall, Replies};
use crate::outcome::{source_failure, Outcome, Response};
use crate::source::{self, Language};

pub struct ContextOptions<'a> {
    /// Envelope of a heap snapshot to start from; `None` starts from the base context.
    pub heap: Option<&'a [u8]>,
    /// Make the context able to take snapshots (a SnapshotCreator isolate: no WebAssembly).
    pub snapshots: bool,
    /// V8 heap cap, with an off-heap budget of the same size. 0 = none.
    pub heap_limit_bytes: u64,
    pub dispatch: Option<Dispatch>,
    /// `fetch` for the allowed origins; `None`: fetch rejects (it is off).
    pub fetch: Option<FetchPolicy>,
}

/// Everything about one run in a live context except the code.
pub struct RunOptions<'a> {
    pub timeout: Option<Duration>,
    pub language: Language,
    pub filename: String,
    pub max_result_bytes: u64,
    pub console_limit_bytes: usize,
    pub keep_console: bool,
    /// ArrayBuffers and their views in the result come back as byte strings.
    pub bytes_result: bool,
    pub control: Option<&'a Control>,
    pub on_console: Option<&'a mut dyn FnMut(&ConsoleLine)>,
}

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

pub type HeapStats = ffi::mv8_heap_stats;

pub struct LiveContext {
    raw: *mut ffi::mv8_context,
    // Read by the shim through a raw pointer for as long as the context lives.
    _dispatch: Box<Dispatch>,
    /// Answers fetch; set once the context (and so its inbox) exists.
    fetcher: Arc<OnceLock<Fetcher>>,
}

// The shim serialises every call on a context and runs them on the context's own thread.
unsafe impl Send for LiveContext {}
unsafe impl Sync for LiveContext {}

impl LiveContext {
    pub fn new(opts: ContextOptions<'_>) -> Result<LiveContext, EngineError> {
        initialize()?;
        let raw_heap = match opts.heap {
            Some(sealed) => {
                let mut raw = Vec::new();
                envelope::unseal_into(sealed, v8_version(), &mut raw)
                    .map_err(EngineError::Snapshot)?;
                Some(raw)
            }
            None => None,
        };
        // Calls out: fetch goes to the context's Fetcher, everything else to `dispatch`.
        let fetcher: Arc<OnceLock<Fetcher>> = Arc::new(OnceLock::new());
        let replies_of_fetch: Arc<OnceLock<Arc<Replies>>> = Arc::new(OnceLock::new());
        let user = opts.dispatch;
        let routed = {
            let fetcher = fetcher.clone();
            let replies = replies_of_fetch.clone();
            Box::new(move |call: HostCall<'_>| {
                if call.name == FETCH {
                    match fetcher.get() {
                        Some(f) => f.dispatch(call),
                        None => {
                            if let Some(r) = replies.get() {
                                fetch::refuse_off(r, call.id);
                            }
                        }
                    }
                } else if let Some(user) = &user {
                    user(call)
                } else if let Some(r) = replies.get() {
                    let json = r#"{"name":"TypeError","message":"no function answers this call"}"#;
                    r.post(call.id, false, json, &[]);
                }
            }) as Dispatch
        };
        let dispatch = Box::new(routed);
        let options = ffi::mv8_context_options {
            snapshot: raw_heap.as_ref().map_or(std::ptr::null(), |b| b.as_ptr()),
            snapshot_len: raw_heap.as_ref().map_or(0, |b| b.len()),
            snapshots: opts.snapshots as c_int,
            heap_limit_bytes: opts.heap_limit_bytes,
            host_call: Some(on_host_call),
            host_call_user_data: &*dispatch as *const Dispatch as *mut c_void,
        };
        let mut response = Response::new();
        let raw = unsafe { ffi::mv8_context_new(&options, response.as_mut_ptr()) };
        if raw.is_null() {
            return Err(
                match response.outcome(ConsoleSink::none(), Instant::now()) {
                    Err(e) => e,
                    Ok(_) => EngineError::Internal("the context could not be created".into()),
                },
            );
        }
        let live = LiveContext {
            raw,
            _dispatch: dispatch,
            fetcher,
        };
        let replies = Arc::new(live.replies());
        if let Some(policy) = opts.fetch {
            let _ = live.fetcher.set(Fetcher::new(policy, replies.clone()));
        }
        let _ = replies_of_fetch.set(replies);
        Ok(live)
    }

    /// A handle for answering this context's calls out, from any thread.
    pub fn replies(&self) -> Replies {
        Replies::from_raw(unsafe { ffi::mv8_context_replies(self.raw) })
    }

    /// Runs `code` as a (REPL-mode) script in the context.
    pub fn run(&self, code: &str, opts: RunOptions<'_>) -> Result<Outcome, EngineError> {
        let started = Instant::now();
        let filename = if opts.filename.is_empty() {
            engine::DEFAULT_FILENAME.to_string()
        } else {
            opts.filename.replace('\0', "")
        };
        let prepared = match source::prepare(code, opts.language) {
            Ok(p) => p,
            Err(e) => return Ok(source_failure(e, &filename, started)),
        };
        let filename = CString::new(filename).expect("NUL bytes were removed");
        self.request(
            ffi::MV8_RUN_SCRIPT,
            prepared.code.as_bytes(),
            filename.as_ptr(),
            "",
            &[],
            opts,
            started,
        )
    }

    /// Calls the function at the dotted `path` with the arguments of `args_json` (a JSON
    /// array, byte strings as markers naming `buffers`); promises are awaited.
    pub fn call(
        &self,
        path: &str,
        args_json: &str,
        buffers: &[&[u8]],
        opts: RunOptions<'_>,
    ) -> Result<Outcome, EngineError> {
        let started = Instant::now();
        self.request(
            ffi::MV8_RUN_CALL,
            path.as_bytes(),
            std::ptr::null(),
            args_json,
            buffers,
            opts,
            started,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        kind: c_int,
        code: &[u8],
        filename: *const c_char,
        args_json: &str,
        buffers: &[&[u8]],
        mut opts: RunOptions<'_>,
        started: Instant,
    ) -> Result<Outcome, EngineError> {
        let mut sink = ConsoleSink::new(
            opts.console_limit_bytes,
            opts.keep_console,
            opts.on_console.take(),
        );
        let views = bytes_views(buffers);
        let request = ffi::mv8_context_request {
            kind,
            code: code.as_ptr() as *const c_char,
            code_len: code.len(),
            filename,
            args_json: args_json.as_ptr() as *const c_char,
            args_len: args_json.len(),
            buffers: views.as_ptr(),
            n_buffers: views.len(),
            bytes_result: opts.bytes_result as c_int,
            timeout_secs: opts.timeout.map_or(0.0, |d| d.as_secs_f64().max(1e-6)),
            max_result_bytes: opts.max_result_bytes,
            console: Some(on_console),
            console_user_data: &mut sink as *mut ConsoleSink as *mut c_void,
            control: opts.control.map_or(std::ptr::null_mut(), |c| c.raw),
        };
        let mut response = Response::new();
        unsafe { ffi::mv8_context_run(self.raw, &request, response.as_mut_ptr()) };
        if let Some(fetcher) = self.fetcher.get() {
            fetcher.end_run();
        }
        response.outcome(sink, started)
    }

    /// Defines the global `name` as a function that calls out through the dispatcher.
    pub fn expose(&self, name: &str) -> Result<(), EngineError> {
        let mut err: *mut c_char = std::ptr::null_mut();
        let failed = unsafe {
            ffi::mv8_context_expose(
                self.raw,
                name.as_ptr() as *const c_char,
                name.len(),
                &mut err,
            )
        };
        if failed == 0 {
            return Ok(());
        }
        let message = unsafe { take_cstr(err) }.unwrap_or_else(|| "unknown error".into());
        Err(EngineError::Internal(message))
    }

    /// The context's heap as a sealed envelope; the context goes on from it.
    pub fn snapshot(&self) -> Result<(Sealed, u64), EngineError> {
        let mut response = Response::new();
        unsafe { ffi::mv8_context_snapshot(self.raw, response.as_mut_ptr()) };
        let outcome = response.outcome(ConsoleSink::none(), Instant::now())?;
        let heap_used = outcome.heap_used_bytes;
        outcome
            .snapshot
            .map(|s| (s, heap_used))
            .ok_or_else(|| EngineError::Internal("no snapshot was made".into()))
    }

    /// Whether a run went over the heap cap (the context is then closed for good).
    pub fn is_closed(&self) -> bool {
        unsafe { ffi::mv8_context_closed(self.raw) != 0 }
    }

    pub fn heap_stats(&self) -> Option<HeapStats> {
        let mut stats = HeapStats::default();
        let status = unsafe { ffi::mv8_context_heap_stats(self.raw, &mut stats) };
        (status == ffi::MV8_COMPLETED).then_some(stats)
    }
}

impl Drop for LiveContext {
    fn drop(&mut self) {
        unsafe { ffi::mv8_context_free(self.raw) }
    }
}
