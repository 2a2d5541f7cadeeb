// EventLoop: timers, microtask checkpoints, unhandled-rejection tracking, replies to calls
// out to the embedder (HostCalls, in a live context) and the wait for a pending result
// promise. Runs until no work is left (no timer, no call waiting for its reply), an error
// escapes, or the execution is terminated (the Control wakes it from any wait; a reply
// wakes it too).
#pragma once
#include <v8.h>

#include <chrono>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "control.h"
#include "errors.h"
#include "host_calls.h"

namespace mv8 {

class EventLoop {
 public:
  enum class Stop { kIdle, kTerminated, kError, kSuspended };
  static constexpr size_t kMaxTimers = 1000000;

  EventLoop(v8::Isolate* isolate, v8::Platform* platform, Control* control, HostCalls* calls = nullptr);
  ~EventLoop();

  // Returns the timer id, or -1 when too many timers are pending. A timer that does not
  // keep the loop alive (AbortSignal.timeout's) fires only while something else does.
  double AddTimer(v8::Local<v8::Function> callback, const std::vector<v8::Local<v8::Value>>& args, double delay_ms,
                  bool repeat, bool keep_alive = true);
  void ClearTimer(double id);

  // Maps the value of a fulfilled result promise to the run's result (REPL mode's wrapper).
  using Unwrap = std::function<v8::Local<v8::Value>(v8::Local<v8::Value>)>;

  // `*result` may be a promise the loop waits for; `terminated` reports termination. With
  // `unwrap`, once that promise is fulfilled its value goes through `unwrap` (once), and what
  // comes out is the result, written to `*result` and waited for in turn when it is a promise.
  // A rejection of either promise is the run's result, never an unhandled rejection.
  // kSuspended: the result promise is pending and only tool calls web.js holds could settle
  // it (no call out pending, no timer that keeps the loop alive).
  Stop Run(v8::Local<v8::Context> context, v8::Local<v8::Value>* result, const std::function<bool()>& terminated,
           const Unwrap& unwrap = nullptr);

  // The error that stopped the loop (kError).
  const ErrorInfo& error() const { return error_; }

  // Drops every handle the loop holds (required before SnapshotCreator::CreateBlob).
  void Clear();

  static void OnPromiseReject(v8::PromiseRejectMessage message);
  // Exceptions thrown by microtask callbacks reach message listeners, not TryCatch.
  static void OnMessage(v8::Local<v8::Message> message, v8::Local<v8::Value> exception);

 private:
  using Clock = Control::Clock;
  struct Timer {
    v8::Global<v8::Function> callback;
    std::vector<v8::Global<v8::Value>> args;
    double interval_ms;
    bool repeat;
    bool keep_alive;
    Clock::time_point due;
  };

  void Forget(std::map<double, Timer>::iterator it);
  bool FireDue(v8::Local<v8::Context> context, const std::function<bool()>& terminated);
  // `first` and `result`: the promises whose rejection is the run's result.
  bool TakeUnhandledRejection(v8::Local<v8::Context> context, v8::Local<v8::Value> first, v8::Local<v8::Value> result);
  void PumpPlatform();

  v8::Isolate* isolate_;
  v8::Platform* platform_;
  Control* control_;
  HostCalls* calls_;
  double next_id_ = 1;
  std::map<double, Timer> timers_;
  size_t keep_alive_ = 0;  // timers that keep the loop alive
  std::map<std::pair<Clock::time_point, double>, double> queue_;  // (due, id) -> id
  std::vector<std::pair<v8::Global<v8::Promise>, v8::Global<v8::Value>>> rejections_;
  ErrorInfo error_;
  bool uncaught_ = false;
};

}  // namespace mv8
