#include "control.h"

#include <v8.h>

namespace mv8 {

void Control::Terminate(int reason) {
  std::lock_guard<std::mutex> lock(mu_);
  int none = 0;
  reason_.compare_exchange_strong(none, reason, std::memory_order_acq_rel);
  if (isolate_ != nullptr) isolate_->TerminateExecution();
  cv_.notify_all();
}

void Control::Attach(v8::Isolate* isolate) {
  std::lock_guard<std::mutex> lock(mu_);
  isolate_ = isolate;
  if (reason() != 0) isolate_->TerminateExecution();
}

void Control::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  isolate_ = nullptr;
}

void Control::WaitUntil(Clock::time_point until) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_until(lock, until, [this] { return reason() != 0 || woken_; });
  woken_ = false;
}

void Control::Wake() {
  std::lock_guard<std::mutex> lock(mu_);
  woken_ = true;
  cv_.notify_all();
}

}  // namespace mv8
