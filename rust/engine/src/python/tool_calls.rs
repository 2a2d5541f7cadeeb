//! Tool calls across the process boundary: `ToolRelay` hands an execution's calls
//! (`tools.<server>.<tool>()`, `mcp.callTool()`) to Python; the worker sends them to the
//! server, which makes them.

use super::relays::RelaySlot;
use super::*;

/// Hands an execution's tool calls to `on_call(call_id, request_json)` (on the executing
/// thread, with the GIL; it must hand them on and return): `request_json` is `{"call_id",
/// "server", "tool", "arguments"}` (the script's own call id, `arguments` the JSON text of its
/// object). `reply` answers them from any thread with `{"value"}`, `{"error": {"name",
/// "message", ...}}` or `{"held": true}` (`mcp_v8::tools`). One execution at a time.
#[pyclass(module = "mcp_v8._engine", name = "ToolRelay", frozen)]
pub(super) struct PyToolRelay {
    on_call: Arc<Py<PyAny>>,
    pub(super) slot: RelaySlot,
}

impl PyToolRelay {
    pub(super) fn relay(&self, replies: Arc<Replies>) -> engine::Relay {
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
    fn reply(&self, call_id: u64, answer_json: &str) -> bool {
        let Some(replies) = self.slot.current() else {
            return false;
        };
        // With the GIL held: posting is a copy into the inbox under its own lock, which no
        // thread holds while it waits for the GIL. Releasing the GIL here would let a daemon
        // thread that replies as the interpreter exits be stopped inside this frame, which
        // aborts the process ("FATAL: exception not rethrown").
        replies.post(call_id, true, answer_json, &[]);
        true
    }
}
