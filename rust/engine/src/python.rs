//! The PyO3 boundary: `mcp_v8._engine`. Everything Python-facing lives here; the
//! executing thread releases the GIL for the whole run and takes it back only to call
//! the console callback.

use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::console::ConsoleLine;
use crate::context;
use crate::engine;
use crate::envelope;
use crate::error::EngineError;
use crate::fetch;
use crate::host_calls::{Dispatch, HostCall, Replies};
use crate::outcome::{Outcome, Status};
use crate::sandbox;
use crate::source::Language;

/// Cancellation handle: pass it to `execute(control=...)`, call `cancel()` from any
/// thread, before or while the execution runs.
#[pyclass(module = "mcp_v8._engine", name = "Control", frozen)]
struct PyControl {
    inner: engine::Control,
}

#[pymethods]
impl PyControl {
    #[new]
    fn new() -> Self {
        PyControl {
            inner: engine::Control::new(),
        }
    }

    /// Terminates the execution; it ends with status "cancelled".
    fn cancel(&self) {
        self.inner.cancel()
    }
}

/// The outcome of one execution (immutable).
#[pyclass(module = "mcp_v8._engine", name = "Outcome", frozen)]
struct PyOutcome {
    inner: Outcome,
}

#[pymethods]
impl PyOutcome {
    /// "completed", "failed", "timed_out" or "cancelled".
    #[getter]
    fn status(&self) -> &'static str {
        self.inner.status.as_str()
    }
    #[getter]
    fn completed(&self) -> bool {
        self.inner.status == Status::Completed
    }
    #[getter]
    fn failed(&self) -> bool {
        self.inner.status == Status::Failed
    }
    #[getter]
    fn timed_out(&self) -> bool {
        self.inner.status == Status::TimedOut
    }
    #[getter]
    fn cancelled(&self) -> bool {
        self.inner.status == Status::Cancelled
    }
    #[getter]
    fn heap_limit_exceeded(&self) -> bool {
        self.inner.heap_limit_exceeded
    }
    /// The source did not compile (TypeScript or JavaScript syntax, nesting too deep). A
    /// `SyntaxError` thrown while the script runs (`JSON.parse`, `eval`) is not one.
    #[getter]
    fn syntax_error(&self) -> bool {
        self.inner.syntax_error
    }
    /// JSON text of the completion value, or None unless completed.
    #[getter]
    fn result(&self) -> Option<&str> {
        self.inner.result.as_deref()
    }
    /// Human-readable error: the stack when there is one, else "Name: message".
    #[getter]
    fn error(&self) -> Option<&str> {
        self.inner.error.as_ref().map(|e| e.stack.as_str())
    }
    #[getter]
    fn error_name(&self) -> Option<&str> {
        self.inner.error.as_ref().and_then(|e| e.name.as_deref())
    }
    #[getter]
    fn error_message(&self) -> Option<&str> {
        self.inner.error.as_ref().map(|e| e.message.as_str())
    }
    #[getter]
    fn error_line(&self) -> Option<u32> {
        self.inner.error.as_ref().and_then(|e| e.line)
    }
    #[getter]
    fn error_column(&self) -> Option<u32> {
        self.inner.error.as_ref().and_then(|e| e.column)
    }
    /// Console calls as (level, text) tuples, in order.
    #[getter]
    fn console<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items: Vec<Bound<'py, PyTuple>> = self
            .inner
            .console
            .iter()
            .map(|l| PyTuple::new(py, [l.level.as_str(), l.text.as_str()]))
            .collect::<PyResult<_>>()?;
        PyList::new(py, items)
    }
    /// Console output as text: one entry per call, level marker for non-log levels.
    #[getter]
    fn output(&self) -> String {
        self.inner.console.iter().map(|l| l.render()).collect()
    }
    /// Byte strings the result's markers name (live contexts, bytes_result=True).
    #[getter]
    fn buffers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.inner.buffers.iter().map(|b| PyBytes::new(py, b)))
    }
    /// Console calls dropped because console_limit_bytes was reached.
    #[getter]
    fn console_dropped(&self) -> u64 {
        self.inner.console_dropped
    }
    /// Envelope bytes of the new heap snapshot (snapshot=True and completed).
    #[getter]
    fn snapshot<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.inner
            .snapshot
            .as_ref()
            .map(|s| PyBytes::new(py, &s.envelope))
    }
    /// Key of the new snapshot: lowercase hex SHA-256 of its payload.
    #[getter]
    fn heap_key(&self) -> Option<&str> {
        self.inner.snapshot.as_ref().map(|s| s.key.as_str())
    }
    /// Size of the raw V8 blob before compression.
    #[getter]
    fn snapshot_raw_bytes(&self) -> Option<usize> {
        self.inner.snapshot.as_ref().map(|s| s.raw_len)
    }
    #[getter]
    fn duration_ms(&self) -> f64 {
        self.inner.duration.as_secs_f64() * 1000.0
    }
    #[getter]
    fn heap_used_bytes(&self) -> u64 {
        self.inner.heap_used_bytes
    }
    #[getter]
    fn external_peak_bytes(&self) -> u64 {
        self.inner.external_peak_bytes
    }

    /// Raises the mcp_v8.errors exception matching this outcome; returns None when
    /// it completed.
    fn raise_for_error(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let errors = registered(py)?;
        errors.raise_for.bind(py).call1((slf,))?;
        Ok(())
    }

    fn __repr__(&self) -> String {
        match (&self.inner.result, &self.inner.error) {
            (Some(r), _) => format!("<Outcome completed result={}>", truncate(r, 60)),
            (_, Some(e)) => format!(
                "<Outcome {} error={:?}>",
                self.inner.status.as_str(),
                truncate(&e.message, 60)
            ),
            _ => format!("<Outcome {}>", self.inner.status.as_str()),
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The exception classes of `mcp_v8.errors`, handed over by that module when it loads
/// (this module never imports the package).
struct Errors {
    raise_for: Py<PyAny>,
    snapshot_error: Py<PyAny>,
    engine_error: Py<PyAny>,
    closed_error: Py<PyAny>,
}

static ERRORS: PyOnceLock<Errors> = PyOnceLock::new();

fn registered(py: Python<'_>) -> PyResult<&Errors> {
    ERRORS
        .get(py)
        .ok_or_else(|| PyRuntimeError::new_err("mcp_v8.errors has not registered its exceptions"))
}

/// Called once by `mcp_v8.errors`: the function that raises for an outcome, and the
/// classes of refused snapshots, engine failures and closed live contexts.
#[pyfunction]
fn _register_errors(
    py: Python<'_>,
    raise_for: Py<PyAny>,
    snapshot_error: Py<PyAny>,
    engine_error: Py<PyAny>,
    closed_error: Py<PyAny>,
) {
    let _ = ERRORS.set(
        py,
        Errors {
            raise_for,
            snapshot_error,
            engine_error,
            closed_error,
        },
    );
}

fn to_pyerr(py: Python<'_>, err: EngineError) -> PyErr {
    let message = err.to_string();
    let Ok(errors) = registered(py) else {
        return match err {
            EngineError::Snapshot(_) => PyValueError::new_err(message),
            _ => PyRuntimeError::new_err(message),
        };
    };
    let class = match err {
        EngineError::Snapshot(_) => &errors.snapshot_error,
        EngineError::Init(_) | EngineError::Internal(_) => &errors.engine_error,
        EngineError::Closed(_) => &errors.closed_error,
    };
    match class.bind(py).call1((message,)) {
        Ok(instance) => PyErr::from_value(instance),
        Err(e) => e,
    }
}

fn parse_language(language: &str) -> PyResult<Language> {
    match language {
        "javascript" | "js" => Ok(Language::JavaScript),
        "typescript" | "ts" => Ok(Language::TypeScript),
        "auto" => Ok(Language::Auto),
        other => Err(PyValueError::new_err(format!(
            "language must be 'auto', 'javascript' or 'typescript', not {other:?}"
        ))),
    }
}

fn parse_heap_limit(heap_limit_mb: Option<u64>) -> PyResult<u64> {
    match heap_limit_mb {
        Some(mb) if mb == 0 || mb > 1 << 20 => Err(PyValueError::new_err(
            "heap_limit_mb must be between 1 and 1048576",
        )),
        Some(mb) => Ok(mb << 20),
        None => Ok(0),
    }
}

fn parse_timeout(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t > 0.0 && t < 1e9 => Ok(Some(Duration::from_secs_f64(t))),
        Some(_) => Err(PyValueError::new_err(
            "timeout must be a positive number of seconds",
        )),
    }
}

/// The fetch policy of `allow_fetch` (None or empty: fetch is off).
fn parse_fetch(
    allow_fetch: Option<Vec<String>>,
    max_fetch_bytes: u64,
    max_fetch_requests: u32,
) -> PyResult<Option<fetch::FetchPolicy>> {
    match allow_fetch {
        None => Ok(None),
        Some(origins) if origins.is_empty() => Ok(None),
        Some(origins) => fetch::FetchPolicy::new(&origins, max_fetch_bytes, max_fetch_requests)
            .map(Some)
            .map_err(PyValueError::new_err),
    }
}

fn check_callable(py: Python<'_>, what: &str, callback: &Option<Py<PyAny>>) -> PyResult<()> {
    match callback {
        Some(cb) if !cb.bind(py).is_callable() => {
            Err(PyTypeError::new_err(format!("{what} must be callable")))
        }
        _ => Ok(()),
    }
}

/// Calls `on_console(level, text)` with the GIL, from whichever thread runs the script.
fn console_forwarder(on_console: &Option<Py<PyAny>>) -> impl FnMut(&ConsoleLine) + '_ {
    move |line: &ConsoleLine| {
        if let Some(cb) = on_console {
            Python::attach(|py| {
                if let Err(e) = cb.call1(py, (line.level.as_str(), line.text.as_str())) {
                    e.write_unraisable(py, Some(cb.bind(py)));
                }
            });
        }
    }
}

/// Runs `code` in a fresh V8 isolate and returns its Outcome. See mcp_v8.Engine.
#[pyfunction]
#[pyo3(signature = (
    code, *, heap=None, snapshot=false, heap_limit_mb=None, timeout=None,
    language="auto", filename=None, max_result_bytes=0,
    console_limit_bytes=engine::DEFAULT_CONSOLE_LIMIT_BYTES, keep_console=true,
    on_console=None, control=None, allow_fetch=None,
    max_fetch_bytes=fetch::DEFAULT_MAX_BYTES, max_fetch_requests=fetch::DEFAULT_MAX_REQUESTS,
    fetch_relay=None, tool_relay=None
))]
#[allow(clippy::too_many_arguments)]
fn execute(
    py: Python<'_>,
    code: &str,
    heap: Option<&[u8]>,
    snapshot: bool,
    heap_limit_mb: Option<u64>,
    timeout: Option<f64>,
    language: &str,
    filename: Option<&str>,
    max_result_bytes: u64,
    console_limit_bytes: usize,
    keep_console: bool,
    on_console: Option<Py<PyAny>>,
    control: Option<Py<PyControl>>,
    allow_fetch: Option<Vec<String>>,
    max_fetch_bytes: u64,
    max_fetch_requests: u32,
    fetch_relay: Option<Py<PyFetchRelay>>,
    tool_relay: Option<Py<PyToolRelay>>,
) -> PyResult<PyOutcome> {
    let language = parse_language(language)?;
    let heap_limit_bytes = parse_heap_limit(heap_limit_mb)?;
    let fetch_policy = parse_fetch(allow_fetch, max_fetch_bytes, max_fetch_requests)?;
    let timeout = parse_timeout(timeout)?;
    check_callable(py, "on_console", &on_console)?;
    let heap = heap.map(|h| h.to_vec());
    let filename = filename.unwrap_or(engine::DEFAULT_FILENAME).to_string();
    let code = code.to_string();
    let control_ref = control.as_ref().map(|c| c.get());
    // Attached for this execution only: a reply after it ends is dropped.
    // Both relays answer into one inbox.
    let inbox = Arc::new(Replies::new());
    let attached = fetch_relay
        .as_ref()
        .map(|r| r.get().slot.attach(&inbox, "fetch"))
        .transpose()?;
    let attached_tools = tool_relay
        .as_ref()
        .map(|r| r.get().slot.attach(&inbox, "tool"))
        .transpose()?;
    let outcome = py.detach(|| {
        let mut forward = console_forwarder(&on_console);
        let opts = engine::Options {
            isolate: engine::IsolateOptions {
                heap: heap.as_deref(),
                snapshot,
                heap_limit_bytes,
                fetch: fetch_policy.as_ref(),
            },
            run: engine::RunOptions {
                timeout,
                language,
                filename,
                max_result_bytes,
                console_limit_bytes,
                keep_console,
                bytes_result: false,
                control: control_ref.map(|c| &c.inner),
                on_console: if on_console.is_some() {
                    Some(&mut forward)
                } else {
                    None
                },
            },
            fetch_relay: fetch_relay
                .as_ref()
                .zip(attached.as_ref())
                .map(|(relay, replies)| relay.get().relay(replies.0.clone())),
            tool_relay: tool_relay
                .as_ref()
                .zip(attached_tools.as_ref())
                .map(|(relay, replies)| relay.get().relay(replies.0.clone())),
        };
        engine::execute(&code, opts)
    });
    drop(attached);
    drop(attached_tools);
    outcome
        .map(|inner| PyOutcome { inner })
        .map_err(|e| to_pyerr(py, e))
}

/// A live context: one isolate whose globals persist across runs. mcp_v8.Context wraps it;
/// see there. Every method releases the GIL while V8 works; calls are serialised.
#[pyclass(module = "mcp_v8._engine", name = "LiveContext", frozen)]
struct PyLiveContext {
    /// `None` once closed. Runs hold it shared; `close` waits for them.
    inner: RwLock<Option<context::LiveContext>>,
    replies: Arc<Replies>,
}

impl PyLiveContext {
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&context::LiveContext) -> Result<T, EngineError> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let guard = self.inner.read().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some(live) => f(live),
                None => Err(EngineError::Closed("the context is closed".into())),
            }
        })
        .map_err(|e| to_pyerr(py, e))
    }
}

/// Posts the error of a dispatcher that raised, so that the JS promise rejects.
fn post_python_error(py: Python<'_>, replies: &Replies, call_id: u64, err: &PyErr) {
    let name = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Error".into());
    let message = err.value(py).to_string();
    let json = format!(
        "{{\"name\":{},\"message\":{}}}",
        json_string(&name),
        json_string(&message)
    );
    replies.post(call_id, false, &json, &[]);
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[pymethods]
impl PyLiveContext {
    /// `dispatch(call_id, name, args_json, buffers)` receives the calls of exposed
    /// functions on the context's thread; it must hand them on and return at once, and
    /// answer later through `reply`. When it raises, the JS promise is rejected.
    #[new]
    #[pyo3(signature = (
        *, heap=None, snapshots=false, heap_limit_mb=None, dispatch=None, allow_fetch=None,
        max_fetch_bytes=fetch::DEFAULT_MAX_BYTES, max_fetch_requests=fetch::DEFAULT_MAX_REQUESTS
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        heap: Option<&[u8]>,
        snapshots: bool,
        heap_limit_mb: Option<u64>,
        dispatch: Option<Py<PyAny>>,
        allow_fetch: Option<Vec<String>>,
        max_fetch_bytes: u64,
        max_fetch_requests: u32,
    ) -> PyResult<Self> {
        let heap_limit_bytes = parse_heap_limit(heap_limit_mb)?;
        let fetch_policy = parse_fetch(allow_fetch, max_fetch_bytes, max_fetch_requests)?;
        check_callable(py, "dispatch", &dispatch)?;
        let replies_slot: Arc<OnceLock<Arc<Replies>>> = Arc::new(OnceLock::new());
        let dispatch: Option<Dispatch> = dispatch.map(|callback| {
            let slot = replies_slot.clone();
            Box::new(move |call: HostCall<'_>| {
                Python::attach(|py| {
                    let buffers: Vec<Bound<'_, PyBytes>> =
                        call.buffers.iter().map(|b| PyBytes::new(py, b)).collect();
                    if let Err(err) =
                        callback.call1(py, (call.id, call.name, call.args_json, buffers))
                    {
                        if let Some(replies) = slot.get() {
                            post_python_error(py, replies, call.id, &err);
                        }
                    }
                })
            }) as Dispatch
        });
        let heap = heap.map(|h| h.to_vec());
        let live = py
            .detach(|| {
                context::LiveContext::new(context::ContextOptions {
                    isolate: engine::IsolateOptions {
                        heap: heap.as_deref(),
                        snapshot: snapshots,
                        heap_limit_bytes,
                        fetch: fetch_policy.as_ref(),
                    },
                    dispatch,
                })
            })
            .map_err(|e| to_pyerr(py, e))?;
        let replies = Arc::new(live.replies());
        let _ = replies_slot.set(replies.clone());
        Ok(PyLiveContext {
            inner: RwLock::new(Some(live)),
            replies,
        })
    }

    /// Runs `code` as a script in the context; returns its Outcome.
    #[pyo3(signature = (
        code, *, timeout=None, language="auto", filename=None, max_result_bytes=0,
        console_limit_bytes=engine::DEFAULT_CONSOLE_LIMIT_BYTES, keep_console=true,
        bytes_result=false, on_console=None, control=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        code: &str,
        timeout: Option<f64>,
        language: &str,
        filename: Option<&str>,
        max_result_bytes: u64,
        console_limit_bytes: usize,
        keep_console: bool,
        bytes_result: bool,
        on_console: Option<Py<PyAny>>,
        control: Option<Py<PyControl>>,
    ) -> PyResult<PyOutcome> {
        let language = parse_language(language)?;
        let timeout = parse_timeout(timeout)?;
        check_callable(py, "on_console", &on_console)?;
        let filename = filename.unwrap_or(engine::DEFAULT_FILENAME).to_string();
        let control_ref = control.as_ref().map(|c| c.get());
        self.with(py, |live| {
            let mut forward = console_forwarder(&on_console);
            live.run(
                code,
                engine::RunOptions {
                    timeout,
                    language,
                    filename,
                    max_result_bytes,
                    console_limit_bytes,
                    keep_console,
                    bytes_result,
                    control: control_ref.map(|c| &c.inner),
                    on_console: on_console.is_some().then_some(&mut forward as _),
                },
            )
        })
        .map(|inner| PyOutcome { inner })
    }

    /// Calls the function at the dotted `path` with `args_json` (a JSON array whose byte
    /// markers name `buffers`); returns its Outcome (promises awaited).
    #[pyo3(signature = (
        path, args_json, buffers, *, timeout=None, max_result_bytes=0,
        console_limit_bytes=engine::DEFAULT_CONSOLE_LIMIT_BYTES, keep_console=true,
        bytes_result=true, on_console=None, control=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        py: Python<'_>,
        path: &str,
        args_json: &str,
        buffers: Vec<Vec<u8>>,
        timeout: Option<f64>,
        max_result_bytes: u64,
        console_limit_bytes: usize,
        keep_console: bool,
        bytes_result: bool,
        on_console: Option<Py<PyAny>>,
        control: Option<Py<PyControl>>,
    ) -> PyResult<PyOutcome> {
        let timeout = parse_timeout(timeout)?;
        check_callable(py, "on_console", &on_console)?;
        let control_ref = control.as_ref().map(|c| c.get());
        self.with(py, |live| {
            let mut forward = console_forwarder(&on_console);
            let views: Vec<&[u8]> = buffers.iter().map(|b| b.as_slice()).collect();
            live.call(
                path,
                args_json,
                &views,
                engine::RunOptions {
                    timeout,
                    max_result_bytes,
                    console_limit_bytes,
                    keep_console,
                    bytes_result,
                    control: control_ref.map(|c| &c.inner),
                    on_console: on_console.is_some().then_some(&mut forward as _),
                    ..Default::default()
                },
            )
        })
        .map(|inner| PyOutcome { inner })
    }

    /// Defines the global `name` as a function whose calls go to `dispatch`.
    fn expose(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let name = name.to_string();
        self.with(py, move |live| live.expose(&name))
    }

    /// Answers call `call_id` of an exposed function, from any thread: `ok` with the value
    /// as JSON (byte markers naming `buffers`), or not `ok` with {"name", "message"}.
    #[pyo3(signature = (call_id, ok, json, buffers=Vec::new()))]
    fn reply(&self, py: Python<'_>, call_id: u64, ok: bool, json: &str, buffers: Vec<Vec<u8>>) {
        let replies = self.replies.clone();
        py.detach(move || {
            let views: Vec<&[u8]> = buffers.iter().map(|b| b.as_slice()).collect();
            replies.post(call_id, ok, json, &views)
        })
    }

    /// (envelope, key, raw size, heap bytes in use) of the context's heap; the context goes
    /// on from that snapshot.
    fn snapshot<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyBytes>, String, usize, u64)> {
        let (sealed, heap_used) = self.with(py, |live| live.snapshot())?;
        Ok((
            PyBytes::new(py, &sealed.envelope),
            sealed.key,
            sealed.raw_len,
            heap_used,
        ))
    }

    /// V8's heap statistics and the off-heap (ArrayBuffer) budget's counters.
    fn heap_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.with(py, |live| {
            live.heap_stats()
                .ok_or_else(|| EngineError::Closed("the context is closed".into()))
        })?;
        let dict = PyDict::new(py);
        dict.set_item("total_heap_size", stats.total_heap_size)?;
        dict.set_item("used_heap_size", stats.used_heap_size)?;
        dict.set_item("heap_size_limit", stats.heap_size_limit)?;
        dict.set_item("total_physical_size", stats.total_physical_size)?;
        dict.set_item("malloced_memory", stats.malloced_memory)?;
        dict.set_item("external_memory", stats.external_memory)?;
        dict.set_item("external_peak", stats.external_peak)?;
        Ok(dict)
    }

    /// Disposes the isolate (after the run in progress, if any). Idempotent.
    fn close(&self, py: Python<'_>) {
        let live = py.detach(|| self.inner.write().unwrap_or_else(|e| e.into_inner()).take());
        py.detach(move || drop(live));
    }

    /// Closed by `close()` or by a run that went over the heap cap (or closing now).
    #[getter]
    fn closed(&self) -> bool {
        match self.inner.try_read() {
            Ok(guard) => guard.as_ref().is_none_or(|live| live.is_closed()),
            Err(_) => true, // `close` holds it
        }
    }
}

/// Hands the calls of an execution's `fetch` to `on_call(call_id, args_json, body)` (on the
/// executing thread, with the GIL; it must hand them on and return) instead of making them in
/// this process; `reply` answers them from any thread. One execution at a time.
#[pyclass(module = "mcp_v8._engine", name = "FetchRelay", frozen)]
struct PyFetchRelay {
    on_call: Arc<Py<PyAny>>,
    slot: RelaySlot,
}

/// The inbox of the execution a relay is attached to; `None` between executions.
#[derive(Default)]
struct RelaySlot(Arc<Mutex<Option<Arc<Replies>>>>);

/// The relay's execution: detaches it when dropped, so later replies are dropped.
struct Attached(Arc<Replies>, Arc<Mutex<Option<Arc<Replies>>>>);

impl Drop for Attached {
    fn drop(&mut self) {
        *self.1.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl RelaySlot {
    fn attach(&self, inbox: &Arc<Replies>, what: &str) -> PyResult<Attached> {
        let mut current = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if current.is_some() {
            return Err(PyRuntimeError::new_err(format!(
                "the {what} relay is in use by another execution"
            )));
        }
        *current = Some(inbox.clone());
        Ok(Attached(inbox.clone(), self.0.clone()))
    }

    /// The inbox of the execution in progress, if any.
    fn current(&self) -> Option<Arc<Replies>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl PyFetchRelay {
    fn relay(&self, replies: Arc<Replies>) -> engine::Relay {
        let on_call = self.on_call.clone();
        let inbox = replies.clone();
        let dispatch = Box::new(move |call: HostCall<'_>| {
            if call.buffers.len() > 1 {
                let json = fetch::FetchRun::refusal_json("fetch: more than one request body");
                return inbox.post(call.id, false, &json, &[]);
            }
            Python::attach(|py| {
                let body = call.buffers.first().map(|b| PyBytes::new(py, b));
                if let Err(err) = on_call.call1(py, (call.id, call.args_json, body)) {
                    post_python_error(py, &inbox, call.id, &err);
                }
            })
        }) as Dispatch;
        engine::Relay { dispatch, replies }
    }
}

#[pymethods]
impl PyFetchRelay {
    #[new]
    fn new(py: Python<'_>, on_call: Py<PyAny>) -> PyResult<Self> {
        check_callable(py, "on_call", &Some(on_call.clone_ref(py)))?;
        Ok(PyFetchRelay {
            on_call: Arc::new(on_call),
            slot: RelaySlot::default(),
        })
    }

    /// Answers call `call_id` of the execution in progress: `ok` with the response head as
    /// JSON (its body marker naming `body`), or not `ok` with {"name", "message"}. False (the
    /// reply dropped) when no execution is in progress.
    #[pyo3(signature = (call_id, ok, head_json, body=None))]
    fn reply(
        &self,
        py: Python<'_>,
        call_id: u64,
        ok: bool,
        head_json: &str,
        body: Option<Vec<u8>>,
    ) -> bool {
        let Some(replies) = self.slot.current() else {
            return false;
        };
        py.detach(move || match (ok, body) {
            (true, Some(body)) => replies.post(call_id, ok, head_json, &[&body]),
            (true, None) => replies.post(call_id, ok, head_json, &[&[]]),
            (false, _) => replies.post(call_id, ok, head_json, &[]),
        });
        true
    }
}

/// Hands an execution's tool calls (`tools.<server>.<tool>()`, `mcp.callTool()`) to
/// `on_call(call_id, request_json)` (on the executing thread, with the GIL; it must hand them
/// on and return): `request_json` is `{"call_id", "server", "tool", "arguments"}` (the
/// script's own call id, `arguments` the JSON text of its object). `reply` answers them from
/// any thread with `{"value"}`, `{"error": {"name", "message", ...}}` or `{"held": true}`
/// (`mcp_v8::tools`). One execution at a time.
#[pyclass(module = "mcp_v8._engine", name = "ToolRelay", frozen)]
struct PyToolRelay {
    on_call: Arc<Py<PyAny>>,
    slot: RelaySlot,
}

impl PyToolRelay {
    fn relay(&self, replies: Arc<Replies>) -> engine::Relay {
        let on_call = self.on_call.clone();
        let inbox = replies.clone();
        let dispatch = Box::new(move |call: HostCall<'_>| {
            Python::attach(|py| {
                // web.js passes one object: the array of the host call's arguments holds it.
                let request = match serde_json::from_str::<serde_json::Value>(call.args_json) {
                    Ok(serde_json::Value::Array(mut args)) if args.len() == 1 => {
                        args.swap_remove(0).to_string()
                    }
                    _ => call.args_json.to_string(),
                };
                if let Err(err) = on_call.call1(py, (call.id, request)) {
                    post_python_error(py, &inbox, call.id, &err);
                }
            })
        }) as Dispatch;
        engine::Relay { dispatch, replies }
    }
}

#[pymethods]
impl PyToolRelay {
    #[new]
    fn new(py: Python<'_>, on_call: Py<PyAny>) -> PyResult<Self> {
        check_callable(py, "on_call", &Some(on_call.clone_ref(py)))?;
        Ok(PyToolRelay {
            on_call: Arc::new(on_call),
            slot: RelaySlot::default(),
        })
    }

    /// Answers call `call_id` (the host call's id `on_call` got) of the execution in progress
    /// with `answer_json`. False (the reply dropped) when no execution is in progress.
    fn reply(&self, py: Python<'_>, call_id: u64, answer_json: &str) -> bool {
        let Some(replies) = self.slot.current() else {
            return false;
        };
        py.detach(move || replies.post(call_id, true, answer_json, &[]));
        true
    }
}

/// The fetches of one execution made here, under its policy, for a script that runs
/// elsewhere (the same checks and limits as `fetch` in the engine). Thread-safe: `perform`
/// releases the GIL while the request runs; `end` shuts down the sockets of the requests in
/// flight, which return at once.
#[pyclass(module = "mcp_v8._engine", name = "FetchRun", frozen)]
struct PyFetchRun {
    inner: fetch::FetchRun,
}

#[pymethods]
impl PyFetchRun {
    /// `origins`: none, fetch is off (every request is refused saying so).
    #[new]
    #[pyo3(signature = (
        origins, max_bytes=fetch::DEFAULT_MAX_BYTES, max_requests=fetch::DEFAULT_MAX_REQUESTS
    ))]
    fn new(origins: Vec<String>, max_bytes: u64, max_requests: u32) -> PyResult<Self> {
        let policy = fetch::FetchPolicy::new(&origins, max_bytes, max_requests)
            .map_err(PyValueError::new_err)?;
        Ok(PyFetchRun {
            inner: fetch::FetchRun::new(policy),
        })
    }

    /// Counts one request (call it once per request, in the order they came): None, or the
    /// refusal as {"name", "message"} JSON past max_requests.
    fn admit(&self) -> Option<String> {
        self.inner
            .admit()
            .err()
            .map(|message| fetch::FetchRun::refusal_json(&message))
    }

    /// The request web.js's fetch describes (`args_json`; its body, if any, `body`), checked
    /// against the policy without a connection: a FetchRequest for `send`, or the refusal as
    /// {"name", "message"} JSON.
    #[pyo3(signature = (args_json, body=None))]
    fn check<'py>(
        &self,
        py: Python<'py>,
        args_json: &str,
        body: Option<&[u8]>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let buffers: Vec<&[u8]> = body.into_iter().collect();
        match self.inner.check(args_json, &buffers) {
            Ok(request) => Ok(Bound::new(
                py,
                PyFetchRequest {
                    inner: Mutex::new(Some(request)),
                },
            )?
            .into_any()),
            Err(message) => {
                Ok(PyString::new(py, &fetch::FetchRun::refusal_json(&message)).into_any())
            }
        }
    }

    /// Makes a request `check` passed (once): (True, response head JSON, body) or (False,
    /// {"name", "message"} JSON, b""). Releases the GIL until the request is over.
    fn send<'py>(
        &self,
        py: Python<'py>,
        request: PyRef<'_, PyFetchRequest>,
    ) -> (bool, String, Bound<'py, PyBytes>) {
        let taken = request
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let answer = match taken {
            Some(request) => py.detach(|| self.inner.send(request)),
            None => Err("fetch: this request was sent already".into()),
        };
        answer_of(py, answer)
    }

    /// `check` then `send`.
    #[pyo3(signature = (args_json, body=None))]
    fn perform<'py>(
        &self,
        py: Python<'py>,
        args_json: &str,
        body: Option<&[u8]>,
    ) -> (bool, String, Bound<'py, PyBytes>) {
        let buffers: Vec<&[u8]> = body.into_iter().collect();
        let answer = py.detach(|| self.inner.perform(args_json, &buffers));
        answer_of(py, answer)
    }

    /// Ends the run: requests in flight return at once, later ones are not made.
    fn end(&self, py: Python<'_>) {
        py.detach(|| self.inner.end())
    }

    #[getter]
    fn ended(&self) -> bool {
        self.inner.ended()
    }
}

/// A request a FetchRun checked, waiting to be sent.
#[pyclass(module = "mcp_v8._engine", name = "FetchRequest", frozen)]
struct PyFetchRequest {
    inner: Mutex<Option<fetch::Admitted>>,
}

fn answer_of(
    py: Python<'_>,
    answer: Result<(serde_json::Value, Vec<u8>), String>,
) -> (bool, String, Bound<'_, PyBytes>) {
    match answer {
        Ok((head, body)) => (true, head.to_string(), PyBytes::new(py, &body)),
        Err(message) => (
            false,
            fetch::FetchRun::refusal_json(&message),
            PyBytes::new(py, b""),
        ),
    }
}

/// The canonical form of `origins` as fetch allows them (scheme://host[:port]); ValueError
/// names an entry that is not an http(s) origin.
#[pyfunction]
fn fetch_origins(origins: Vec<String>) -> PyResult<Vec<String>> {
    fetch::FetchPolicy::new(
        &origins,
        fetch::DEFAULT_MAX_BYTES,
        fetch::DEFAULT_MAX_REQUESTS,
    )
    .map(|p| p.origins().to_vec())
    .map_err(PyValueError::new_err)
}

/// Raises the sandbox's walls on this process (see `sandbox/mod.rs`): call it first thing,
/// before V8 or any thread starts. Returns which walls hold (a dict); RuntimeError when the
/// process has threads, or, with `require`, when seccomp, the dropped capabilities or
/// Landlock's filesystem rules cannot be raised (the message names what is missing).
#[pyfunction]
#[pyo3(signature = (*, read_only, read_write, report_fd, max_files, max_data_bytes, require))]
fn sandbox_enter(
    py: Python<'_>,
    read_only: Vec<std::path::PathBuf>,
    read_write: Vec<std::path::PathBuf>,
    report_fd: i32,
    max_files: u64,
    max_data_bytes: u64,
    require: bool,
) -> PyResult<Bound<'_, PyDict>> {
    let options = sandbox::Options {
        read_only,
        read_write,
        report_fd,
        max_files,
        max_data_bytes,
        require,
    };
    let walls = sandbox::enter(&options).map_err(PyRuntimeError::new_err)?;
    let dict = PyDict::new(py);
    dict.set_item("namespaces", walls.namespaces)?;
    dict.set_item("capabilities", walls.capabilities)?;
    dict.set_item("no_new_privs", walls.no_new_privs)?;
    dict.set_item("landlock_abi", walls.landlock_abi)?;
    dict.set_item("landlock_full", walls.landlock_full)?;
    dict.set_item("rlimits", walls.rlimits)?;
    dict.set_item("seccomp", walls.seccomp)?;
    dict.set_item("syscalls_allowed", walls.syscalls_allowed)?;
    dict.set_item("missing", walls.missing)?;
    Ok(dict)
}

/// The name of system call `nr` on `arch` ("x86_64", "aarch64"; "" for this machine's), or None.
#[pyfunction]
#[pyo3(signature = (nr, arch=""))]
fn syscall_name(nr: i64, arch: &str) -> Option<&'static str> {
    sandbox::syscall_name(nr, arch)
}

/// The system calls the sandbox's filter allows on this machine (some only with given arguments).
#[pyfunction]
fn sandbox_syscalls() -> Vec<&'static str> {
    sandbox::allowed_syscalls()
}

/// The V8 version the engine runs, e.g. "10.2.154.26-node.28".
#[pyfunction]
fn v8_version() -> &'static str {
    engine::v8_version()
}

/// Runs V8 in this process without (True) or with its JIT compilers. Process-wide: settable
/// until the first engine starts V8; RuntimeError once V8 started with the other setting.
#[pyfunction]
fn set_jitless(jitless: bool) -> PyResult<()> {
    engine::set_jitless(jitless).map_err(PyRuntimeError::new_err)
}

/// Whether V8 runs (or will start) in this process without its JIT compilers.
#[pyfunction]
fn jitless() -> bool {
    engine::jitless()
}

/// Checks a snapshot envelope without running it and returns its key.
#[pyfunction]
fn snapshot_key(py: Python<'_>, envelope: &[u8]) -> PyResult<String> {
    envelope::open(envelope, engine::v8_version())
        .map(|o| o.key)
        .map_err(|e| to_pyerr(py, EngineError::Snapshot(e)))
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyControl>()?;
    m.add_class::<PyOutcome>()?;
    m.add_class::<PyLiveContext>()?;
    m.add_class::<PyFetchRelay>()?;
    m.add_class::<PyToolRelay>()?;
    m.add_class::<PyFetchRun>()?;
    m.add_class::<PyFetchRequest>()?;
    m.add_function(wrap_pyfunction!(execute, m)?)?;
    m.add_function(wrap_pyfunction!(v8_version, m)?)?;
    m.add_function(wrap_pyfunction!(snapshot_key, m)?)?;
    m.add_function(wrap_pyfunction!(set_jitless, m)?)?;
    m.add_function(wrap_pyfunction!(jitless, m)?)?;
    m.add_function(wrap_pyfunction!(fetch_origins, m)?)?;
    m.add_function(wrap_pyfunction!(sandbox_enter, m)?)?;
    m.add_function(wrap_pyfunction!(syscall_name, m)?)?;
    m.add_function(wrap_pyfunction!(sandbox_syscalls, m)?)?;
    m.add("SANDBOX_VIOLATION_EXIT", sandbox::VIOLATION_EXIT)?;
    m.add_function(wrap_pyfunction!(_register_errors, m)?)?;
    m.add("SNAPSHOT_FORMAT_VERSION", envelope::FORMAT_VERSION)?;
    m.add("DEFAULT_MAX_FETCH_BYTES", fetch::DEFAULT_MAX_BYTES)?;
    m.add("DEFAULT_MAX_FETCH_REQUESTS", fetch::DEFAULT_MAX_REQUESTS)?;
    m.add(
        "DEFAULT_CONSOLE_LIMIT_BYTES",
        engine::DEFAULT_CONSOLE_LIMIT_BYTES,
    )?;
    Ok(())
}
