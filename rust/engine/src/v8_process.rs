//! V8 in this process (`cpp/v8_process.h`): started once, after the shim has been handed the
//! services it asks of Rust (`web.rs`), and its version.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::sync::OnceLock;

use crate::error::EngineError;
use crate::ffi;

/// Initialises V8 (once per process; later calls return the first result).
pub fn initialize() -> Result<(), EngineError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| unsafe {
        crate::web::install();
        let mut err: *mut c_char = std::ptr::null_mut();
        if ffi::mv8_initialize(&mut err) == 0 {
            Ok(())
        } else {
            Err(ffi::take_cstr(err).unwrap_or_else(|| "unknown error".into()))
        }
    })
    .clone()
    .map_err(EngineError::Init)
}

/// Runs V8 in this process without its JIT compilers (`--jitless`) or with them. V8 flags are
/// process-wide and read when V8 starts: an error once V8 started with the other setting.
pub fn set_jitless(jitless: bool) -> Result<(), String> {
    if unsafe { ffi::mv8_set_jitless(jitless as std::os::raw::c_int) } == 0 {
        return Ok(());
    }
    Err(format!(
        "V8 already started {} its JIT compilers in this process; choose jitless before the first engine",
        if jitless { "with" } else { "without" }
    ))
}

/// Whether V8 runs (or will start) in this process without its JIT compilers.
pub fn jitless() -> bool {
    unsafe { ffi::mv8_jitless() != 0 }
}

/// The V8 version string, e.g. `10.2.154.26-node.28`.
pub fn v8_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| unsafe {
        CStr::from_ptr(ffi::mv8_v8_version())
            .to_string_lossy()
            .into_owned()
    })
}
