// Host functions: what the embedder adds to a bare V8 context (timers,
// queueMicrotask, the native side of console). They are installed once into the base
// snapshot and referenced by address in every snapshot, hence ExternalReferences().
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
  mv8_console_fn console = nullptr;
  void* console_user_data = nullptr;

  static constexpr uint32_t kSlot = 0;
  static HostContext* From(v8::Isolate* isolate) {
    return static_cast<HostContext*>(isolate->GetData(kSlot));
  }
};

namespace host {

// Null-terminated list of every native callback address; identical in the creator of
// a snapshot and in every isolate that restores one.
const intptr_t* ExternalReferences();

// Installs setTimeout, setInterval, clearTimeout, clearInterval, queueMicrotask and
// console (cpp/js/console.js) into `context`.
bool InstallGlobals(v8::Local<v8::Context> context, std::string* error);

}  // namespace host
}  // namespace mv8
