#include "runner.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "bounded_allocator.h"
#include "control.h"
#include "errors.h"
#include "evaluation.h"
#include "host.h"
#include "host_calls.h"
#include "plain_isolate.h"
#include "replies_handle.h"
#include "run_scope.h"
#include "stack_trace_limit.h"
#include "v8_process.h"

namespace mv8 {
namespace {

class Execution {
 public:
  Execution(const mv8_request& req, mv8_response* resp, V8Process* process, std::unique_ptr<PlainIsolate> prepared)
      : req_(req),
        resp_(resp),
        process_(process),
        prepared_(std::move(prepared)),
        budget_(req.isolate.heap_limit_bytes) {
    control_ = RunScope::ControlFor(req.run);
  }

  void Run() {
    resp_->phases.started = MonotonicNs();
    if (control_->reason() != 0) {
      Evaluation(nullptr, control_.get(), nullptr, nullptr, EvaluationLimits()).Finish(Evaluation::End::kTerminated, resp_);
      return;
    }
    v8::StartupData blob = process_->base_snapshot()[0];
    if (req_.isolate.snapshot != nullptr) {
      blob.data = reinterpret_cast<const char*>(req_.isolate.snapshot);
      blob.raw_size = static_cast<int>(req_.isolate.snapshot_len);
    }
    if (req_.isolate.snapshots) {
      creator_ = process_->NewSnapshotCreator(&blob, req_.isolate.heap_limit_bytes);
      isolate_ = creator_->GetIsolate();
      bool adopted = req_.isolate.heap_limit_bytes != 0 && AdoptSnapshotAllocator(isolate_, &budget_);
      process_->SetWasmCap(req_.isolate.heap_limit_bytes);
      IsolateHooks hooks;
      hooks.Arm(isolate_);
      {
        v8::HandleScope handle_scope(isolate_);
        v8::Local<v8::Context> context = v8::Context::New(isolate_);
        v8::Context::Scope context_scope(context);
        StackTraceLimit::Install(context);
        resp_->phases.restored = MonotonicNs();
        RunInContext(context, hooks, &budget_);
      }
      hooks.Disarm();
      if (adopted) ReleaseSnapshotAllocator(isolate_);
      if (resp_->status == MV8_COMPLETED || resp_->status == MV8_SUSPENDED) {
        v8::StartupData out = creator_->CreateBlob(v8::SnapshotCreator::FunctionCodeHandling::kKeep);
        if (out.data == nullptr) {
          SetInternal("V8 could not create the heap snapshot");
        } else {
          // Handed over as V8 allocated it (new[]), not copied: mv8_response_free
          // releases it with delete[].
          resp_->snapshot = reinterpret_cast<uint8_t*>(const_cast<char*>(out.data));
          resp_->snapshot_len = static_cast<size_t>(out.raw_size);
          resp_->phases.snapshotted = MonotonicNs();
        }
      }
      creator_.reset();
      resp_->external_bytes = budget_.peak();
    } else {
      std::unique_ptr<PlainIsolate> plain = std::move(prepared_);
      if (plain == nullptr) {
        std::string error;
        plain = PlainIsolate::New(process_, &blob, req_.isolate.heap_limit_bytes, &error);
        if (plain == nullptr) return SetInternal(error);
      }
      isolate_ = plain->isolate();
      process_->SetWasmCap(req_.isolate.heap_limit_bytes);
      {
        v8::Isolate::Scope isolate_scope(isolate_);
        v8::HandleScope handle_scope(isolate_);
        v8::Local<v8::Context> context = plain->context();
        v8::Context::Scope context_scope(context);
        resp_->phases.restored = MonotonicNs();
        RunInContext(context, plain->hooks(), plain->budget());
      }
      resp_->external_bytes = plain->budget()->peak();
    }
  }

 private:
  // Runs the script in `context` (entered), its isolate's hooks armed.
  void RunInContext(v8::Local<v8::Context> context, const IsolateHooks& hooks, OffHeapBudget* budget) {
    std::optional<HostCalls> calls;
    if (req_.host_call != nullptr && req_.replies != nullptr) {
      calls.emplace(req_.host_call, req_.host_call_user_data, req_.replies->replies);
    }
    Evaluation evaluation(isolate_, control_.get(), hooks.guard(), budget,
                          EvaluationLimits::Of(req_.run, req_.isolate.heap_limit_bytes));
    Evaluation::End end;
    {
      RunScope run(isolate_, process_->platform(), control_, calls ? &*calls : nullptr, req_.run, nullptr);
      const char* filename = req_.run.filename != nullptr ? req_.run.filename : "";  // Rust names it
      end = evaluation.RunScript(context, run.loop(), req_.code, req_.code_len, filename);
      resp_->heap_used_bytes = run.End();
    }
    if ((end == Evaluation::End::kCompleted || end == Evaluation::End::kSuspended) && req_.isolate.snapshots) {
      std::string why;
      if (StackTraceLimit::Stash(context, &why)) {
        creator_->SetDefaultContext(context);
      } else {
        end = evaluation.Fail(ErrorInfo::Plain("Error", why));
      }
    }
    evaluation.Finish(end, resp_);
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
  std::unique_ptr<PlainIsolate> prepared_;  // made ahead for this execution, or none
  std::shared_ptr<Control> control_;
  OffHeapBudget budget_;  // a SnapshotCreator's (a plain isolate has its own)
  std::unique_ptr<v8::SnapshotCreator> creator_;
  v8::Isolate* isolate_ = nullptr;
};

}  // namespace

void Execute(const mv8_request& request, mv8_response* response, std::unique_ptr<PlainIsolate> prepared) {
  std::memset(response, 0, sizeof *response);
  std::string error;
  V8Process* process = V8Process::Get(&error);
  if (process == nullptr) {
    response->status = MV8_INTERNAL;
    SetError(response, ErrorInfo::Plain("InternalError", error));
    return;
  }
  // Only where it fits: what the request would have made itself, on this thread.
  if (prepared != nullptr && !Fits(*prepared, request.isolate)) prepared.reset();
  Execution(request, response, process, std::move(prepared)).Run();
}

bool Fits(const PlainIsolate& prepared, const mv8_isolate_options& options) {
  return options.snapshot == nullptr && options.snapshots == 0 &&
         options.heap_limit_bytes == prepared.heap_limit_bytes() && prepared.OnThisThread();
}

std::unique_ptr<PlainIsolate> Prepare(const mv8_isolate_options& options, std::string* error) {
  if (options.snapshot != nullptr || options.snapshots != 0) {
    *error = "only an isolate from the base context that makes no snapshot can be prepared";
    return nullptr;
  }
  V8Process* process = V8Process::Get(error);
  if (process == nullptr) return nullptr;
  return PlainIsolate::New(process, process->base_snapshot(), options.heap_limit_bytes, error);
}

}  // namespace mv8
