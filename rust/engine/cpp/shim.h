// C ABI of the V8 shim. Nothing V8-typed and no C++ exception crosses it: requests go
// in as plain data, responses come back as buffers the shim allocated plus a numbered
// status; mv8_response_free releases them.
// Mirrored by rust/engine/src/ffi.rs; abi_layout.inc states the layout of both, checked on
// each side (abi_layout.cc here, a test there): change the three together.
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
  MV8_CLOSED = 5,     // the live context is closed (it went over its heap cap)
  MV8_SUSPENDED = 6,  // only tool calls the script holds could settle its result (see tools.rs)
};

// Termination reasons for mv8_control_terminate.
enum { MV8_REASON_CANCEL = 1, MV8_REASON_TIMEOUT = 2 };

// Console levels passed to the console callback.
enum { MV8_LOG = 0, MV8_INFO = 1, MV8_WARN = 2, MV8_ERROR = 3, MV8_DEBUG = 4, MV8_TRACE = 5 };

typedef struct mv8_control mv8_control;
typedef struct mv8_isolate mv8_isolate;  // a prepared isolate (see below)
typedef void (*mv8_console_fn)(void* user_data, int level, const char* text, size_t len);

typedef struct {
  const uint8_t* data;
  size_t len;
} mv8_bytes;

typedef struct {
  uint8_t* data;  // malloc'd
  size_t len;
} mv8_buffer;

typedef struct mv8_replies mv8_replies;

// JavaScript called a host function that answers through the embedder (an exposed function
// of a live context, or fetch). Runs on the thread of the run, inside it; the answer goes to
// mv8_replies_post, from any thread, now or later. `args_json` is a JSON
// array; the pointers are valid during the call only.
typedef void (*mv8_host_call_fn)(void* user_data, uint64_t call_id, const char* name, size_t name_len,
                                 const char* args_json, size_t args_len, const mv8_bytes* buffers,
                                 size_t n_buffers);

// Where an isolate starts from and how far its heap may grow: a one-shot execution's isolate
// and a live context's alike.
typedef struct {
  const uint8_t* snapshot;       // raw V8 startup blob to restore; NULL = the base context
  size_t snapshot_len;
  int snapshots;                 // 1: a SnapshotCreator isolate (no WebAssembly there): an
                                 // execution returns a new blob, a live context can make them
  uint64_t heap_limit_bytes;     // 0 = V8's default
} mv8_isolate_options;

// What one run of code is held to: a one-shot execution and a live context's run alike.
typedef struct {
  const char* filename;          // NUL-terminated script name in stack traces (required for a
                                 // script; a live context's MV8_RUN_CALL has none)
  double timeout_secs;           // <= 0: no timeout
  uint64_t max_result_bytes;     // 0 = unlimited
  int bytes_result;              // 1: ArrayBuffers and views in the result become buffers
  mv8_console_fn console;        // may be NULL
  void* console_user_data;
  mv8_control* control;          // may be NULL
} mv8_run_options;

typedef struct {
  const char* code;
  size_t code_len;
  mv8_isolate_options isolate;   // `snapshots`: the response carries the new blob
  mv8_run_options run;
  mv8_host_call_fn host_call;    // may be NULL: fetch then rejects (it is off)
  void* host_call_user_data;
  mv8_replies* replies;          // where host_call's answers go (required with host_call)
} mv8_request;

// When the phases of a run began and ended: readings of the monotonic clock (CLOCK_MONOTONIC,
// the clock of mv8_monotonic_ns), in nanoseconds; 0 where the run did not get to that point.
// A script runs in REPL mode (repl_script.h), where compiling it and running its top level are
// one call to V8: `evaluating`..`evaluated` covers both.
typedef struct {
  uint64_t started;      // the execution began (a live context's run: 0, it restores nothing)
  uint64_t restored;     // its isolate and context are ready: made, restored from the blob, or prepared
  uint64_t evaluating;   // the code is handed to V8 (compile + top level), after the run's scope is set
  uint64_t evaluated;    // it compiled and its top level ran (or it failed to compile)
  uint64_t settled;      // the event loop ran until the result settled, and it was serialised
  uint64_t snapshotted;  // the heap snapshot was made (only when one was asked for)
} mv8_phases;

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
  mv8_buffer* buffers;           // byte strings the result's markers name (bytes_result)
  size_t n_buffers;
  mv8_phases phases;
} mv8_response;

// Services the shim asks of the embedder for the web platform globals (web.h): WHATWG URL
// parsing and message digests, done by well-kept Rust crates. Set once, before
// mv8_initialize; a missing hook makes its JS API throw.
typedef struct {
  // What fetch answers where no origin is allowed (NUL-terminated, static).
  const char* fetch_off;
  // Parses `input` against `base` (NULL: none). 1 on success, with the URL's parts written
  // into *out (malloc'd) as UTF-8, each followed by a NUL: href, origin, protocol, username,
  // password, host, hostname, port, pathname, search, hash. 0: not a valid URL.
  int (*url_parse)(const char* input, size_t input_len, const char* base, size_t base_len, mv8_buffer* out);
  // Runs the WHATWG setter of part `part` (index in the list above) on the URL `href` with
  // `value`; 1 and the resulting parts as above, 0 when `href` does not parse.
  int (*url_set)(const char* href, size_t href_len, int part, const char* value, size_t value_len,
                 mv8_buffer* out);
  // Decodes UTF-8 as the WHATWG Encoding standard does (U+FFFD for each maximal invalid
  // subpart; `fatal`: 0 on the first error). With `stream`, an incomplete sequence at the end
  // is left: *consumed says how many bytes were decoded. 1: *out is the text (malloc'd UTF-8).
  int (*utf8_decode)(const uint8_t* data, size_t len, int fatal, int stream, mv8_buffer* out, size_t* consumed);
  // The digest of `data` with SHA-1 (1), SHA-256 (256), SHA-384 (384) or SHA-512 (512) into
  // `out` (64 bytes room); returns its length, 0 for another algorithm.
  size_t (*digest)(int algorithm, const uint8_t* data, size_t len, uint8_t* out);
} mv8_hooks;

void mv8_set_hooks(const mv8_hooks* hooks);

// Initialises V8 once per process and builds the base snapshot. Safe to call again.
// Returns 0 on success; otherwise *error receives a malloc'd message.
int mv8_initialize(char** error);
// Chooses V8 without its JIT compilers (--jitless: bytecode interpreter only, no
// WebAssembly) for this process. Only before V8 starts: returns 0 when the setting holds
// (set now, or already the one V8 started with), 1 when V8 already started otherwise.
int mv8_set_jitless(int jitless);
// 1 when V8 runs (or will start) without its JIT compilers.
int mv8_jitless(void);
const char* mv8_v8_version(void);
// The monotonic clock of mv8_phases, in nanoseconds (CLOCK_MONOTONIC on Linux).
uint64_t mv8_monotonic_ns(void);

mv8_control* mv8_control_new(void);
void mv8_control_free(mv8_control* control);
// Thread-safe; the first reason wins. Works before, during and after a run.
void mv8_control_terminate(mv8_control* control, int reason);

// Runs one execution: in `prepared` (made by mv8_isolate_new; may be NULL) when it fits the
// request, else in an isolate made now. Takes `prepared` either way: it is used once.
void mv8_execute(mv8_isolate* prepared, const mv8_request* request, mv8_response* response);
void mv8_response_free(mv8_response* response);

// ---- Prepared isolates: the isolate of an execution, made ahead of it (plain_isolate.h). ----
// An embedder that idles between executions makes the next one's isolate in the meantime; the
// execution then starts without creating one. Only the isolate of an execution that restores
// no heap and makes no snapshot can be prepared, and only the thread that made it runs it.
// Its time origin and the WebAssembly memory cap are set when the execution starts.

// Makes, on the calling thread, the isolate an execution with `options` would make (`snapshot`
// NULL, `snapshots` 0). NULL on failure, with the error in `response` (status MV8_INTERNAL).
mv8_isolate* mv8_isolate_new(const mv8_isolate_options* options, mv8_response* response);
void mv8_isolate_free(mv8_isolate* isolate);
// 1 when an execution with `options` on the calling thread would run in `isolate` (mv8_execute).
int mv8_isolate_fits(const mv8_isolate* isolate, const mv8_isolate_options* options);

// ---- Live contexts: one isolate whose globals persist across runs (live_context.h). ----
// Values cross as JSON text with byte strings beside it: a byte string stands in the JSON
// as {"\u0000mcp-v8:bytes": index} and is a Uint8Array in JavaScript (values.h).

typedef struct mv8_context mv8_context;

typedef struct {
  mv8_isolate_options isolate;   // `snapshots`: the context can make snapshots
  mv8_host_call_fn host_call;    // may be NULL: exposed functions then reject
  void* host_call_user_data;
} mv8_context_options;

enum { MV8_RUN_SCRIPT = 0, MV8_RUN_CALL = 1 };

typedef struct {
  int kind;                      // MV8_RUN_SCRIPT or MV8_RUN_CALL
  const char* code;              // the script, or the dotted path of the function to call
  size_t code_len;
  const char* args_json;         // MV8_RUN_CALL: a JSON array
  size_t args_len;
  const mv8_bytes* buffers;      // byte strings the arguments' markers name
  size_t n_buffers;
  mv8_run_options run;
} mv8_context_request;

typedef struct {
  uint64_t total_heap_size;
  uint64_t used_heap_size;
  uint64_t heap_size_limit;
  uint64_t total_physical_size;
  uint64_t malloced_memory;
  uint64_t external_memory;      // ArrayBuffer bytes counted by the context's budget
  uint64_t external_peak;
} mv8_heap_stats;

// NULL on failure, with the error in `response` (status MV8_INTERNAL).
mv8_context* mv8_context_new(const mv8_context_options* options, mv8_response* response);
// Disposes the isolate and stops the context's thread. Not while a call on it runs.
void mv8_context_free(mv8_context* context);
// Calls on one context are serialised: each waits for the previous one to end.
void mv8_context_run(mv8_context* context, const mv8_context_request* request, mv8_response* response);
// Defines the global `name` as an exposed function. 0 on success, else *error (malloc'd).
int mv8_context_expose(mv8_context* context, const char* name, size_t name_len, char** error);
// The raw blob of the context's heap in response->snapshot; the context goes on (re-created
// from that blob). MV8_INTERNAL when the context cannot make snapshots.
void mv8_context_snapshot(mv8_context* context, mv8_response* response);
// 1 when the context is closed (a run went over the heap cap). Any thread, any time.
int mv8_context_closed(mv8_context* context);
// MV8_COMPLETED, or MV8_CLOSED.
int mv8_context_heap_stats(mv8_context* context, mv8_heap_stats* stats);

// Where the answers to a context's calls out go; a reference of its own (free it).
mv8_replies* mv8_context_replies(mv8_context* context);
// A new inbox for the calls out of one execution (mv8_request.replies).
mv8_replies* mv8_replies_new(void);
void mv8_replies_free(mv8_replies* replies);
// ok = 1: `json` is the value; ok = 0: `json` is {"name": ..., "message": ...}. Any thread.
void mv8_replies_post(mv8_replies* replies, uint64_t call_id, int ok, const char* json, size_t json_len,
                      const mv8_bytes* buffers, size_t n_buffers);

#ifdef __cplusplus
}
#endif
