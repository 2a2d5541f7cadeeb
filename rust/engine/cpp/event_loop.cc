#include "event_loop.h"

#include <libplatform/libplatform.h>

#include <algorithm>
#include <cmath>

#include "host.h"

namespace mv8 {

// While parked on a pending promise with no timer, the loop still looks at the
// platform's foreground tasks (WebAssembly compilation, for one) this often.
static constexpr auto kParkedPoll = std::chrono::milliseconds(5);

EventLoop::EventLoop(v8::Isolate* isolate, v8::Platform* platform, Control* control, HostCalls* calls)
    : isolate_(isolate), platform_(platform), control_(control), calls_(calls) {}

EventLoop::~EventLoop() { Clear(); }

double EventLoop::AddTimer(v8::Local<v8::Function> callback, const std::vector<v8::Local<v8::Value>>& args,
                           double delay_ms, bool repeat, bool keep_alive) {
  if (timers_.size() >= kMaxTimers) return -1;
  if (!std::isfinite(delay_ms) || delay_ms < 1) delay_ms = 1;
  if (delay_ms > 2147483647.0) delay_ms = 1;  // as Node and browsers: overflow means 1 ms
  double id = next_id_++;
  Timer timer;
  timer.callback.Reset(isolate_, callback);
  for (auto& a : args) timer.args.emplace_back(isolate_, a);
  timer.interval_ms = delay_ms;
  timer.repeat = repeat;
  timer.keep_alive = keep_alive;
  if (keep_alive) keep_alive_++;
  timer.due = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(delay_ms * 1000));
  queue_.emplace(std::make_pair(timer.due, id), id);
  timers_.emplace(id, std::move(timer));
  return id;
}

void EventLoop::ClearTimer(double id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  queue_.erase(std::make_pair(it->second.due, id));
  Forget(it);
}

void EventLoop::Forget(std::map<double, Timer>::iterator it) {
  if (it->second.keep_alive) keep_alive_--;
  timers_.erase(it);
}

void EventLoop::Clear() {
  timers_.clear();
  queue_.clear();
  keep_alive_ = 0;
  rejections_.clear();
}

void EventLoop::OnPromiseReject(v8::PromiseRejectMessage message) {
  v8::Local<v8::Promise> promise = message.GetPromise();
  v8::Isolate* isolate = promise->GetIsolate();
  HostContext* host = HostContext::From(isolate);
  if (host == nullptr || host->loop == nullptr) return;
  EventLoop* loop = host->loop;
  auto& list = loop->rejections_;
  switch (message.GetEvent()) {
    case v8::kPromiseRejectWithNoHandler:
      list.emplace_back(v8::Global<v8::Promise>(isolate, promise), v8::Global<v8::Value>(isolate, message.GetValue()));
      break;
    case v8::kPromiseHandlerAddedAfterReject:
      list.erase(std::remove_if(list.begin(), list.end(), [&](auto& entry) { return entry.first == promise; }),
                 list.end());
      break;
    default:
      break;
  }
}

void EventLoop::OnMessage(v8::Local<v8::Message> message, v8::Local<v8::Value> exception) {
  v8::Isolate* isolate = message->GetIsolate();
  HostContext* host = HostContext::From(isolate);
  if (host == nullptr || host->loop == nullptr || host->loop->uncaught_) return;
  host->loop->error_ = ErrorInfo::FromException(isolate, isolate->GetCurrentContext(), exception, message);
  host->loop->uncaught_ = true;
}

bool EventLoop::TakeUnhandledRejection(v8::Local<v8::Context> context, v8::Local<v8::Value> first,
                                       v8::Local<v8::Value> result) {
  for (auto& entry : rejections_) {
    v8::Local<v8::Promise> promise = entry.first.Get(isolate_);
    if (promise == first || promise == result) continue;  // reported as the result
    error_ = ErrorInfo::FromException(isolate_, context, entry.second.Get(isolate_), v8::Local<v8::Message>());
    error_.stack = "Unhandled promise rejection: " + error_.stack;
    return true;
  }
  rejections_.clear();
  return false;
}

void EventLoop::PumpPlatform() {
  while (v8::platform::PumpMessageLoop(platform_, isolate_, v8::platform::MessageLoopBehavior::kDoNotWait)) {
  }
}

bool EventLoop::FireDue(v8::Local<v8::Context> context, const std::function<bool()>& terminated) {
  auto first = queue_.begin();
  double id = first->second;
  queue_.erase(first);
  auto it = timers_.find(id);
  if (it == timers_.end()) return true;
  v8::HandleScope scope(isolate_);
  v8::Local<v8::Function> callback = it->second.callback.Get(isolate_);
  std::vector<v8::Local<v8::Value>> args;
  for (auto& a : it->second.args) args.push_back(a.Get(isolate_));
  if (it->second.repeat) {
    it->second.due = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(it->second.interval_ms * 1000));
    queue_.emplace(std::make_pair(it->second.due, id), id);
  } else {
    Forget(it);
  }
  v8::TryCatch try_catch(isolate_);
  if (callback->Call(context, context->Global(), static_cast<int>(args.size()), args.data()).IsEmpty()) {
    if (try_catch.HasTerminated() || terminated()) return false;
    error_ = ErrorInfo::FromException(isolate_, context, try_catch.Exception(), try_catch.Message());
    return false;
  }
  return true;
}

EventLoop::Stop EventLoop::Run(v8::Local<v8::Context> context, v8::Local<v8::Value>* result,
                               const std::function<bool()>& terminated, const Unwrap& unwrap) {
  const v8::Local<v8::Value> first = *result;
  bool unwrapped = !unwrap;
  v8::Local<v8::Promise> promise;
  if (!first.IsEmpty() && first->IsPromise()) promise = first.As<v8::Promise>();
  for (;;) {
    {
      v8::TryCatch try_catch(isolate_);
      isolate_->PerformMicrotaskCheckpoint();
    }
    if (terminated()) return Stop::kTerminated;
    if (uncaught_) return Stop::kError;
    if (!unwrapped && !promise.IsEmpty() && promise->State() == v8::Promise::kFulfilled) {
      // Before the rejections are looked at: a rejected promise that is the script's value
      // is its result, not an unhandled rejection.
      unwrapped = true;
      *result = unwrap(promise->Result());
      if (terminated()) return Stop::kTerminated;
      promise = (*result)->IsPromise() ? result->As<v8::Promise>() : v8::Local<v8::Promise>();
    }
    if (TakeUnhandledRejection(context, first, *result)) return Stop::kError;
    PumpPlatform();
    if (calls_ != nullptr && calls_->Deliver(context)) continue;  // settled promises: microtasks first
    if (terminated()) return Stop::kTerminated;
    bool pending = !promise.IsEmpty() && promise->State() == v8::Promise::kPending;
    bool waiting = pending || (calls_ != nullptr && calls_->pending());
    if (!waiting && keep_alive_ == 0) return Stop::kIdle;  // only timers that do not keep it alive
    if (pending && keep_alive_ == 0 && !(calls_ != nullptr && calls_->pending())) {
      HostContext* host = HostContext::From(isolate_);
      if (host != nullptr && host->held_tool_calls > 0) return Stop::kSuspended;
    }
    if (queue_.empty()) {
      // Parked: only a cancel, the deadline, a reply or a platform task can change anything.
      control_->WaitUntil(Clock::now() + kParkedPoll);
      continue;
    }
    Clock::time_point due = queue_.begin()->first.first;
    if (Clock::now() < due) {
      control_->WaitUntil(due);
      continue;
    }
    if (!FireDue(context, terminated)) return terminated() ? Stop::kTerminated : Stop::kError;
  }
}

}  // namespace mv8
