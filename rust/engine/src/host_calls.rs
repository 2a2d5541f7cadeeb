//! Calls out of JavaScript to the embedder (`cpp/host_calls.h`): a live context's exposed
//! functions and `fetch`. A call reaches a [`Dispatch`] on the thread of the run; its answer
//! goes back, from any thread, through the [`Replies`] inbox of the run or context.

use std::ffi::c_void;
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::ffi;

/// One call JavaScript made to a host function; answer it through [`Replies::post`].
pub struct HostCall<'a> {
    pub id: u64,
    pub name: &'a str,
    /// A JSON array; byte strings stand in it as markers naming `buffers`.
    pub args_json: &'a str,
    pub buffers: Vec<&'a [u8]>,
}

/// Receives the calls of host functions, on the thread of the run, while it runs. It must
/// not block on the run (the run waits for the answer): it hands the call on and returns.
pub type Dispatch = Box<dyn Fn(HostCall<'_>) + Send + Sync>;

/// Where the answers to calls out go. Thread-safe; outlives its run or context (an answer
/// posted after they are gone is dropped).
pub struct Replies {
    raw: *mut ffi::mv8_replies,
}

unsafe impl Send for Replies {}
unsafe impl Sync for Replies {}

impl Replies {
    /// An inbox of its own, for the calls out of one execution.
    pub fn new() -> Replies {
        let raw = unsafe { ffi::mv8_replies_new() };
        assert!(!raw.is_null(), "out of memory");
        Replies { raw }
    }

    /// Takes over a reference the shim made (`mv8_context_replies`).
    pub(crate) fn from_raw(raw: *mut ffi::mv8_replies) -> Replies {
        assert!(!raw.is_null(), "out of memory");
        Replies { raw }
    }

    pub(crate) fn raw(&self) -> *mut ffi::mv8_replies {
        self.raw
    }

    /// `ok`: `json` is the value. Otherwise `json` is `{"name": ..., "message": ...}`, and the
    /// promise is rejected with an Error of that name and message.
    pub fn post(&self, call_id: u64, ok: bool, json: &str, buffers: &[&[u8]]) {
        let views = bytes_views(buffers);
        unsafe {
            ffi::mv8_replies_post(
                self.raw,
                call_id,
                ok as c_int,
                json.as_ptr() as *const c_char,
                json.len(),
                views.as_ptr(),
                views.len(),
            )
        }
    }
}

impl Default for Replies {
    fn default() -> Self {
        Replies::new()
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        unsafe { ffi::mv8_replies_free(self.raw) }
    }
}

/// The shim's views of byte strings the caller keeps alive.
pub(crate) fn bytes_views(buffers: &[&[u8]]) -> Vec<ffi::mv8_bytes> {
    buffers
        .iter()
        .map(|b| ffi::mv8_bytes {
            data: b.as_ptr(),
            len: b.len(),
        })
        .collect()
}

/// The shim's host-call callback (`mv8_host_call_fn`) for a [`Dispatch`] passed as user data.
pub(crate) unsafe extern "C" fn on_host_call(
    user_data: *mut c_void,
    call_id: u64,
    name: *const c_char,
    name_len: usize,
    args_json: *const c_char,
    args_len: usize,
    buffers: *const ffi::mv8_bytes,
    n_buffers: usize,
) {
    let dispatch = &*(user_data as *const Dispatch);
    let name = String::from_utf8_lossy(std::slice::from_raw_parts(name as *const u8, name_len));
    let args =
        String::from_utf8_lossy(std::slice::from_raw_parts(args_json as *const u8, args_len));
    let buffers = (0..n_buffers)
        .map(|i| {
            let b = &*buffers.add(i);
            if b.len == 0 {
                &[][..]
            } else {
                std::slice::from_raw_parts(b.data, b.len)
            }
        })
        .collect();
    // A panicking dispatcher must not unwind into C++.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        dispatch(HostCall {
            id: call_id,
            name: &name,
            args_json: &args,
            buffers,
        })
    }));
}
