// Evaluation: one piece of code run to its end inside an entered context, and how it
// ended written into an mv8_response. Compile and run a script (or look up and call a
// function), run the event loop until no work is left, settle the result promise, turn
// the value into JSON; then the status, the result or the error. Shared by the one-shot
// runner (runner.cc) and live contexts (live_context.cc).
#pragma once
#include <v8.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bounded_allocator.h"
#include "control.h"
#include "errors.h"
#include "event_loop.h"
#include "shim.h"

namespace mv8 {

// The heap cap: V8's near-heap-limit callback terminates the script and gives V8 room to
// unwind it instead of aborting the process.
struct HeapGuard {
  v8::Isolate* isolate = nullptr;
  bool hit = false;
  bool raised = false;

  static size_t OnNearLimit(void* data, size_t current, size_t initial);
};

struct EvaluationLimits {
  uint64_t heap_limit_bytes = 0;  // for the messages; the cap itself is the HeapGuard's
  double timeout_secs = 0;        // for the message; the deadline itself is the Watchdog's
  uint64_t max_result_bytes = 0;  // 0 = unlimited
  bool bytes_result = false;      // ArrayBuffers and their views come back as byte strings

  // The limits of a run (`run`) in an isolate capped at `heap_limit_bytes`.
  static EvaluationLimits Of(const mv8_run_options& run, uint64_t heap_limit_bytes) {
    EvaluationLimits limits;
    limits.heap_limit_bytes = heap_limit_bytes;
    limits.timeout_secs = run.timeout_secs;
    limits.max_result_bytes = run.max_result_bytes;
    limits.bytes_result = run.bytes_result != 0;
    return limits;
  }
};

class Evaluation {
 public:
  // kSuspended: only tool calls web.js holds could settle the result (EventLoop::kSuspended);
  // the result promise is kept in the heap as globalThis[Symbol.for('mcp-v8.suspended')]
  // ({promise, repl}), where web.js's resume finds it.
  enum class End { kCompleted, kFailed, kTerminated, kSuspended };

  Evaluation(v8::Isolate* isolate, Control* control, const HeapGuard* guard, const OffHeapBudget* budget,
             EvaluationLimits limits)
      : isolate_(isolate), control_(control), guard_(guard), budget_(budget), limits_(limits) {}

  // Runs `code` as a REPL-mode script (repl_script.h) named `filename` in stack traces.
  End RunScript(v8::Local<v8::Context> context, EventLoop* loop, const char* code, size_t code_len,
                const char* filename);
  // Calls the function at the dotted `path` (its first name a global variable or property,
  // then properties; `this` is the object holding it, undefined for a plain name) with the
  // arguments of `args_json` (a JSON array, values.h markers allowed).
  End RunCall(v8::Local<v8::Context> context, EventLoop* loop, const std::string& path, const std::string& args_json,
              const std::vector<std::string>& buffers);
  // Ends the evaluation as failed with `error` instead (the embedder refused what it left).
  End Fail(ErrorInfo error) {
    error_ = std::move(error);
    result_.clear();
    buffers_.clear();
    return End::kFailed;
  }
  // Writes status, result, buffers, error and the phases it timed (evaluating, evaluated,
  // settled) into `response`.
  void Finish(End end, mv8_response* response);

  bool terminated() const { return control_->reason() != 0 || (guard_ != nullptr && guard_->hit); }

 private:
  // Runs the loop until `completion` settles and no work is left; `repl`: `completion` is a
  // REPL-mode script's promise (repl_script.h), unwrapped before it is awaited.
  End Settle(v8::Local<v8::Context> context, EventLoop* loop, v8::Local<v8::Value> completion, bool repl);
  End Suspend(v8::Local<v8::Context> context, v8::Local<v8::Value> completion, bool repl);
  // `script`: the user's script, when the error is in it (see ScriptBounds).
  End Failed(v8::Local<v8::Context> context, const v8::TryCatch& try_catch, const ScriptBounds* script = nullptr);
  ErrorInfo TerminatedError(int* status) const;

  v8::Isolate* isolate_;
  Control* control_;
  const HeapGuard* guard_;
  const OffHeapBudget* budget_;
  EvaluationLimits limits_;
  ErrorInfo error_;
  bool syntax_error_ = false;  // the failure is the source not compiling
  mv8_phases phases_{};        // the marks of the phases it ran through (MonotonicNs)
  std::string result_;
  std::vector<std::string> buffers_;
};

// The clock of mv8_phases: CLOCK_MONOTONIC, in nanoseconds.
uint64_t MonotonicNs();

// malloc'd copy of `s`, NUL-terminated (what mv8_response_free releases).
char* Dup(const std::string& s);
void SetError(mv8_response* response, const ErrorInfo& error);

}  // namespace mv8
