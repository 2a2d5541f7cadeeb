// Control: the thread-safe termination handle of one execution. Any thread may ask it
// to terminate (cancel, timeout); the running execution attaches its isolate so the
// request reaches V8, and waits on it in the event loop so the request also wakes a
// script that is parked on a timer or a pending promise.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace v8 { class Isolate; }

namespace mv8 {

class Control {
 public:
  using Clock = std::chrono::steady_clock;

  // Records `reason` (the first one wins), terminates the attached isolate if any and
  // wakes the event loop. Safe from any thread, at any time.
  void Terminate(int reason);
  int reason() const { return reason_.load(std::memory_order_acquire); }

  // Called by the executing thread. Attach terminates at once when a reason was set
  // before the isolate existed.
  void Attach(v8::Isolate* isolate);
  void Detach();

  // Sleeps until `until` or until Terminate/Wake is called. A Wake that came before the
  // wait ends the next wait at once (it is never lost between a check and the wait).
  void WaitUntil(Clock::time_point until);
  // Ends the current or next WaitUntil early: work arrived from another thread.
  void Wake();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  v8::Isolate* isolate_ = nullptr;
  bool woken_ = false;
  std::atomic<int> reason_{0};
};

}  // namespace mv8
