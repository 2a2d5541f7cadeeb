//! The PyO3 boundary: `mcp_v8._engine`. Everything Python-facing lives here; the
//! executing thread releases the GIL for the whole run and takes it back only to call
//! the console callback.

use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::engine::{self, EngineError, Outcome, Status};
use crate::envelope;
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
}

static ERRORS: PyOnceLock<Errors> = PyOnceLock::new();

fn registered(py: Python<'_>) -> PyResult<&Errors> {
    ERRORS
        .get(py)
        .ok_or_else(|| PyRuntimeError::new_err("mcp_v8.errors has not registered its exceptions"))
}

/// Called once by `mcp_v8.errors`: the function that raises for an outcome, and the
/// classes of refused snapshots and engine failures.
#[pyfunction]
fn _register_errors(
    py: Python<'_>,
    raise_for: Py<PyAny>,
    snapshot_error: Py<PyAny>,
    engine_error: Py<PyAny>,
) {
    let _ = ERRORS.set(
        py,
        Errors {
            raise_for,
            snapshot_error,
            engine_error,
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

/// Runs `code` in a fresh V8 isolate and returns its Outcome. See mcp_v8.Engine.
#[pyfunction]
#[pyo3(signature = (
    code, *, heap=None, snapshot=false, heap_limit_mb=None, timeout=None,
    language="auto", filename=None, max_result_bytes=0,
    console_limit_bytes=engine::DEFAULT_CONSOLE_LIMIT_BYTES, keep_console=true,
    on_console=None, control=None
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
) -> PyResult<PyOutcome> {
    let language = parse_language(language)?;
    if let Some(mb) = heap_limit_mb {
        if mb == 0 || mb > 1 << 20 {
            return Err(PyValueError::new_err(
                "heap_limit_mb must be between 1 and 1048576",
            ));
        }
    }
    let timeout = match timeout {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 && t < 1e9 => Some(Duration::from_secs_f64(t)),
        Some(_) => {
            return Err(PyValueError::new_err(
                "timeout must be a positive number of seconds",
            ))
        }
    };
    if let Some(cb) = &on_console {
        if !cb.bind(py).is_callable() {
            return Err(PyTypeError::new_err("on_console must be callable"));
        }
    }
    let heap = heap.map(|h| h.to_vec());
    let filename = filename.unwrap_or(engine::DEFAULT_FILENAME).to_string();
    let code = code.to_string();
    let control_ref = control.as_ref().map(|c| c.get());
    let outcome = py.detach(|| {
        let mut forward = |line: &engine::ConsoleLine| {
            if let Some(cb) = &on_console {
                Python::attach(|py| {
                    if let Err(e) = cb.call1(py, (line.level.as_str(), line.text.as_str())) {
                        e.write_unraisable(py, Some(cb.bind(py)));
                    }
                });
            }
        };
        let opts = engine::Options {
            heap: heap.as_deref(),
            snapshot,
            heap_limit_bytes: heap_limit_mb.unwrap_or(0) << 20,
            timeout,
            language,
            filename,
            max_result_bytes,
            console_limit_bytes,
            keep_console,
            control: control_ref.map(|c| &c.inner),
            on_console: if on_console.is_some() {
                Some(&mut forward)
            } else {
                None
            },
        };
        engine::execute(&code, opts)
    });
    outcome
        .map(|inner| PyOutcome { inner })
        .map_err(|e| to_pyerr(py, e))
}

/// The V8 version the engine runs, e.g. "10.2.154.26-node.28".
#[pyfunction]
fn v8_version() -> &'static str {
    engine::v8_version()
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
    m.add_function(wrap_pyfunction!(execute, m)?)?;
    m.add_function(wrap_pyfunction!(v8_version, m)?)?;
    m.add_function(wrap_pyfunction!(snapshot_key, m)?)?;
    m.add_function(wrap_pyfunction!(_register_errors, m)?)?;
    m.add("SNAPSHOT_FORMAT_VERSION", envelope::FORMAT_VERSION)?;
    m.add(
        "DEFAULT_CONSOLE_LIMIT_BYTES",
        engine::DEFAULT_CONSOLE_LIMIT_BYTES,
    )?;
    Ok(())
}
