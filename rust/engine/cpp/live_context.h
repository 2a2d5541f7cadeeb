// LiveContext: one isolate and one context whose globals persist from run to run, for
// embedders (the Python Context). All V8 work of a live context happens on a thread of its
// own: an isolate is bound to the thread that enters it (a SnapshotCreator enters its
// isolate for good on the thread that makes it, and V8's stack limit is that thread's).
// Calls from any thread are posted to it one at a time and wait for their answer; a
// cancel or a deadline reaches the run through its Control as in the one-shot runner.
//
// A context made with `snapshots` runs in a SnapshotCreator (no WebAssembly there in V8
// 10.2). Making a blob ends that isolate, so Snapshot() re-creates the context from the
// blob it just made: globals and exposed functions carry on, pending calls out do not.
// A run that hits the heap cap closes the context: the isolate is disposed and every
// later call answers MV8_CLOSED.
#pragma once
#include <v8.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "bounded_allocator.h"
#include "host.h"
#include "host_calls.h"
#include "run_scope.h"
#include "shim.h"
#include "v8_process.h"

namespace mv8 {

class LiveContext {
 public:
  // nullptr on failure, with *error set.
  static LiveContext* New(const mv8_context_options& options, std::string* error);
  ~LiveContext();

  void Run(const mv8_context_request& request, mv8_response* response);
  bool Expose(const std::string& name, std::string* error);
  void Snapshot(mv8_response* response);
  bool HeapStats(mv8_heap_stats* stats);
  std::shared_ptr<Replies> replies() const { return replies_; }
  // Safe from any thread, also while a run is in progress.
  bool closed() const { return closed_flag_.load(std::memory_order_acquire); }

 private:
  LiveContext(const mv8_context_options& options, V8Process* process);

  // Runs `job` on the context's thread and waits for it.
  void OnThread(const std::function<void()>& job);
  void ThreadMain();

  // On the context's thread.
  bool Create(std::string* error);
  void Dispose();
  void DoRun(const mv8_context_request& request, mv8_response* response);
  void DoSnapshot(mv8_response* response);
  void Closed(mv8_response* response) const;
  void Close(std::string why);

  V8Process* process_;
  const bool snapshots_;
  const uint64_t heap_limit_;
  OffHeapBudget budget_;
  BoundedAllocator allocator_;
  std::string blob_;                 // the raw blob the isolate was made from (V8 reads it lazily)
  v8::StartupData blob_data_{nullptr, 0};
  std::unique_ptr<v8::SnapshotCreator> creator_;
  bool adopted_ = false;             // the creator's allocator counts against budget_
  v8::Isolate* isolate_ = nullptr;
  v8::Global<v8::Context> context_;
  IsolateHooks hooks_;               // armed while isolate_ exists (run_scope.h)
  HostContext origin_;               // only its time origin: when the context was made
  std::shared_ptr<Replies> replies_ = std::make_shared<Replies>();
  HostCalls calls_;
  std::string closed_;               // why the context is closed; empty while it is open
  std::atomic<bool> closed_flag_{false};

  std::mutex call_mu_;               // one caller at a time
  std::mutex mu_;                    // guards job_, done_, stop_
  std::condition_variable cv_;
  const std::function<void()>* job_ = nullptr;
  bool done_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace mv8
