// What a run of code needs around it, set up and taken down in one place for the one-shot
// runner (runner.cc) and for every run of a live context (live_context.cc). Two lifetimes:
//
// IsolateHooks: the isolate's, armed once it exists (before its context is created: restoring a
// large heap may already reach the cap) and disarmed before a snapshot blob is made or the
// isolate is disposed. A one-shot execution's isolate lives for one run; a live context's for
// many, and V8 keeps message listeners in a list on the heap that a removal does not shrink, so
// they are installed once per isolate, not once per run.
//   Arm:    1. the heap cap's near-limit callback (HeapGuard, from a fresh state)
//           2. explicit microtask checkpoints (the event loop runs them)
//           3. the promise-reject callback (unhandled rejections)
//           4. the message listener (errors thrown by microtask callbacks)
//   Disarm: 4, 3, 1 in reverse. The listener goes first: it lives on the heap with the
//           callback's address, no external reference, and would not serialise.
//
// RunScope: one run's, made in an entered isolate and context just before the code runs;
// End() (or the destructor) takes it down.
//   Setup:     1. the event loop (timers, microtasks, replies to calls out)
//              2. the HostContext (loop, calls out, console, time origin) in the isolate's data
//                 slot, where the host functions find it
//              3. the run's Control as the waiter of the calls' replies inbox (a reply wakes
//                 the loop)
//              4. the Control attached to the isolate (a cancel reaches V8)
//              5. the deadline armed in the watchdog
//   Teardown:  5. the deadline disarmed: no timeout fires once the run is over
//              4. the Control detached: a later cancel no longer reaches this isolate
//              3. the waiter cleared: a late reply wakes nothing
//              1. the loop's handles dropped, then the pending calls out forgotten (their
//                 promises never settle): no handle may outlive the run, a snapshot may follow
//              -  a termination that raced the end of the run cancelled, so that it reaches
//                 neither the snapshot nor the next run
//              -  the heap in use read (End returns it)
//              2. the HostContext taken out of the slot
#pragma once
#include <v8.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "control.h"
#include "evaluation.h"
#include "event_loop.h"
#include "host.h"
#include "host_calls.h"
#include "shim.h"

namespace mv8 {

class IsolateHooks {
 public:
  // Installs the hooks on `isolate`, the heap guard from a fresh state.
  void Arm(v8::Isolate* isolate);
  // Removes them; does nothing when they are not armed. Not done by a destructor: a live
  // context freed from inside its own run leaves its isolate to its thread.
  void Disarm();

  const HeapGuard* guard() const { return &guard_; }
  // The heap cap stopped a script (it stays set after Disarm, until the next Arm).
  bool heap_limit_hit() const { return guard_.hit; }

 private:
  v8::Isolate* isolate_ = nullptr;
  HeapGuard guard_;
};

class RunScope {
 public:
  // The Control of a run: the caller's, or one of the run's own.
  static std::shared_ptr<Control> ControlFor(const mv8_run_options& run);

  // `calls`: the run's calls out (nullptr: none; fetch rejects then). `origin`: the time origin
  // the run's scripts see (nullptr: now, for an execution).
  RunScope(v8::Isolate* isolate, v8::Platform* platform, std::shared_ptr<Control> control, HostCalls* calls,
           const mv8_run_options& run, const HostContext* origin);
  ~RunScope() { End(); }
  RunScope(const RunScope&) = delete;
  RunScope& operator=(const RunScope&) = delete;

  EventLoop* loop() { return &loop_; }

  // Takes the run down in the order above; returns the V8 heap in use at its end. Later calls
  // return the same figure.
  uint64_t End();

 private:
  v8::Isolate* isolate_;
  std::shared_ptr<Control> control_;
  HostCalls* calls_;
  EventLoop loop_;
  HostContext host_;
  std::optional<uint64_t> ticket_;
  bool ended_ = false;
  uint64_t heap_used_ = 0;
};

}  // namespace mv8
