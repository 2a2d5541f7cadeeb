#include "run_scope.h"

#include <chrono>

#include "control_handle.h"
#include "watchdog.h"
#include "web.h"

namespace mv8 {

void IsolateHooks::Arm(v8::Isolate* isolate) {
  isolate_ = isolate;
  guard_ = HeapGuard();
  guard_.isolate = isolate;
  isolate->AddNearHeapLimitCallback(&HeapGuard::OnNearLimit, &guard_);
  isolate->SetMicrotasksPolicy(v8::MicrotasksPolicy::kExplicit);
  isolate->SetPromiseRejectCallback(&EventLoop::OnPromiseReject);
  isolate->AddMessageListener(&EventLoop::OnMessage);
}

void IsolateHooks::Disarm() {
  if (isolate_ == nullptr) return;
  isolate_->RemoveMessageListeners(&EventLoop::OnMessage);
  isolate_->SetPromiseRejectCallback(nullptr);
  isolate_->RemoveNearHeapLimitCallback(&HeapGuard::OnNearLimit, 0);
  isolate_ = nullptr;
}

std::shared_ptr<Control> RunScope::ControlFor(const mv8_run_options& run) {
  return run.control != nullptr ? ControlOf(run.control) : std::make_shared<Control>();
}

RunScope::RunScope(v8::Isolate* isolate, v8::Platform* platform, std::shared_ptr<Control> control, HostCalls* calls,
                   const mv8_run_options& run, const HostContext* origin)
    : isolate_(isolate), control_(std::move(control)), calls_(calls), loop_(isolate, platform, control_.get(), calls) {
  host_.loop = &loop_;
  host_.calls = calls;
  host_.console = run.console;
  host_.console_user_data = run.console_user_data;
  if (origin != nullptr) {
    host_.origin_wall_ms = origin->origin_wall_ms;
    host_.origin_mono_ms = origin->origin_mono_ms;
  } else {
    web::StampOrigin(&host_);
  }
  isolate_->SetData(HostContext::kSlot, &host_);
  if (calls_ != nullptr) calls_->replies()->SetWaiter(control_);
  control_->Attach(isolate_);
  if (run.timeout_secs > 0) {
    auto deadline = Control::Clock::now() + std::chrono::microseconds(static_cast<int64_t>(run.timeout_secs * 1e6));
    ticket_ = Watchdog::Instance().Arm(deadline, control_);
  }
}

uint64_t RunScope::End() {
  if (ended_) return heap_used_;
  ended_ = true;
  if (ticket_) Watchdog::Instance().Disarm(*ticket_);
  control_->Detach();
  if (calls_ != nullptr) calls_->replies()->SetWaiter(nullptr);
  loop_.Clear();
  if (calls_ != nullptr) calls_->Clear();
  isolate_->CancelTerminateExecution();
  v8::HeapStatistics stats;
  isolate_->GetHeapStatistics(&stats);
  heap_used_ = stats.used_heap_size();
  isolate_->SetData(HostContext::kSlot, nullptr);
  return heap_used_;
}

}  // namespace mv8
