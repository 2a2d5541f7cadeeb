// Host functions: what the embedder adds to a bare V8 context (timers,
// queueMicrotask, the native side of console). They are installed once into the base
// snapshot and referenced by position in every snapshot, hence ExternalReferences().
#pragma once
#include <v8.h>

#include <string>

#include "shim.h"

namespace mv8 {

class EventLoop;
class HostCalls;

// Per-execution state the host functions reach through the isolate's data slot.
struct HostContext {
  EventLoop* loop = nullptr;
  HostCalls* calls = nullptr;  // a live context's calls out to the embedder; nullptr elsewhere
  // performance.timeOrigin: wall-clock and monotonic milliseconds (web.cc's clocks) when the
  // execution (or the live context) started; 0 = now.
  double origin_wall_ms = 0;
  double origin_mono_ms = 0;
  // Tool calls web.js holds for the embedder (answered {"held": true}): with nothing else to
  // wait for, the run suspends (EventLoop::Stop::kSuspended) instead of waiting.
  uint32_t held_tool_calls = 0;
  mv8_console_fn console = nullptr;
  void* console_user_data = nullptr;

  static constexpr uint32_t kSlot = 0;
  static HostContext* From(v8::Isolate* isolate) {
    return static_cast<HostContext*>(isolate->GetData(kSlot));
  }
};

namespace host {

// Null-terminated list of every native callback address, in the order of
// external_refs.inc; identical in the creator of a snapshot and every isolate restoring one.
const intptr_t* ExternalReferences();

// Defines `name` on `target` as a non-enumerable native function (not a constructor).
bool DefineFunction(v8::Local<v8::Context> context, v8::Local<v8::Object> target, const char* name,
                    v8::FunctionCallback callback);

// Installs setTimeout, setInterval, clearTimeout, clearInterval, queueMicrotask, console
// (cpp/js/console.js), the ES2023-ES2025 built-ins V8 10.2 lacks (cpp/js/builtins.js) and
// the web platform globals (cpp/js/web.js, over the natives of web.h) into `context`.
bool InstallGlobals(v8::Local<v8::Context> context, std::string* error);

}  // namespace host
}  // namespace mv8
