// Watchdog: one process-wide thread that enforces wall-clock deadlines by terminating
// the Control of each execution whose deadline passed. Cheaper than a thread per run.
// The thread is woken only when a new deadline is earlier than the one it sleeps until
// (a disarmed deadline is left to expire quietly), so back-to-back executions with the
// usual timeout cost it one wake-up per timeout period, not two per execution.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "control.h"

namespace mv8 {

class Watchdog {
 public:
  static Watchdog& Instance();

  // Arms a deadline; returns a ticket for Disarm.
  uint64_t Arm(Control::Clock::time_point deadline, std::shared_ptr<Control> control);
  void Disarm(uint64_t ticket);

 private:
  Watchdog() = default;
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  // When the thread wakes next (max(): it waits for a notification).
  Control::Clock::time_point waiting_until_ = Control::Clock::time_point::max();
  uint64_t next_ticket_ = 1;
  // Ordered by deadline, then ticket.
  std::map<std::pair<Control::Clock::time_point, uint64_t>, std::shared_ptr<Control>> queue_;
  std::map<uint64_t, Control::Clock::time_point> deadlines_;
};

}  // namespace mv8
