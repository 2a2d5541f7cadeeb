//! `fetch` across the process boundary: `FetchRelay` hands an execution's calls to Python (the
//! worker sends them to the server), `FetchRun` makes them under a policy (the server does).

use super::relays::RelaySlot;
use super::*;

/// Hands the calls of an execution's `fetch` to `on_call(call_id, args_json, body)` (on the
/// executing thread, with the GIL; it must hand them on and return) instead of making them in
/// this process; `reply` answers them from any thread. One execution at a time.
#[pyclass(module = "mcp_v8._engine", name = "FetchRelay", frozen)]
pub(super) struct PyFetchRelay {
    on_call: Arc<Py<PyAny>>,
    pub(super) slot: RelaySlot,
}

impl PyFetchRelay {
    pub(super) fn relay(&self, replies: Arc<Replies>) -> engine::Relay {
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
    fn reply(&self, call_id: u64, ok: bool, head_json: &str, body: Option<Vec<u8>>) -> bool {
        let Some(replies) = self.slot.current() else {
            return false;
        };
        // With the GIL held (see ToolRelay.reply): a copy into the inbox under its own lock.
        match (ok, body) {
            (true, Some(body)) => replies.post(call_id, ok, head_json, &[&body]),
            (true, None) => replies.post(call_id, ok, head_json, &[&[]]),
            (false, _) => replies.post(call_id, ok, head_json, &[]),
        }
        true
    }
}

/// The fetches of one execution made here, under its policy, for a script that runs
/// elsewhere (the same checks and limits as `fetch` in the engine). Thread-safe: `perform`
/// releases the GIL while the request runs; `end` shuts down the sockets of the requests in
/// flight, which return at once.
#[pyclass(module = "mcp_v8._engine", name = "FetchRun", frozen)]
pub(super) struct PyFetchRun {
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
pub(super) struct PyFetchRequest {
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
pub(super) fn fetch_origins(origins: Vec<String>) -> PyResult<Vec<String>> {
    fetch::FetchPolicy::new(
        &origins,
        fetch::DEFAULT_MAX_BYTES,
        fetch::DEFAULT_MAX_REQUESTS,
    )
    .map(|p| p.origins().to_vec())
    .map_err(PyValueError::new_err)
}
