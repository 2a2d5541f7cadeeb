// C ABI of the V8 shim. Nothing V8-typed and no C++ exception crosses it: requests go
// in as plain data, responses come back as buffers the shim allocated plus a numbered
// status; mv8_response_free releases them.
// Mirrored by rust/engine/src/ffi.rs; keep the two in step.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Response status.
enum {
  MV8_COMPLETED = 0,
  MV8_FAILED = 1,     // JS exception, syntax error, rejected promise, heap limit
  MV8_TIMED_OUT = 2,
  MV8_CANCELLED = 3,
  MV8_INTERNAL = 4,   // the engine could not run the request (bad snapshot, init failure)
};

// Termination reasons for mv8_control_terminate.
enum { MV8_REASON_CANCEL = 1, MV8_REASON_TIMEOUT = 2 };

// Console levels passed to the console callback.
enum { MV8_LOG = 0, MV8_INFO = 1, MV8_WARN = 2, MV8_ERROR = 3, MV8_DEBUG = 4, MV8_TRACE = 5 };

typedef struct mv8_control mv8_control;
typedef void (*mv8_console_fn)(void* user_data, int level, const char* text, size_t len);

typedef struct {
  const char* code;
  size_t code_len;
  const char* filename;          // NUL-terminated script name used in stack traces (required)
  const uint8_t* snapshot;       // raw V8 startup blob to restore; NULL = the base context
  size_t snapshot_len;
  int want_snapshot;             // 1: run in a SnapshotCreator and return a new blob
  uint64_t heap_limit_bytes;     // 0 = V8's default
  double timeout_secs;           // <= 0: no timeout
  uint64_t max_result_bytes;     // 0 = unlimited
  mv8_console_fn console;        // may be NULL
  void* console_user_data;
  mv8_control* control;          // may be NULL
} mv8_request;

typedef struct {
  int status;
  int heap_limit_exceeded;       // the heap cap stopped the script (status FAILED)
  int syntax_error;              // the source did not compile (status FAILED)
  char* result;                  // JSON text (COMPLETED), NUL-terminated, or NULL
  size_t result_len;
  char* error_name;              // e.g. "TypeError"; NULL when not an Error
  char* error_message;
  char* error_stack;             // "Name: message\n    at ..." with positions in the input
  int32_t error_line;            // 1-based, 0 when unknown
  int32_t error_column;          // 1-based, 0 when unknown
  uint8_t* snapshot;             // raw blob when requested and COMPLETED (V8's buffer, not malloc'd)
  size_t snapshot_len;
  uint64_t heap_used_bytes;      // V8 heap in use at the end of the run
  uint64_t external_bytes;       // peak ArrayBuffer bytes counted by the bounded allocator
} mv8_response;

// Initialises V8 once per process and builds the base snapshot. Safe to call again.
// Returns 0 on success; otherwise *error receives a malloc'd message.
int mv8_initialize(char** error);
const char* mv8_v8_version(void);

mv8_control* mv8_control_new(void);
void mv8_control_free(mv8_control* control);
// Thread-safe; the first reason wins. Works before, during and after a run.
void mv8_control_terminate(mv8_control* control, int reason);

void mv8_execute(const mv8_request* request, mv8_response* response);
void mv8_response_free(mv8_response* response);

#ifdef __cplusplus
}
#endif
