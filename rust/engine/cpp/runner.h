// Runner: one execution, start to finish. Composes the pieces in this order:
//   isolate (plain, or SnapshotCreator when a new snapshot is wanted)
//   -> heap cap (near-heap-limit callback) and off-heap budget (bounded allocator)
//   -> context restored from the snapshot blob -> Control attached, deadline armed
//   -> compile + run -> event loop -> result promise -> JSON -> snapshot blob.
// Teardown runs in reverse: deadline disarmed, Control detached, loop handles dropped,
// listeners removed, then the blob is created (SnapshotCreator) and the isolate
// disposed.
#pragma once
#include "shim.h"

namespace mv8 {

void Execute(const mv8_request& request, mv8_response* response);

}  // namespace mv8
