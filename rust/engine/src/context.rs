//! Live contexts: one isolate whose globals persist across runs (`cpp/live_context.h`).
//! Each context does its V8 work on a thread of its own; calls from any thread are
//! serialised by the shim. Values cross as JSON text with byte strings beside it.

use std::ffi::c_void;
use std::os::raw::{c_char, c_int};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::console::ConsoleSink;
use crate::engine::{initialize, run_in_shim, IsolateOptions, RunOptions, Script};
use crate::envelope::Sealed;
use crate::error::EngineError;
use crate::fetch::{self, Fetcher, FETCH};
use crate::ffi::{self, take_cstr};
use crate::host_calls::{bytes_views, on_host_call, Dispatch, HostCall, Replies};
use crate::outcome::{Outcome, Response};

/// How a live context is made: its isolate as an execution's (`isolate.snapshot`: the context
/// can take snapshots), and where the calls of its exposed functions go. `fetch_to_dispatch`:
/// the calls of `fetch` go to `dispatch` too (named [`FETCH`]), for a process that makes no
/// request itself and relays them (answered as a fetch relay's are); without it they go to
/// the isolate's fetch policy, refused when it has none.
#[derive(Default)]
pub struct ContextOptions<'a> {
    pub isolate: IsolateOptions<'a>,
    pub dispatch: Option<Dispatch>,
    pub fetch_to_dispatch: bool,
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
        let mut blob = Vec::new();
        let restores = opts.isolate.unseal_heap(&mut blob)?;
        // Calls out: fetch goes to the context's Fetcher, everything else to `dispatch`.
        let fetcher: Arc<OnceLock<Fetcher>> = Arc::new(OnceLock::new());
        let replies_of_fetch: Arc<OnceLock<Arc<Replies>>> = Arc::new(OnceLock::new());
        let user = opts.dispatch;
        let fetch_to_dispatch = opts.fetch_to_dispatch && user.is_some();
        let routed = {
            let fetcher = fetcher.clone();
            let replies = replies_of_fetch.clone();
            Box::new(move |call: HostCall<'_>| {
                if call.name == FETCH && !fetch_to_dispatch {
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
            isolate: opts.isolate.raw(restores.then_some(blob.as_slice())),
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
        if let Some(policy) = opts.isolate.fetch {
            let _ = live
                .fetcher
                .set(Fetcher::new(policy.clone(), replies.clone()));
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
        let script = match Script::prepare(code, &opts, started) {
            Ok(script) => script,
            Err(refused) => return Ok(*refused),
        };
        let outcome = self.request(
            ffi::MV8_RUN_SCRIPT,
            script.code.as_bytes(),
            Some(&script.name),
            "",
            &[],
            opts,
            started,
        );
        script.with_transpile(outcome)
    }

    /// Calls the function at the dotted `path` with the arguments of `args_json` (a JSON
    /// array, byte strings as markers naming `buffers`); promises are awaited. The options'
    /// language and filename do not apply.
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
            None,
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
        name: Option<&std::ffi::CString>,
        args_json: &str,
        buffers: &[&[u8]],
        opts: RunOptions<'_>,
        started: Instant,
    ) -> Result<Outcome, EngineError> {
        let views = bytes_views(buffers);
        run_in_shim(opts, name, self.fetcher.get(), started, |run, response| {
            let request = ffi::mv8_context_request {
                kind,
                code: code.as_ptr() as *const c_char,
                code_len: code.len(),
                args_json: args_json.as_ptr() as *const c_char,
                args_len: args_json.len(),
                buffers: views.as_ptr(),
                n_buffers: views.len(),
                run,
            };
            unsafe { ffi::mv8_context_run(self.raw, &request, response) };
        })
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
