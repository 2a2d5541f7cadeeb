#include "v8_process.h"

#include <algorithm>
#include <string>

#include "host.h"
#include "stack_trace_limit.h"

namespace mv8 {

std::mutex V8Process::settings_mu_;
bool V8Process::started_ = false;
bool V8Process::jitless_ = false;

bool V8Process::SetJitless(bool jitless) {
  std::lock_guard<std::mutex> lock(settings_mu_);
  if (started_) return jitless_ == jitless;
  jitless_ = jitless;
  return true;
}

bool V8Process::Jitless() {
  std::lock_guard<std::mutex> lock(settings_mu_);
  return jitless_;
}

V8Process* V8Process::Get(std::string* error) {
  static std::once_flag once;
  static V8Process* process = nullptr;
  static std::string init_error;
  std::call_once(once, [] {
    auto* p = new V8Process();
    if (p->Initialize(&init_error)) {
      process = p;
    }  // a failed process is leaked on purpose: V8 cannot be initialised twice
  });
  if (process == nullptr && error != nullptr) *error = init_error;
  return process;
}

bool V8Process::Initialize(std::string* error) {
  // V8 would adler32 the whole blob again every time an isolate is created from it (the
  // base snapshot, or one being restored). Every blob it reads here was checked before:
  // the base snapshot never left this process, and a restored one is the decompression
  // of a payload whose SHA-256 the envelope verified (envelope.rs) before V8 saw a byte.
  // V8 still checksums, and verifies, each blob it creates.
  static const char kFlags[] = "--no-verify-snapshot-checksum";
  v8::V8::SetFlagsFromString(kFlags, sizeof kFlags - 1);
  {
    std::lock_guard<std::mutex> lock(settings_mu_);
    started_ = true;
    // No JIT compilers: V8 interprets bytecode only, and WebAssembly (which needs them) is
    // not exposed. The base snapshot below is built in the same mode; heaps carry no
    // machine code either way, so they restore in both.
    if (jitless_) {
      // --no-expose-wasm says what --jitless implies, without V8 warning on stderr.
      static const char kJitless[] = "--jitless --no-expose-wasm";
      v8::V8::SetFlagsFromString(kJitless, sizeof kJitless - 1);
    }
  }
  // Two worker threads: background compilation and GC helpers, not JS execution.
  platform_ = v8::platform::NewDefaultPlatform(2);
  v8::V8::InitializePlatform(platform_.get());
  if (!v8::V8::Initialize()) {
    *error = "V8 failed to initialise";
    return false;
  }
  v8::SnapshotCreator creator(host::ExternalReferences());
  v8::Isolate* isolate = creator.GetIsolate();
  {
    v8::HandleScope scope(isolate);
    v8::Local<v8::Context> context = v8::Context::New(isolate);
    v8::Context::Scope context_scope(context);
    if (!host::InstallGlobals(context, error)) return false;
    StackTraceLimit::Anchor(context);
    creator.SetDefaultContext(context);
  }
  base_ = creator.CreateBlob(v8::SnapshotCreator::FunctionCodeHandling::kKeep);
  if (base_.data == nullptr) {
    *error = "V8 could not create the base snapshot";
    return false;
  }
  return true;
}

void V8Process::SetHeapFlag(size_t heap_limit_bytes) {
  // 0 restores V8's own heuristics.
  std::string flag = "--max-old-space-size=" + std::to_string((heap_limit_bytes + (1 << 20) - 1) >> 20);
  v8::V8::SetFlagsFromString(flag.c_str(), flag.size());
}

void V8Process::SetWasmCap(size_t heap_limit_bytes) {
  // WebAssembly memories are reserved by V8's page allocator, not the ArrayBuffer
  // allocator, so their bound is this flag (64 KiB pages; 65536 is V8's default, 4 GiB).
  // V8 reads it when a memory is made or grows: with concurrent runs in one process the
  // cap of the run that started last applies (the service runs one at a time per process).
  size_t pages = heap_limit_bytes == 0 ? 65536 : std::max<size_t>(1, heap_limit_bytes >> 16);
  std::string flag = "--wasm-max-mem-pages=" + std::to_string(std::min<size_t>(pages, 65536));
  std::lock_guard<std::mutex> lock(create_mu_);
  v8::V8::SetFlagsFromString(flag.c_str(), flag.size());
}

v8::Isolate* V8Process::NewIsolate(v8::Isolate::CreateParams* params, size_t heap_limit_bytes) {
  if (heap_limit_bytes != 0) {
    params->constraints.ConfigureDefaultsFromHeapSize(0, heap_limit_bytes);
  }
  std::lock_guard<std::mutex> lock(create_mu_);
  SetHeapFlag(heap_limit_bytes);
  return v8::Isolate::New(*params);
}

std::unique_ptr<v8::SnapshotCreator> V8Process::NewSnapshotCreator(v8::StartupData* blob, size_t heap_limit_bytes) {
  std::lock_guard<std::mutex> lock(create_mu_);
  SetHeapFlag(heap_limit_bytes);
  return std::make_unique<v8::SnapshotCreator>(host::ExternalReferences(), blob);
}

}  // namespace mv8
