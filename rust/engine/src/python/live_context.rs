//! `LiveContext`: a context whose globals persist across runs, and the dispatch of the calls
//! of its exposed functions to Python.

use super::*;

/// A live context: one isolate whose globals persist across runs. mcp_v8.Context wraps it;
/// see there. Every method releases the GIL while V8 works; calls are serialised.
#[pyclass(module = "mcp_v8._engine", name = "LiveContext", frozen)]
pub(super) struct PyLiveContext {
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

#[pymethods]
impl PyLiveContext {
    /// `dispatch(call_id, name, args_json, buffers)` receives the calls of exposed
    /// functions on the context's thread; it must hand them on and return at once, and
    /// answer later through `reply`. When it raises, the JS promise is rejected. With
    /// `fetch_to_dispatch` it receives the calls of `fetch` too (named `mcp-v8:fetch`, the
    /// request's body, if any, as a buffer), answered as a `FetchRelay`'s are: `reply(id,
    /// True, head_json, [body])` or `reply(id, False, error_json, [])`.
    #[new]
    #[pyo3(signature = (
        *, heap=None, snapshots=false, heap_limit_mb=None, dispatch=None, allow_fetch=None,
        max_fetch_bytes=fetch::DEFAULT_MAX_BYTES, max_fetch_requests=fetch::DEFAULT_MAX_REQUESTS,
        fetch_to_dispatch=false
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
        fetch_to_dispatch: bool,
    ) -> PyResult<Self> {
        let heap_limit_bytes = parse_heap_limit(heap_limit_mb)?;
        if fetch_to_dispatch && (dispatch.is_none() || allow_fetch.is_some()) {
            return Err(PyValueError::new_err(
                "fetch_to_dispatch needs a dispatch, and no allow_fetch: fetch is relayed, not made here",
            ));
        }
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
                    fetch_to_dispatch,
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
