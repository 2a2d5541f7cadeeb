#include "watchdog.h"

#include <thread>

#include "shim.h"

namespace mv8 {

Watchdog& Watchdog::Instance() {
  // Never destroyed: the thread may outlive static destructors at process exit.
  static Watchdog* instance = new Watchdog();
  return *instance;
}

uint64_t Watchdog::Arm(Control::Clock::time_point deadline, std::shared_ptr<Control> control) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!started_) {
    std::thread([this] { Loop(); }).detach();
    started_ = true;
  }
  uint64_t ticket = next_ticket_++;
  queue_.emplace(std::make_pair(deadline, ticket), std::move(control));
  deadlines_.emplace(ticket, deadline);
  if (deadline < waiting_until_) {
    waiting_until_ = deadline;  // the thread re-reads the queue as soon as it runs
    cv_.notify_all();
  }
  return ticket;
}

void Watchdog::Disarm(uint64_t ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = deadlines_.find(ticket);
  if (it == deadlines_.end()) return;
  queue_.erase(std::make_pair(it->second, ticket));
  deadlines_.erase(it);
}

void Watchdog::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (queue_.empty()) {
      waiting_until_ = Control::Clock::time_point::max();
      cv_.wait(lock);
      continue;
    }
    auto first = queue_.begin();
    if (Control::Clock::now() < first->first.first) {
      waiting_until_ = first->first.first;
      cv_.wait_until(lock, waiting_until_);
      continue;
    }
    std::shared_ptr<Control> due = std::move(first->second);
    deadlines_.erase(first->first.second);
    queue_.erase(first);
    lock.unlock();
    due->Terminate(MV8_REASON_TIMEOUT);
    lock.lock();
  }
}

}  // namespace mv8
