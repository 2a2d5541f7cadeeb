//! The PyO3 boundary: `mcp_v8._engine`. Everything Python-facing lives here and in the submodules
//! (live contexts, fetch across the process boundary, the sandbox's walls); the
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

mod fetch_calls;
mod live_context;
mod relays;
mod tool_calls;
mod walls;

use fetch_calls::{fetch_origins, PyFetchRelay, PyFetchRequest, PyFetchRun};
use live_context::PyLiveContext;
use relays::Attached;
use tool_calls::PyToolRelay;
use walls::{sandbox_enter, sandbox_syscalls, syscall_name};

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
    /// The phases of the run, in order: (name, start, end), readings of
    /// ``time.monotonic_ns()``'s clock (CLOCK_MONOTONIC).
    #[getter]
    fn phases(&self) -> Vec<(&'static str, u64, u64)> {
        self.inner
            .phases
            .iter()
            .map(|p| (p.name, p.start_ns, p.end_ns))
            .collect()
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
    let attached: Option<Attached> = fetch_relay
        .as_ref()
        .map(|r| r.get().slot.attach(&inbox, "fetch"))
        .transpose()?;
    let attached_tools: Option<Attached> = tool_relay
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

/// Makes, on the calling thread, the isolate of its next execution (the base context, no
/// snapshot, `heap_limit_mb`): see mcp_v8.Engine.prepare. Replaces the one held before.
#[pyfunction]
#[pyo3(signature = (*, heap_limit_mb=None))]
fn prepare_isolate(py: Python<'_>, heap_limit_mb: Option<u64>) -> PyResult<()> {
    let heap_limit_bytes = parse_heap_limit(heap_limit_mb)?;
    let isolate = engine::IsolateOptions {
        heap_limit_bytes,
        ..engine::IsolateOptions::default()
    };
    // Released, not moved: the isolate is made on this thread, the one that will run it.
    py.detach(|| engine::prepare(&isolate))
        .map_err(|e| to_pyerr(py, e))
}

/// The isolate the calling thread holds prepared, as {"heap_limit_mb": int | None}; None when
/// it holds none.
#[pyfunction]
fn prepared_isolate(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    let Some(bytes) = engine::prepared_heap_limit() else {
        return Ok(None);
    };
    let held = PyDict::new(py);
    held.set_item("heap_limit_mb", (bytes != 0).then_some(bytes >> 20))?;
    Ok(Some(held))
}

/// Disposes the isolate the calling thread holds prepared, if any.
#[pyfunction]
fn discard_prepared_isolate(py: Python<'_>) {
    py.detach(engine::discard_prepared)
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
    m.add_function(wrap_pyfunction!(prepare_isolate, m)?)?;
    m.add_function(wrap_pyfunction!(prepared_isolate, m)?)?;
    m.add_function(wrap_pyfunction!(discard_prepared_isolate, m)?)?;
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
