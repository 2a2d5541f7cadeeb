#include "evaluation.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "repl_script.h"
#include "serializer.h"
#include "values.h"

namespace mv8 {

uint64_t MonotonicNs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000u + static_cast<uint64_t>(now.tv_nsec);
}

char* Dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p == nullptr) throw std::bad_alloc();
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

size_t HeapGuard::OnNearLimit(void* data, size_t current, size_t initial) {
  auto* self = static_cast<HeapGuard*>(data);
  self->hit = true;
  self->isolate->TerminateExecution();
  // Room for V8 to unwind the terminated script instead of aborting the process. The
  // allocation that reached the limit is retried first, and one allocation can be large (a
  // rope string a builtin flattens, an array a builtin copies): were it not to fit, V8 would
  // abort the process. 256 MB more covers a flat string of 2^28 one-byte characters or an
  // array of 32 million elements; the script stops right after that allocation, whose memory
  // goes with the isolate. Larger single allocations still abort (a worker process, in the
  // service).
  if (!self->raised) {
    self->raised = true;
    return current * 2 + (size_t{256} << 20);
  }
  return current + (16u << 20);
}

Evaluation::End Evaluation::Failed(v8::Local<v8::Context> context, const v8::TryCatch& try_catch,
                                   const ScriptBounds* script) {
  if (try_catch.HasTerminated() || terminated()) return End::kTerminated;
  error_ = ErrorInfo::FromException(isolate_, context, try_catch.Exception(), try_catch.Message(), script);
  // Formatting the error runs user code too (getters, Error.prepareStackTrace).
  return terminated() ? End::kTerminated : End::kFailed;
}

Evaluation::End Evaluation::RunScript(v8::Local<v8::Context> context, EventLoop* loop, const char* code,
                                      size_t code_len, const char* filename) {
  v8::Local<v8::Promise> completion;
  {
    v8::TryCatch try_catch(isolate_);
    bool too_long = false;
    phases_.evaluating = MonotonicNs();
    bool evaluated = ReplScript::Evaluate(isolate_, code, code_len, filename, &too_long).ToLocal(&completion);
    phases_.evaluated = MonotonicNs();
    if (!evaluated) {
      if (too_long) {
        error_ = ErrorInfo::Plain("RangeError", "the source code is too long");
        return End::kFailed;
      }
      // In REPL mode only a source that does not compile throws here: what the script throws
      // while it runs rejects the completion promise.
      syntax_error_ = !try_catch.HasTerminated() && !terminated();
      // A compile error's message names no script (REPL mode has no origin): name the user's,
      // and keep the position inside the user's code (not on the appended sourceURL line).
      ScriptBounds script;
      script.name = ReplScript::SourceUrl(filename);
      ReplScript::End(code, code_len, &script.end_line, &script.end_column);
      return Failed(context, try_catch, &script);
    }
  }
  End end = Settle(context, loop, completion, /*repl=*/true);
  phases_.settled = MonotonicNs();
  return end;
}

namespace {

// An IdentifierName of ASCII letters, digits, `_` and `$` not starting with a digit; a
// reserved word among them fails to compile and is reported as such.
bool IsIdentifier(const std::string& name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

Evaluation::End Evaluation::RunCall(v8::Local<v8::Context> context, EventLoop* loop, const std::string& path,
                                    const std::string& args_json, const std::vector<std::string>& buffers) {
  v8::Local<v8::Value> completion;
  phases_.evaluating = MonotonicNs();
  {
    v8::TryCatch try_catch(isolate_);
    // The first name may be a global property or a top-level let, const or class (which
    // live in the script scope, not on the global object): a one-word script reads both.
    size_t dot = path.find('.');
    std::string first = path.substr(0, dot);
    if (!IsIdentifier(first)) {
      error_ = ErrorInfo::Plain("TypeError", path + " is not a function (" + first + " is not a name)");
      return End::kFailed;
    }
    v8::Local<v8::Value> holder = v8::Undefined(isolate_);
    v8::Local<v8::Value> target;
    v8::Local<v8::Script> lookup;
    v8::Local<v8::String> source;
    if (!v8::String::NewFromUtf8(isolate_, first.data(), v8::NewStringType::kNormal, static_cast<int>(first.size()))
             .ToLocal(&source) ||
        !v8::Script::Compile(context, source).ToLocal(&lookup) || !lookup->Run(context).ToLocal(&target)) {
      return Failed(context, try_catch);
    }
    size_t start = dot == std::string::npos ? path.size() : dot + 1;
    while (dot != std::string::npos) {
      dot = path.find('.', start);
      std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (!target->IsObject()) {
        error_ = ErrorInfo::Plain("TypeError", path + " is not a function (" + path.substr(0, start - 1) +
                                                   " is not an object)");
        return End::kFailed;
      }
      holder = target;
      v8::Local<v8::String> key;
      if (!v8::String::NewFromUtf8(isolate_, part.data(), v8::NewStringType::kNormal, static_cast<int>(part.size()))
               .ToLocal(&key) ||
          !holder.As<v8::Object>()->Get(context, key).ToLocal(&target)) {
        return Failed(context, try_catch);
      }
      start = dot + 1;
    }
    if (!target->IsFunction()) {
      error_ = ErrorInfo::Plain("TypeError", path + " is not a function");
      return End::kFailed;
    }
    v8::Local<v8::Value> args;
    if (!Values::FromJson(isolate_, context, args_json, buffers).ToLocal(&args)) return Failed(context, try_catch);
    if (!args->IsArray()) {
      error_ = ErrorInfo::Plain("TypeError", "the arguments are not an array");
      return End::kFailed;
    }
    v8::Local<v8::Array> array = args.As<v8::Array>();
    std::vector<v8::Local<v8::Value>> argv(array->Length());
    for (uint32_t i = 0; i < array->Length(); i++) argv[i] = array->Get(context, i).ToLocalChecked();
    if (!target.As<v8::Function>()
             ->Call(context, holder, static_cast<int>(argv.size()), argv.data())
             .ToLocal(&completion)) {
      return Failed(context, try_catch);
    }
  }
  phases_.evaluated = MonotonicNs();
  End end = Settle(context, loop, completion, /*repl=*/false);
  phases_.settled = MonotonicNs();
  return end;
}

Evaluation::End Evaluation::Settle(v8::Local<v8::Context> context, EventLoop* loop, v8::Local<v8::Value> completion,
                                   bool repl) {
  EventLoop::Unwrap unwrap;
  if (repl) {
    unwrap = [this, context](v8::Local<v8::Value> fulfilled) { return ReplScript::Unwrap(isolate_, context, fulfilled); };
  }
  EventLoop::Stop stop = loop->Run(context, &completion, [this] { return terminated(); }, unwrap);
  if (stop == EventLoop::Stop::kTerminated || terminated()) return End::kTerminated;
  if (stop == EventLoop::Stop::kSuspended) return Suspend(context, completion, repl);
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
  const uint64_t limit = limits_.max_result_bytes;
  // A string's JSON has at least as many bytes as the string has UTF-16 units, plus its
  // quotes: refuse one that cannot fit without serialising it first.
  if (limit != 0 && value->IsString() && static_cast<uint64_t>(value.As<v8::String>()->Length()) + 2 > limit) {
    error_ = ErrorInfo::Plain("RangeError", "the result is a string of " +
                                                std::to_string(value.As<v8::String>()->Length()) +
                                                " characters, more than the limit of " + std::to_string(limit) +
                                                " bytes of JSON");
    return End::kFailed;
  }
  if (!Serializer::ToJson(isolate_, context, value, &result_, limits_.bytes_result ? &buffers_ : nullptr) ||
      terminated()) {
    return End::kTerminated;
  }
  uint64_t size = result_.size();
  for (auto& b : buffers_) size += b.size();
  if (limit != 0 && size > limit) {
    error_ = ErrorInfo::Plain("RangeError", "the result is " + std::to_string(size) +
                                                " bytes of JSON, more than the limit of " + std::to_string(limit));
    result_.clear();
    buffers_.clear();
    return End::kFailed;
  }
  return End::kCompleted;
}

ErrorInfo Evaluation::TerminatedError(int* status) const {
  if (guard_ != nullptr && guard_->hit) {
    *status = MV8_FAILED;
    return ErrorInfo::Plain("HeapLimitError", "heap limit exceeded: the script used more than " +
                                                  std::to_string(limits_.heap_limit_bytes >> 20) + " MB");
  }
  if (control_->reason() == MV8_REASON_TIMEOUT) {
    *status = MV8_TIMED_OUT;
    char secs[32];
    std::snprintf(secs, sizeof secs, "%g", limits_.timeout_secs);
    return ErrorInfo::Plain("TimeoutError", std::string("execution timed out after ") + secs + " s");
  }
  *status = MV8_CANCELLED;
  return ErrorInfo::Plain("CancelledError", "execution cancelled");
}

Evaluation::End Evaluation::Suspend(v8::Local<v8::Context> context, v8::Local<v8::Value> completion, bool repl) {
  v8::TryCatch try_catch(isolate_);
  v8::Local<v8::Object> kept = v8::Object::New(isolate_);
  v8::Local<v8::Symbol> key = v8::Symbol::For(isolate_, v8::String::NewFromUtf8Literal(isolate_, "mcp-v8.suspended"));
  if (kept->Set(context, v8::String::NewFromUtf8Literal(isolate_, "promise"), completion).IsNothing() ||
      kept->Set(context, v8::String::NewFromUtf8Literal(isolate_, "repl"), v8::Boolean::New(isolate_, repl))
          .IsNothing() ||
      !context->Global()->DefineOwnProperty(context, key, kept, v8::DontEnum).FromMaybe(false)) {
    return terminated() ? End::kTerminated : Fail(ErrorInfo::Plain("Error", "the execution could not be suspended"));
  }
  return End::kSuspended;
}

void Evaluation::Finish(End end, mv8_response* resp) {
  resp->phases.evaluating = phases_.evaluating;
  resp->phases.evaluated = phases_.evaluated;
  resp->phases.settled = phases_.settled;
  switch (end) {
    case End::kSuspended:
      resp->status = MV8_SUSPENDED;
      break;
    case End::kCompleted:
      resp->status = MV8_COMPLETED;
      resp->result = Dup(result_);
      resp->result_len = result_.size();
      if (!buffers_.empty()) {
        resp->buffers = static_cast<mv8_buffer*>(std::calloc(buffers_.size(), sizeof(mv8_buffer)));
        if (resp->buffers == nullptr) throw std::bad_alloc();
        resp->n_buffers = buffers_.size();
        for (size_t i = 0; i < buffers_.size(); i++) {
          resp->buffers[i].data = reinterpret_cast<uint8_t*>(Dup(buffers_[i]));
          resp->buffers[i].len = buffers_[i].size();
        }
      }
      break;
    case End::kFailed:
      resp->status = MV8_FAILED;
      // An ArrayBuffer the budget refused surfaces as a RangeError: say why.
      if (budget_ != nullptr && budget_->refused() && error_.name == "RangeError") {
        resp->heap_limit_exceeded = 1;
        error_.message += " (heap limit of " + std::to_string(limits_.heap_limit_bytes >> 20) +
                          " MB includes ArrayBuffer memory)";
      }
      resp->syntax_error = syntax_error_ ? 1 : 0;
      SetError(resp, error_);
      break;
    case End::kTerminated: {
      int status = MV8_CANCELLED;
      ErrorInfo e = TerminatedError(&status);
      resp->status = status;
      resp->heap_limit_exceeded = guard_ != nullptr && guard_->hit;
      SetError(resp, e);
      break;
    }
  }
}

}  // namespace mv8
