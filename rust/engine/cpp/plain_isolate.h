// PlainIsolate: the isolate of one execution that makes no snapshot, ready to run a script: the
// isolate (capped, with its off-heap budget and bounded allocator), its hooks armed
// (run_scope.h) and its context made from the startup blob. The runner makes one just before
// the execution, or takes one made ahead of it (a prepared isolate, mv8_isolate_new): the same
// object either way, used for one execution and then disposed.
//
// Preparing ahead is the same work done earlier, with two rules:
// - on the thread that will run it: V8 binds an isolate to the thread that makes it (its stack
//   limit is that thread's), and the shim takes no v8::Locker; a prepared isolate offered on
//   another thread is not used (the runner makes a fresh one).
// - nothing of the run is fixed at preparation: the time origin is stamped when the run starts
//   (RunScope), and so is the process-wide WebAssembly memory cap (V8Process::SetWasmCap): making
//   an isolate sets only the heap-size flag it is created with, so preparing one never changes
//   the cap of another that runs.
//
// Teardown (the destructor): the context handle, the hooks disarmed, the isolate disposed, then
// the allocator and budget it counted against.
#pragma once
#include <v8.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "bounded_allocator.h"
#include "run_scope.h"
#include "v8_process.h"

namespace mv8 {

class PlainIsolate {
 public:
  // From `blob` (kept by the caller while the isolate lives), capped at `heap_limit_bytes`
  // (0: V8's default). nullptr with *error set when V8 could not make it.
  static std::unique_ptr<PlainIsolate> New(V8Process* process, const v8::StartupData* blob,
                                           uint64_t heap_limit_bytes, std::string* error);
  ~PlainIsolate();
  PlainIsolate(const PlainIsolate&) = delete;
  PlainIsolate& operator=(const PlainIsolate&) = delete;

  v8::Isolate* isolate() const { return isolate_; }
  // In a HandleScope of the entered isolate.
  v8::Local<v8::Context> context() const { return context_.Get(isolate_); }
  const IsolateHooks& hooks() const { return hooks_; }
  OffHeapBudget* budget() { return &budget_; }
  uint64_t heap_limit_bytes() const { return heap_limit_; }
  bool OnThisThread() const { return thread_ == std::this_thread::get_id(); }

 private:
  explicit PlainIsolate(uint64_t heap_limit_bytes)
      : heap_limit_(heap_limit_bytes), budget_(heap_limit_bytes), allocator_(&budget_) {}

  const uint64_t heap_limit_;
  OffHeapBudget budget_;
  BoundedAllocator allocator_;
  v8::StartupData blob_{nullptr, 0};
  v8::Isolate* isolate_ = nullptr;
  IsolateHooks hooks_;
  v8::Global<v8::Context> context_;
  std::thread::id thread_ = std::this_thread::get_id();
};

}  // namespace mv8
