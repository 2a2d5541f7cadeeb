// StackTraceLimit: `Error.stackTraceLimit` in every context, and never in a snapshot.
//
// V8 installs `Error.stackTraceLimit` (10) on the intrinsic Error function of every context a
// plain isolate creates, restored ones included, with an "add" that assumes the property is
// absent: restoring a blob whose Error already has it leaves the property unreadable. A
// SnapshotCreator isolate installs none, so without it stack traces are off (`e.stack` is
// undefined and errors lose their positions). Hence:
// - Install, on every context before user code runs: puts back what Stash kept, else defines
//   the property as V8 does (10) where it is missing;
// - Stash, before a snapshot is made: takes the property off the intrinsic Error and keeps it,
//   unless it is V8's default, under a private symbol (invisible to scripts) for Install.
// The intrinsic is found through an anchor the base snapshot keeps (a private symbol on the
// global object) whatever a script did to the global `Error`; in heaps older than the anchor
// through checks that only the intrinsic passes, and the anchor is set then.
#pragma once
#include <v8.h>

#include <string>

namespace mv8 {

class StackTraceLimit {
 public:
  // Before the base snapshot is made, in its fresh context.
  static void Anchor(v8::Local<v8::Context> context);
  // Returns false (and says why) when the property cannot be taken off (a script made it
  // non-configurable): no snapshot can be made of the context then.
  static bool Stash(v8::Local<v8::Context> context, std::string* why);
  static void Install(v8::Local<v8::Context> context);
};

}  // namespace mv8
