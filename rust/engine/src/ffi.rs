//! Raw declarations of the C++ shim's C ABI (`cpp/shim.h`). Keep in step with it.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_void};

pub const MV8_COMPLETED: c_int = 0;
pub const MV8_FAILED: c_int = 1;
pub const MV8_TIMED_OUT: c_int = 2;
pub const MV8_CANCELLED: c_int = 3;
#[allow(dead_code)] // every other status maps to EngineError::Internal
pub const MV8_INTERNAL: c_int = 4;

pub const MV8_REASON_CANCEL: c_int = 1;

#[repr(C)]
pub struct mv8_control {
    _private: [u8; 0],
}

pub type mv8_console_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, level: c_int, text: *const c_char, len: usize),
>;

#[repr(C)]
pub struct mv8_request {
    pub code: *const c_char,
    pub code_len: usize,
    pub filename: *const c_char,
    pub snapshot: *const u8,
    pub snapshot_len: usize,
    pub want_snapshot: c_int,
    pub heap_limit_bytes: u64,
    pub timeout_secs: f64,
    pub max_result_bytes: u64,
    pub console: mv8_console_fn,
    pub console_user_data: *mut c_void,
    pub control: *mut mv8_control,
}

#[repr(C)]
pub struct mv8_response {
    pub status: c_int,
    pub heap_limit_exceeded: c_int,
    pub syntax_error: c_int,
    pub result: *mut c_char,
    pub result_len: usize,
    pub error_name: *mut c_char,
    pub error_message: *mut c_char,
    pub error_stack: *mut c_char,
    pub error_line: i32,
    pub error_column: i32,
    pub snapshot: *mut u8,
    pub snapshot_len: usize,
    pub heap_used_bytes: u64,
    pub external_bytes: u64,
}

extern "C" {
    pub fn mv8_initialize(error: *mut *mut c_char) -> c_int;
    pub fn mv8_v8_version() -> *const c_char;
    pub fn mv8_control_new() -> *mut mv8_control;
    pub fn mv8_control_free(control: *mut mv8_control);
    pub fn mv8_control_terminate(control: *mut mv8_control, reason: c_int);
    pub fn mv8_execute(request: *const mv8_request, response: *mut mv8_response);
    pub fn mv8_response_free(response: *mut mv8_response);
}
