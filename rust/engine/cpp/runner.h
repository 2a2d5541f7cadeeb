// Runner: one execution, start to finish. Composes the pieces in this order:
//   isolate: a SnapshotCreator when a new snapshot is wanted (its off-heap budget adopted, its
//   hooks armed, heap cap first, then its context restored from the blob), else a PlainIsolate
//   (plain_isolate.h: the same, made just now or prepared ahead) -> the WebAssembly memory cap
//   of this run (V8Process::SetWasmCap) -> the run's scope: event loop, host context, time
//   origin, Control attached, deadline armed (RunScope) -> compile + run -> event loop
//   -> result promise -> JSON.
// Teardown runs in reverse: the run's scope ends (run_scope.h says in which order), the
// context is stashed for the snapshot, the hooks are disarmed, then the blob is created
// (SnapshotCreator) and the isolate disposed.
#pragma once
#include <memory>
#include <string>

#include "plain_isolate.h"
#include "shim.h"

namespace mv8 {

// `prepared`: an isolate made ahead (Prepare), used when it fits the request (Fits), else
// disposed and the execution makes its own.
void Execute(const mv8_request& request, mv8_response* response, std::unique_ptr<PlainIsolate> prepared = nullptr);

// Whether `prepared` is the isolate `options` would make (the base context, no snapshot to
// make, the same heap cap) and may run on this thread.
bool Fits(const PlainIsolate& prepared, const mv8_isolate_options& options);

// An isolate made now for a later execution with `options` on this thread; nullptr with
// *error when `options` cannot be prepared (a heap to restore, a snapshot to make) or V8 failed.
std::unique_ptr<PlainIsolate> Prepare(const mv8_isolate_options& options, std::string* error);

}  // namespace mv8
