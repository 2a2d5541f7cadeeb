// Runner: one execution, start to finish. Composes the pieces in this order:
//   isolate (plain, or SnapshotCreator when a new snapshot is wanted) with its off-heap
//   budget (bounded allocator) -> the isolate's hooks, heap cap first (IsolateHooks)
//   -> context restored from the snapshot blob -> the run's scope: event loop, host
//   context, Control attached, deadline armed (RunScope) -> compile + run -> event loop
//   -> result promise -> JSON.
// Teardown runs in reverse: the run's scope ends (run_scope.h says in which order), the
// context is stashed for the snapshot, the hooks are disarmed, then the blob is created
// (SnapshotCreator) and the isolate disposed.
#pragma once
#include "shim.h"

namespace mv8 {

void Execute(const mv8_request& request, mv8_response* response);

}  // namespace mv8
