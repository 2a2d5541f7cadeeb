// V8Process: everything V8 needs once per process. Initialises the platform and V8,
// builds the base snapshot (a context with console, timers and queueMicrotask
// installed) that every execution starts from, and creates isolates.
//
// Isolate creation is serialised under one lock: in V8 10.2 the SnapshotCreator takes
// no CreateParams, so its heap cap is set through --max-old-space-size, a process-wide
// flag that V8 reads while it configures a new heap (and that overrides
// ResourceConstraints); every isolate is therefore created with the flag set to its
// own cap. The other flag of a cap, the WebAssembly memory bound, is set when a run starts
// (SetWasmCap), not when its isolate is made: an isolate made ahead of its run (plain_isolate.h)
// must not change the bound of another that runs.
#pragma once
#include <libplatform/libplatform.h>
#include <v8.h>

#include <memory>
#include <mutex>
#include <string>

namespace mv8 {

class V8Process {
 public:
  // Returns nullptr and fills *error when initialisation failed.
  static V8Process* Get(std::string* error);

  // --jitless for this process: settable until V8 starts (Get); false when it already
  // started with the other setting. V8 flags are process-wide.
  static bool SetJitless(bool jitless);
  static bool Jitless();

  v8::Platform* platform() const { return platform_.get(); }
  const v8::StartupData* base_snapshot() const { return &base_; }

  v8::Isolate* NewIsolate(v8::Isolate::CreateParams* params, size_t heap_limit_bytes);
  std::unique_ptr<v8::SnapshotCreator> NewSnapshotCreator(v8::StartupData* blob, size_t heap_limit_bytes);
  // The process-wide bound of WebAssembly memories, for a run about to start in an isolate
  // capped at `heap_limit_bytes` (0: V8's default, 4 GiB).
  void SetWasmCap(size_t heap_limit_bytes);

 private:
  V8Process() = default;
  bool Initialize(std::string* error);
  void SetHeapFlag(size_t heap_limit_bytes);

  static std::mutex settings_mu_;
  static bool started_;   // under settings_mu_: V8 read the settings
  static bool jitless_;   // under settings_mu_

  std::unique_ptr<v8::Platform> platform_;
  v8::StartupData base_{nullptr, 0};
  std::mutex create_mu_;
};

}  // namespace mv8
