#include "live_context.h"

#include <cstring>

#include "evaluation.h"
#include "host.h"
#include "stack_trace_limit.h"
#include "web.h"

namespace mv8 {

LiveContext::LiveContext(const mv8_context_options& options, V8Process* process)
    : process_(process),
      snapshots_(options.isolate.snapshots != 0),
      heap_limit_(options.isolate.heap_limit_bytes),
      budget_(options.isolate.heap_limit_bytes),
      allocator_(&budget_),
      calls_(options.host_call, options.host_call_user_data, replies_) {
  if (options.isolate.snapshot != nullptr) {
    blob_.assign(reinterpret_cast<const char*>(options.isolate.snapshot), options.isolate.snapshot_len);
  }
}

LiveContext* LiveContext::New(const mv8_context_options& options, std::string* error) {
  V8Process* process = V8Process::Get(error);
  if (process == nullptr) return nullptr;
  std::unique_ptr<LiveContext> live(new LiveContext(options, process));
  live->thread_ = std::thread([self = live.get()] { self->ThreadMain(); });
  bool created = false;
  live->OnThread([&] { created = live->Create(error); });
  if (!created) return nullptr;  // the destructor stops the thread
  return live.release();
}

LiveContext::~LiveContext() {
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id()) {
      // Freed from inside one of its own runs (cannot happen through the Python API, which
      // holds the context while it runs): leave the thread, leak the isolate.
      thread_.detach();
      return;
    }
    OnThread([this] { Dispose(); });
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
}

void LiveContext::ThreadMain() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || (job_ != nullptr && !done_); });
    if (stop_) return;
    const std::function<void()>* job = job_;
    lock.unlock();
    try {
      (*job)();
    } catch (...) {
      // Every job writes its own failure; nothing may escape the thread.
    }
    lock.lock();
    done_ = true;
    cv_.notify_all();
  }
}

void LiveContext::OnThread(const std::function<void()>& job) {
  std::lock_guard<std::mutex> call(call_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  job_ = &job;
  done_ = false;
  cv_.notify_all();
  cv_.wait(lock, [this] { return done_; });
  job_ = nullptr;
}

bool LiveContext::Create(std::string* error) {
  budget_.Reset();
  blob_data_ = blob_.empty() ? *process_->base_snapshot()
                             : v8::StartupData{blob_.data(), static_cast<int>(blob_.size())};
  if (snapshots_) {
    creator_ = process_->NewSnapshotCreator(&blob_data_, heap_limit_);
    isolate_ = creator_->GetIsolate();
    adopted_ = heap_limit_ != 0 && AdoptSnapshotAllocator(isolate_, &budget_);
  } else {
    v8::Isolate::CreateParams params;
    params.snapshot_blob = &blob_data_;
    params.external_references = host::ExternalReferences();
    params.array_buffer_allocator = &allocator_;
    isolate_ = process_->NewIsolate(&params, heap_limit_);
  }
  if (isolate_ == nullptr) {
    *error = "V8 could not create an isolate";
    return false;
  }
  if (origin_.origin_wall_ms == 0) web::StampOrigin(&origin_);
  hooks_.Arm(isolate_);
  v8::Isolate::Scope isolate_scope(isolate_);
  v8::HandleScope handle_scope(isolate_);
  v8::Local<v8::Context> context = v8::Context::New(isolate_);
  if (context.IsEmpty()) {
    *error = "V8 could not create the context";
    return false;
  }
  {
    v8::Context::Scope context_scope(context);
    StackTraceLimit::Install(context);
  }
  context_.Reset(isolate_, context);
  return true;
}

void LiveContext::Dispose() {
  if (isolate_ == nullptr) return;
  // Every handle into the isolate goes before the isolate does.
  context_.Reset();
  calls_.Clear();
  hooks_.Disarm();
  if (creator_) {
    if (adopted_) ReleaseSnapshotAllocator(isolate_);
    creator_.reset();  // exits and disposes its isolate
  } else {
    isolate_->Dispose();
  }
  adopted_ = false;
  isolate_ = nullptr;
}

void LiveContext::Close(std::string why) {
  closed_ = std::move(why);
  closed_flag_.store(true, std::memory_order_release);
  Dispose();
}

void LiveContext::Closed(mv8_response* response) const {
  response->status = MV8_CLOSED;
  SetError(response, ErrorInfo::Plain("ContextClosedError", closed_));
}

void LiveContext::Run(const mv8_context_request& request, mv8_response* response) {
  OnThread([&] {
    try {
      DoRun(request, response);
    } catch (const std::bad_alloc&) {
      response->status = MV8_INTERNAL;
      SetError(response, ErrorInfo::Plain("InternalError", "out of memory in the engine"));
    }
  });
}

void LiveContext::DoRun(const mv8_context_request& request, mv8_response* response) {
  if (!closed_.empty()) return Closed(response);
  std::shared_ptr<Control> control = RunScope::ControlFor(request.run);
  Evaluation evaluation(isolate_, control.get(), hooks_.guard(), &budget_, EvaluationLimits::Of(request.run, heap_limit_));
  if (control->reason() != 0) {
    evaluation.Finish(Evaluation::End::kTerminated, response);
    return;
  }
  budget_.ClearRefused();
  process_->SetWasmCap(heap_limit_);  // process-wide: set by each run as it starts
  {
    v8::Isolate::Scope isolate_scope(isolate_);
    v8::HandleScope handle_scope(isolate_);
    v8::Local<v8::Context> context = context_.Get(isolate_);
    v8::Context::Scope context_scope(context);
    Evaluation::End end;
    {
      // The calls out of every run go through the context's HostCalls: one pending at the end
      // of a run is forgotten there (after an idle loop none is; after a stop it never settles).
      RunScope run(isolate_, process_->platform(), control, &calls_, request.run, &origin_);
      if (request.kind == MV8_RUN_CALL) {
        std::vector<std::string> buffers;
        for (size_t i = 0; i < request.n_buffers; i++) {
          buffers.emplace_back(reinterpret_cast<const char*>(request.buffers[i].data), request.buffers[i].len);
        }
        end = evaluation.RunCall(context, run.loop(), std::string(request.code, request.code_len),
                                 std::string(request.args_json, request.args_len), buffers);
      } else {
        end = evaluation.RunScript(context, run.loop(), request.code, request.code_len,
                                   request.run.filename != nullptr ? request.run.filename : "");
      }
      response->heap_used_bytes = run.End();
    }
    evaluation.Finish(end, response);
    response->external_bytes = budget_.peak();
  }
  if (hooks_.heap_limit_hit()) {
    Close("the context is closed: a run went over its heap limit of " + std::to_string(heap_limit_ >> 20) +
          " MB, and a context is not reused after that");
  }
}

bool LiveContext::Expose(const std::string& name, std::string* error) {
  bool ok = false;
  OnThread([&] {
    if (!closed_.empty()) {
      *error = closed_;
      return;
    }
    v8::Isolate::Scope isolate_scope(isolate_);
    v8::HandleScope handle_scope(isolate_);
    v8::Local<v8::Context> context = context_.Get(isolate_);
    v8::Context::Scope context_scope(context);
    v8::TryCatch try_catch(isolate_);
    v8::Local<v8::String> key;
    v8::Local<v8::Function> fn;
    if (!v8::String::NewFromUtf8(isolate_, name.data(), v8::NewStringType::kInternalized,
                                 static_cast<int>(name.size()))
             .ToLocal(&key) ||
        !MakeHostFunction(context, key).ToLocal(&fn)) {
      *error = "could not create the function";
      return;
    }
    if (!context->Global()->DefineOwnProperty(context, key, fn, v8::DontEnum).FromMaybe(false)) {
      *error = "the global " + name + " cannot be redefined";
      return;
    }
    ok = true;
  });
  return ok;
}

void LiveContext::Snapshot(mv8_response* response) {
  OnThread([&] {
    try {
      DoSnapshot(response);
    } catch (const std::bad_alloc&) {
      response->status = MV8_INTERNAL;
      SetError(response, ErrorInfo::Plain("InternalError", "out of memory in the engine"));
    }
  });
}

void LiveContext::DoSnapshot(mv8_response* response) {
  if (!closed_.empty()) return Closed(response);
  if (!snapshots_) {
    response->status = MV8_INTERNAL;
    SetError(response, ErrorInfo::Plain("InternalError",
                                        "this context cannot make snapshots: create it with snapshot=True"));
    return;
  }
  {
    v8::Isolate::Scope isolate_scope(isolate_);
    v8::HandleScope handle_scope(isolate_);
    v8::Local<v8::Context> context = context_.Get(isolate_);
    std::string why;
    {
      v8::Context::Scope context_scope(context);
      if (!StackTraceLimit::Stash(context, &why)) {
        response->status = MV8_INTERNAL;
        SetError(response, ErrorInfo::Plain("InternalError", why));
        return;
      }
    }
    creator_->SetDefaultContext(context);
    v8::HeapStatistics stats;
    isolate_->GetHeapStatistics(&stats);
    response->heap_used_bytes = stats.used_heap_size();
  }
  context_.Reset();
  calls_.Clear();
  hooks_.Disarm();  // before the blob is made (run_scope.h)
  if (adopted_) ReleaseSnapshotAllocator(isolate_);
  adopted_ = false;
  v8::StartupData out = creator_->CreateBlob(v8::SnapshotCreator::FunctionCodeHandling::kKeep);
  creator_.reset();
  isolate_ = nullptr;
  if (out.data == nullptr) {
    Close("the context is closed: V8 could not make its snapshot");
    return Closed(response);
  }
  blob_.assign(out.data, static_cast<size_t>(out.raw_size));
  // Handed over as V8 allocated it (new[]): mv8_response_free releases it with delete[].
  response->snapshot = reinterpret_cast<uint8_t*>(const_cast<char*>(out.data));
  response->snapshot_len = static_cast<size_t>(out.raw_size);
  std::string error;
  if (!Create(&error)) Close("the context is closed: it could not be re-created from its snapshot: " + error);
  response->status = MV8_COMPLETED;  // the snapshot is good even when the context could not go on
}

bool LiveContext::HeapStats(mv8_heap_stats* out) {
  bool open = false;
  OnThread([&] {
    if (!closed_.empty()) return;
    v8::HeapStatistics stats;
    isolate_->GetHeapStatistics(&stats);
    out->total_heap_size = stats.total_heap_size();
    out->used_heap_size = stats.used_heap_size();
    out->heap_size_limit = stats.heap_size_limit();
    out->total_physical_size = stats.total_physical_size();
    out->malloced_memory = stats.malloced_memory();
    out->external_memory = budget_.used();
    out->external_peak = budget_.peak();
    open = true;
  });
  return open;
}

}  // namespace mv8
