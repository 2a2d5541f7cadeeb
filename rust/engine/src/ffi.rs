//! Raw declarations of the C++ shim's C ABI (`cpp/shim.h`). Their layout is checked against
//! `cpp/abi_layout.inc`, as the shim's is: change the three together.
#![allow(non_camel_case_types)]

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};

pub const MV8_COMPLETED: c_int = 0;
pub const MV8_FAILED: c_int = 1;
pub const MV8_TIMED_OUT: c_int = 2;
pub const MV8_CANCELLED: c_int = 3;
#[allow(dead_code)] // every other status maps to EngineError::Internal
pub const MV8_INTERNAL: c_int = 4;
pub const MV8_CLOSED: c_int = 5;
pub const MV8_SUSPENDED: c_int = 6;

pub const MV8_RUN_SCRIPT: c_int = 0;
pub const MV8_RUN_CALL: c_int = 1;

pub const MV8_REASON_CANCEL: c_int = 1;

#[repr(C)]
pub struct mv8_control {
    _private: [u8; 0],
}

pub type mv8_console_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, level: c_int, text: *const c_char, len: usize),
>;

#[repr(C)]
pub struct mv8_bytes {
    pub data: *const u8,
    pub len: usize,
}

#[repr(C)]
pub struct mv8_buffer {
    pub data: *mut u8,
    pub len: usize,
}

#[repr(C)]
pub struct mv8_hooks {
    pub fetch_off: *const c_char,
    pub url_parse: Option<
        unsafe extern "C" fn(*const c_char, usize, *const c_char, usize, *mut mv8_buffer) -> c_int,
    >,
    pub url_set: Option<
        unsafe extern "C" fn(
            *const c_char,
            usize,
            c_int,
            *const c_char,
            usize,
            *mut mv8_buffer,
        ) -> c_int,
    >,
    pub utf8_decode: Option<
        unsafe extern "C" fn(*const u8, usize, c_int, c_int, *mut mv8_buffer, *mut usize) -> c_int,
    >,
    pub digest: Option<unsafe extern "C" fn(c_int, *const u8, usize, *mut u8) -> usize>,
}

#[repr(C)]
pub struct mv8_isolate {
    _private: [u8; 0],
}

#[repr(C)]
pub struct mv8_context {
    _private: [u8; 0],
}

#[repr(C)]
pub struct mv8_replies {
    _private: [u8; 0],
}

pub type mv8_host_call_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        call_id: u64,
        name: *const c_char,
        name_len: usize,
        args_json: *const c_char,
        args_len: usize,
        buffers: *const mv8_bytes,
        n_buffers: usize,
    ),
>;

#[repr(C)]
pub struct mv8_isolate_options {
    pub snapshot: *const u8,
    pub snapshot_len: usize,
    pub snapshots: c_int,
    pub heap_limit_bytes: u64,
}

#[repr(C)]
pub struct mv8_run_options {
    pub filename: *const c_char,
    pub timeout_secs: f64,
    pub max_result_bytes: u64,
    pub bytes_result: c_int,
    pub console: mv8_console_fn,
    pub console_user_data: *mut c_void,
    pub control: *mut mv8_control,
}

#[repr(C)]
pub struct mv8_context_options {
    pub isolate: mv8_isolate_options,
    pub host_call: mv8_host_call_fn,
    pub host_call_user_data: *mut c_void,
}

#[repr(C)]
pub struct mv8_context_request {
    pub kind: c_int,
    pub code: *const c_char,
    pub code_len: usize,
    pub args_json: *const c_char,
    pub args_len: usize,
    pub buffers: *const mv8_bytes,
    pub n_buffers: usize,
    pub run: mv8_run_options,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct mv8_heap_stats {
    pub total_heap_size: u64,
    pub used_heap_size: u64,
    pub heap_size_limit: u64,
    pub total_physical_size: u64,
    pub malloced_memory: u64,
    pub external_memory: u64,
    pub external_peak: u64,
}

#[repr(C)]
pub struct mv8_request {
    pub code: *const c_char,
    pub code_len: usize,
    pub isolate: mv8_isolate_options,
    pub run: mv8_run_options,
    pub host_call: mv8_host_call_fn,
    pub host_call_user_data: *mut c_void,
    pub replies: *mut mv8_replies,
}

/// When the phases of a run began and ended (CLOCK_MONOTONIC, ns; 0: not reached).
#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct mv8_phases {
    pub started: u64,
    pub restored: u64,
    pub evaluating: u64,
    pub evaluated: u64,
    pub settled: u64,
    pub snapshotted: u64,
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
    pub buffers: *mut mv8_buffer,
    pub n_buffers: usize,
    pub phases: mv8_phases,
}

extern "C" {
    pub fn mv8_set_hooks(hooks: *const mv8_hooks);
    pub fn mv8_initialize(error: *mut *mut c_char) -> c_int;
    pub fn mv8_v8_version() -> *const c_char;
    pub fn mv8_set_jitless(jitless: c_int) -> c_int;
    pub fn mv8_jitless() -> c_int;
    pub fn mv8_monotonic_ns() -> u64;
    pub fn mv8_control_new() -> *mut mv8_control;
    pub fn mv8_control_free(control: *mut mv8_control);
    pub fn mv8_control_terminate(control: *mut mv8_control, reason: c_int);
    pub fn mv8_execute(
        prepared: *mut mv8_isolate,
        request: *const mv8_request,
        response: *mut mv8_response,
    );
    pub fn mv8_response_free(response: *mut mv8_response);
    pub fn mv8_isolate_new(
        options: *const mv8_isolate_options,
        response: *mut mv8_response,
    ) -> *mut mv8_isolate;
    pub fn mv8_isolate_free(isolate: *mut mv8_isolate);
    pub fn mv8_isolate_fits(
        isolate: *const mv8_isolate,
        options: *const mv8_isolate_options,
    ) -> c_int;
    pub fn mv8_context_new(
        options: *const mv8_context_options,
        response: *mut mv8_response,
    ) -> *mut mv8_context;
    pub fn mv8_context_free(context: *mut mv8_context);
    pub fn mv8_context_run(
        context: *mut mv8_context,
        request: *const mv8_context_request,
        response: *mut mv8_response,
    );
    pub fn mv8_context_expose(
        context: *mut mv8_context,
        name: *const c_char,
        name_len: usize,
        error: *mut *mut c_char,
    ) -> c_int;
    pub fn mv8_context_snapshot(context: *mut mv8_context, response: *mut mv8_response);
    pub fn mv8_context_closed(context: *mut mv8_context) -> c_int;
    pub fn mv8_context_heap_stats(context: *mut mv8_context, stats: *mut mv8_heap_stats) -> c_int;
    pub fn mv8_context_replies(context: *mut mv8_context) -> *mut mv8_replies;
    pub fn mv8_replies_new() -> *mut mv8_replies;
    pub fn mv8_replies_free(replies: *mut mv8_replies);
    pub fn mv8_replies_post(
        replies: *mut mv8_replies,
        call_id: u64,
        ok: c_int,
        json: *const c_char,
        json_len: usize,
        buffers: *const mv8_bytes,
        n_buffers: usize,
    );
}

extern "C" {
    #[link_name = "free"]
    fn libc_free(p: *mut c_void);
}

/// A string the shim allocated for the caller (`char**` out-parameters), taken over and freed.
pub(crate) unsafe fn take_cstr(p: *mut c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
    libc_free(p as *mut c_void);
    Some(s)
}

/// A copy of a string the shim keeps (a response's fields, freed with the response).
pub(crate) unsafe fn borrowed_cstr(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        Some(CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod layout {
    //! Every struct of the ABI against `cpp/abi_layout.inc` (written out by build.rs).
    use super::*;

    include!(concat!(env!("OUT_DIR"), "/abi_layout_test.rs"));
}
