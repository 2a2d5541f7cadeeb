//! Prepared isolates (`cpp/plain_isolate.h`): the isolate of this thread's next execution, made
//! ahead of it while the thread has nothing else to do, so that the execution does not pay for
//! creating one. One per thread, kept in a thread-local: V8 binds an isolate to the thread that
//! makes it. An execution on this thread whose isolate it is (the base context, no snapshot to
//! make, the same heap cap) takes it and uses it once; any other execution makes its own and
//! leaves it for a later one. Preparing again replaces it.

use std::cell::RefCell;
use std::time::Instant;

use crate::console::ConsoleSink;
use crate::error::EngineError;
use crate::ffi;
use crate::outcome::Response;

/// An isolate made by the shim for a later execution on this thread.
pub(crate) struct Prepared {
    raw: *mut ffi::mv8_isolate,
    heap_limit_bytes: u64,
}

impl Prepared {
    /// Handed to the shim, which frees it.
    fn into_raw(self) -> *mut ffi::mv8_isolate {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        unsafe { ffi::mv8_isolate_free(self.raw) }
    }
}

thread_local! {
    static PREPARED: RefCell<Option<Prepared>> = const { RefCell::new(None) };
}

/// Makes this thread's next isolate as `options` say (the one held before is disposed first).
pub(crate) fn prepare(options: &ffi::mv8_isolate_options) -> Result<(), EngineError> {
    discard();
    let mut response = Response::new();
    let raw = unsafe { ffi::mv8_isolate_new(options, response.as_mut_ptr()) };
    if raw.is_null() {
        return Err(
            match response.outcome(ConsoleSink::none(), Instant::now()) {
                Err(e) => e,
                Ok(_) => EngineError::Internal("the isolate could not be prepared".into()),
            },
        );
    }
    let prepared = Prepared {
        raw,
        heap_limit_bytes: options.heap_limit_bytes,
    };
    PREPARED.with(|slot| *slot.borrow_mut() = Some(prepared));
    Ok(())
}

/// This thread's prepared isolate when an execution with `options` would run in it (taken: it
/// is used once), else null (it stays).
pub(crate) fn take_fitting(options: &ffi::mv8_isolate_options) -> *mut ffi::mv8_isolate {
    PREPARED
        .try_with(|slot| {
            let mut slot = slot.borrow_mut();
            match slot.as_ref() {
                Some(p) if unsafe { ffi::mv8_isolate_fits(p.raw, options) } == 1 => {
                    slot.take().map_or(std::ptr::null_mut(), Prepared::into_raw)
                }
                _ => std::ptr::null_mut(),
            }
        })
        .unwrap_or(std::ptr::null_mut())
}

/// The heap cap (bytes, 0: none) of the isolate this thread holds prepared, if any.
pub(crate) fn held() -> Option<u64> {
    PREPARED
        .try_with(|slot| slot.borrow().as_ref().map(|p| p.heap_limit_bytes))
        .ok()
        .flatten()
}

/// Disposes this thread's prepared isolate, if any.
pub(crate) fn discard() {
    let held = PREPARED
        .try_with(|slot| slot.borrow_mut().take())
        .ok()
        .flatten();
    drop(held);
}
