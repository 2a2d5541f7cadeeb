#include "runner.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "bounded_allocator.h"
#include "control.h"
#include "control_handle.h"
#include "errors.h"
#include "event_loop.h"
#include "host.h"
#include "serializer.h"
#include "v8_process.h"
#include "watchdog.h"

namespace mv8 {
namespace {

char* Dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  return p;
}

void SetError(mv8_response* r, const ErrorInfo& e) {
  r->error_name = e.is_error_object && !e.name.empty() ? Dup(e.name) : nullptr;
  r->error_message = Dup(e.message);
  r->error_stack = Dup(e.stack);
  r->error_line = e.line;
  r->error_column = e.column;
}

struct HeapGuard {
  v8::Isolate* isolate;
  bool hit = false;
  bool raised = false;

  static size_t OnNearLimit(void* data, size_t current, size_t initial) {
    auto* self = static_cast<HeapGuard*>(data);
    self->hit = true;
    self->isolate->TerminateExecution();
    // Room for V8 to unwind the terminated script instead of aborting the process.
    if (!self->raised) {
      self->raised = true;
      return current * 2;
    }
    return current + (16u << 20);
  }
};

class Execution {
 public:
  Execution(const mv8_request& req, mv8_response* resp, V8Process* process)
      : req_(req), resp_(resp), process_(process), budget_(req.heap_limit_bytes), allocator_(&budget_) {
    control_ = req.control != nullptr ? ControlOf(req.control) : std::make_shared<Control>();
  }

  void Run() {
    if (control_->reason() != 0) {
      Finish(End::kTerminated);
      return;
    }
    v8::StartupData blob = process_->base_snapshot()[0];
    if (req_.snapshot != nullptr) {
      blob.data = reinterpret_cast<const char*>(req_.snapshot);
      blob.raw_size = static_cast<int>(req_.snapshot_len);
    }
    if (req_.want_snapshot) {
      creator_ = process_->NewSnapshotCreator(&blob, req_.heap_limit_bytes);
      isolate_ = creator_->GetIsolate();
      bool adopted = req_.heap_limit_bytes != 0 && AdoptSnapshotAllocator(isolate_, &budget_);
      RunInIsolate();
      if (adopted) ReleaseSnapshotAllocator(isolate_);
      if (resp_->status == MV8_COMPLETED) {
        v8::StartupData out = creator_->CreateBlob(v8::SnapshotCreator::FunctionCodeHandling::kKeep);
        if (out.data == nullptr) {
          SetInternal("V8 could not create the heap snapshot");
        } else {
          // Handed over as V8 allocated it (new[]), not copied: mv8_response_free
          // releases it with delete[].
          resp_->snapshot = reinterpret_cast<uint8_t*>(const_cast<char*>(out.data));
          resp_->snapshot_len = static_cast<size_t>(out.raw_size);
        }
      }
      creator_.reset();
    } else {
      v8::Isolate::CreateParams params;
      params.snapshot_blob = &blob;
      params.external_references = host::ExternalReferences();
      params.array_buffer_allocator = &allocator_;
      isolate_ = process_->NewIsolate(&params, req_.heap_limit_bytes);
      {
        v8::Isolate::Scope isolate_scope(isolate_);
        RunInIsolate();
      }
      isolate_->Dispose();
    }
    resp_->external_bytes = budget_.peak();
  }

 private:
  enum class End { kCompleted, kFailed, kTerminated };

  void RunInIsolate() {
    HeapGuard guard{isolate_};
    isolate_->AddNearHeapLimitCallback(&HeapGuard::OnNearLimit, &guard);
    isolate_->SetMicrotasksPolicy(v8::MicrotasksPolicy::kExplicit);
    isolate_->SetPromiseRejectCallback(&EventLoop::OnPromiseReject);
    isolate_->AddMessageListener(&EventLoop::OnMessage);
    heap_guard_ = &guard;
    {
      v8::HandleScope handle_scope(isolate_);
      v8::Local<v8::Context> context = v8::Context::New(isolate_);
      v8::Context::Scope context_scope(context);
      EventLoop loop(isolate_, process_->platform(), control_.get());
      HostContext host;
      host.loop = &loop;
      host.console = req_.console;
      host.console_user_data = req_.console_user_data;
      isolate_->SetData(HostContext::kSlot, &host);
      control_->Attach(isolate_);
      std::optional<uint64_t> ticket;
      if (req_.timeout_secs > 0) {
        auto deadline = Control::Clock::now() + std::chrono::microseconds(static_cast<int64_t>(req_.timeout_secs * 1e6));
        ticket = Watchdog::Instance().Arm(deadline, control_);
      }

      End end = RunScript(context, &loop);

      if (ticket) Watchdog::Instance().Disarm(*ticket);
      control_->Detach();
      loop.Clear();
      v8::HeapStatistics stats;
      isolate_->GetHeapStatistics(&stats);
      resp_->heap_used_bytes = stats.used_heap_size();
      isolate_->SetData(HostContext::kSlot, nullptr);
      if (end == End::kCompleted && req_.want_snapshot) creator_->SetDefaultContext(context);
      Finish(end);
    }
    isolate_->RemoveMessageListeners(&EventLoop::OnMessage);
    isolate_->RemoveNearHeapLimitCallback(&HeapGuard::OnNearLimit, 0);
    heap_guard_ = nullptr;
  }

  bool terminated() const {
    return control_->reason() != 0 || (heap_guard_ != nullptr && heap_guard_->hit);
  }

  End RunScript(v8::Local<v8::Context> context, EventLoop* loop) {
    v8::Local<v8::Value> completion;
    {
      v8::TryCatch try_catch(isolate_);
      v8::Local<v8::String> source;
      v8::Local<v8::Script> script;
      const char* filename = req_.filename != nullptr ? req_.filename : "";  // Rust names it
      v8::ScriptOrigin origin(isolate_, v8::String::NewFromUtf8(isolate_, filename).ToLocalChecked());
      if (!v8::String::NewFromUtf8(isolate_, req_.code, v8::NewStringType::kNormal, static_cast<int>(req_.code_len))
               .ToLocal(&source)) {
        error_ = ErrorInfo::Plain("RangeError", "the source code is too long");
        return End::kFailed;
      }
      const bool compiled = v8::Script::Compile(context, source, &origin).ToLocal(&script);
      if (!compiled || !script->Run(context).ToLocal(&completion)) {
        if (try_catch.HasTerminated() || terminated()) return End::kTerminated;
        syntax_error_ = !compiled;
        error_ = ErrorInfo::FromException(isolate_, context, try_catch.Exception(), try_catch.Message());
        // Formatting the error runs user code too (getters, Error.prepareStackTrace).
        return terminated() ? End::kTerminated : End::kFailed;
      }
    }
    EventLoop::Stop stop = loop->Run(context, completion, [this] { return terminated(); });
    if (stop == EventLoop::Stop::kTerminated || terminated()) return End::kTerminated;
    if (stop == EventLoop::Stop::kError) {
      error_ = loop->error();
      return terminated() ? End::kTerminated : End::kFailed;
    }
    v8::Local<v8::Value> value = completion;
    if (completion->IsPromise()) {
      v8::Local<v8::Promise> promise = completion.As<v8::Promise>();
      if (promise->State() == v8::Promise::kRejected) {
        error_ = ErrorInfo::FromException(isolate_, context, promise->Result(), v8::Local<v8::Message>());
        return terminated() ? End::kTerminated : End::kFailed;
      }
      value = promise->Result();
    }
    // A string's JSON has at least as many bytes as the string has UTF-16 units, plus its
    // quotes: refuse one that cannot fit without serialising it first.
    if (req_.max_result_bytes != 0 && value->IsString() &&
        static_cast<uint64_t>(value.As<v8::String>()->Length()) + 2 > req_.max_result_bytes) {
      error_ = ErrorInfo::Plain("RangeError", "the result is a string of " +
                                                  std::to_string(value.As<v8::String>()->Length()) +
                                                  " characters, more than the limit of " +
                                                  std::to_string(req_.max_result_bytes) + " bytes of JSON");
      return End::kFailed;
    }
    if (!Serializer::ToJson(isolate_, context, value, &result_) || terminated()) return End::kTerminated;
    if (req_.max_result_bytes != 0 && result_.size() > req_.max_result_bytes) {
      error_ = ErrorInfo::Plain("RangeError", "the result is " + std::to_string(result_.size()) +
                                                  " bytes of JSON, more than the limit of " +
                                                  std::to_string(req_.max_result_bytes));
      result_.clear();
      return End::kFailed;
    }
    return End::kCompleted;
  }

  ErrorInfo TerminatedError(int* status) const {
    if (heap_guard_ != nullptr && heap_guard_->hit) {
      *status = MV8_FAILED;
      return HeapError();
    }
    if (control_->reason() == MV8_REASON_TIMEOUT) {
      *status = MV8_TIMED_OUT;
      char secs[32];
      std::snprintf(secs, sizeof secs, "%g", req_.timeout_secs);
      return ErrorInfo::Plain("TimeoutError", std::string("execution timed out after ") + secs + " s");
    }
    *status = MV8_CANCELLED;
    return ErrorInfo::Plain("CancelledError", "execution cancelled");
  }

  ErrorInfo HeapError() const {
    return ErrorInfo::Plain("HeapLimitError", "heap limit exceeded: the script used more than " +
                                                  std::to_string(req_.heap_limit_bytes >> 20) + " MB");
  }

  void Finish(End end) {
    switch (end) {
      case End::kCompleted:
        resp_->status = MV8_COMPLETED;
        resp_->result = Dup(result_);
        resp_->result_len = result_.size();
        break;
      case End::kFailed:
        resp_->status = MV8_FAILED;
        // An ArrayBuffer the budget refused surfaces as a RangeError: say why.
        if (budget_.refused() && error_.name == "RangeError") {
          resp_->heap_limit_exceeded = 1;
          error_.message += " (heap limit of " + std::to_string(req_.heap_limit_bytes >> 20) +
                            " MB includes ArrayBuffer memory)";
        }
        resp_->syntax_error = syntax_error_ ? 1 : 0;
        SetError(resp_, error_);
        break;
      case End::kTerminated: {
        int status = MV8_CANCELLED;
        ErrorInfo e = TerminatedError(&status);
        resp_->status = status;
        resp_->heap_limit_exceeded = heap_guard_ != nullptr && heap_guard_->hit;
        SetError(resp_, e);
        break;
      }
    }
  }

  void SetInternal(const std::string& message) {
    std::free(resp_->result);
    resp_->result = nullptr;
    resp_->result_len = 0;
    resp_->status = MV8_INTERNAL;
    SetError(resp_, ErrorInfo::Plain("InternalError", message));
  }

  const mv8_request& req_;
  mv8_response* resp_;
  V8Process* process_;
  std::shared_ptr<Control> control_;
  OffHeapBudget budget_;
  BoundedAllocator allocator_;
  std::unique_ptr<v8::SnapshotCreator> creator_;
  v8::Isolate* isolate_ = nullptr;
  HeapGuard* heap_guard_ = nullptr;
  ErrorInfo error_;
  bool syntax_error_ = false;  // the failure is the source not compiling
  std::string result_;
};

}  // namespace

void Execute(const mv8_request& request, mv8_response* response) {
  std::memset(response, 0, sizeof *response);
  std::string error;
  V8Process* process = V8Process::Get(&error);
  if (process == nullptr) {
    response->status = MV8_INTERNAL;
    SetError(response, ErrorInfo::Plain("InternalError", error));
    return;
  }
  Execution(request, response, process).Run();
}

}  // namespace mv8
