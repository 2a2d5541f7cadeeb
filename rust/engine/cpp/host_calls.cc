#include "host_calls.h"

#include "errors.h"
#include "host.h"
#include "serializer.h"
#include "values.h"
#include "web.h"

namespace mv8 {

void Replies::Post(Reply reply) {
  std::lock_guard<std::mutex> lock(mu_);
  inbox_.push_back(std::move(reply));
  if (waiter_) waiter_->Wake();
}

std::vector<Reply> Replies::Take() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Reply> out;
  out.swap(inbox_);
  return out;
}

void Replies::SetWaiter(std::shared_ptr<Control> control) {
  std::lock_guard<std::mutex> lock(mu_);
  waiter_ = std::move(control);
}

v8::MaybeLocal<v8::Promise> HostCalls::Start(v8::Local<v8::Context> context, v8::Local<v8::String> name,
                                             v8::Local<v8::Array> args) {
  v8::Isolate* isolate = context->GetIsolate();
  std::string json;
  std::vector<std::string> buffers;
  if (!Serializer::ToJson(isolate, context, args, &json, &buffers)) return {};  // terminated
  v8::Local<v8::Promise::Resolver> resolver;
  if (!v8::Promise::Resolver::New(context).ToLocal(&resolver)) return {};
  uint64_t id = next_id_++;
  pending_.emplace(id, v8::Global<v8::Promise::Resolver>(isolate, resolver));
  v8::String::Utf8Value utf8(isolate, name);
  std::vector<mv8_bytes> views;
  views.reserve(buffers.size());
  for (auto& b : buffers) views.push_back({reinterpret_cast<const uint8_t*>(b.data()), b.size()});
  dispatch_(user_data_, id, *utf8, static_cast<size_t>(utf8.length()), json.data(), json.size(), views.data(),
            views.size());
  return resolver->GetPromise();
}

namespace {

v8::Local<v8::Value> ErrorFromReply(v8::Isolate* isolate, v8::Local<v8::Context> context, const Reply& reply) {
  std::string name = "Error";
  std::string message = "the exposed function failed";
  v8::Local<v8::Value> parsed;
  v8::TryCatch try_catch(isolate);
  if (v8::JSON::Parse(context, v8::String::NewFromUtf8(isolate, reply.json.data(), v8::NewStringType::kNormal,
                                                       static_cast<int>(reply.json.size()))
                                   .ToLocalChecked())
          .ToLocal(&parsed) &&
      parsed->IsObject()) {
    auto field = [&](const char* key, std::string* out) {
      v8::Local<v8::Value> v;
      if (parsed.As<v8::Object>()->Get(context, v8::String::NewFromUtf8(isolate, key).ToLocalChecked()).ToLocal(&v) &&
          v->IsString()) {
        v8::String::Utf8Value s(isolate, v);
        out->assign(*s, s.length());
      }
    };
    field("name", &name);
    field("message", &message);
  }
  v8::Local<v8::Value> error =
      v8::Exception::Error(v8::String::NewFromUtf8(isolate, message.data(), v8::NewStringType::kNormal,
                                                   static_cast<int>(message.size()))
                               .ToLocalChecked());
  error.As<v8::Object>()
      ->Set(context, v8::String::NewFromUtf8Literal(isolate, "name"),
            v8::String::NewFromUtf8(isolate, name.data(), v8::NewStringType::kNormal, static_cast<int>(name.size()))
                .ToLocalChecked())
      .Check();
  return error;
}

}  // namespace

bool HostCalls::Deliver(v8::Local<v8::Context> context) {
  if (pending_.empty()) return false;
  std::vector<Reply> replies = replies_->Take();
  bool settled = false;
  v8::Isolate* isolate = context->GetIsolate();
  for (Reply& reply : replies) {
    auto it = pending_.find(reply.id);
    if (it == pending_.end()) continue;
    v8::HandleScope scope(isolate);
    v8::Local<v8::Promise::Resolver> resolver = it->second.Get(isolate);
    pending_.erase(it);
    settled = true;
    v8::TryCatch try_catch(isolate);
    if (!reply.ok) {
      resolver->Reject(context, ErrorFromReply(isolate, context, reply)).IsNothing();
      continue;
    }
    v8::Local<v8::Value> value;
    if (Values::FromJson(isolate, context, reply.json, reply.buffers).ToLocal(&value)) {
      resolver->Resolve(context, value).IsNothing();
    } else if (!try_catch.HasTerminated() && try_catch.HasCaught()) {
      v8::Local<v8::Value> exception = try_catch.Exception();
      try_catch.Reset();
      resolver->Reject(context, exception).IsNothing();
    }
    if (try_catch.HasTerminated() || isolate->IsExecutionTerminating()) break;
  }
  return settled;
}

void HostCalls::Forget(v8::Local<v8::Promise> promise) {
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    v8::Isolate* isolate = promise->GetIsolate();
    if (it->second.Get(isolate)->GetPromise() == promise) {
      pending_.erase(it);
      return;
    }
  }
}

void HostCalls::Clear() {
  pending_.clear();
  replies_->Take();
}

void HostCall(const v8::FunctionCallbackInfo<v8::Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  v8::Local<v8::Context> context = isolate->GetCurrentContext();
  v8::Local<v8::String> name = info.Data()->IsString() ? info.Data().As<v8::String>() : v8::String::Empty(isolate);
  HostContext* host = HostContext::From(isolate);
  if (host == nullptr || host->calls == nullptr) {
    v8::Local<v8::Promise::Resolver> resolver;
    if (!v8::Promise::Resolver::New(context).ToLocal(&resolver)) return;
    v8::String::Utf8Value utf8(isolate, name);
    std::string called = *utf8 ? *utf8 : "";
    std::string message = called == "mcp-v8:fetch" ? web::FetchOffMessage()
                          : called == "mcp-v8:tool"
                              ? "tool call refused: no tools are available in this execution"
                              : called + " is a function exposed by a live context; nothing answers it in this execution";
    resolver->Reject(context, v8::Exception::TypeError(v8::String::NewFromUtf8(isolate, message.c_str()).ToLocalChecked()))
        .IsNothing();
    info.GetReturnValue().Set(resolver->GetPromise());
    return;
  }
  v8::Local<v8::Array> args = v8::Array::New(isolate, info.Length());
  for (int i = 0; i < info.Length(); i++) {
    if (args->Set(context, static_cast<uint32_t>(i), info[i]).IsNothing()) return;
  }
  v8::Local<v8::Promise> promise;
  if (host->calls->Start(context, name, args).ToLocal(&promise)) info.GetReturnValue().Set(promise);
}

v8::MaybeLocal<v8::Function> MakeHostFunction(v8::Local<v8::Context> context, v8::Local<v8::String> name) {
  v8::Isolate* isolate = context->GetIsolate();
  v8::Local<v8::Function> fn;
  if (!v8::FunctionTemplate::New(isolate, HostCall, name, v8::Local<v8::Signature>(), 0,
                                 v8::ConstructorBehavior::kThrow)
           ->GetFunction(context)
           .ToLocal(&fn)) {
    return {};
  }
  fn->SetName(name);
  return fn;
}

}  // namespace mv8
