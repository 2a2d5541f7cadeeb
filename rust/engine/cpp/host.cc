#include "host.h"

#include <vector>

#include "js_sources.h"
#include "event_loop.h"
#include "host_calls.h"
#include "web.h"

namespace mv8 {
namespace host {
namespace {

using v8::FunctionCallbackInfo;
using v8::Local;
using v8::Value;

void ThrowTypeError(v8::Isolate* isolate, const char* message) {
  isolate->ThrowException(v8::Exception::TypeError(v8::String::NewFromUtf8(isolate, message).ToLocalChecked()));
}

// host.print(level, text)
void Print(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  HostContext* host = HostContext::From(isolate);
  if (host == nullptr || host->console == nullptr || info.Length() < 2) return;
  int level = info[0]->Int32Value(isolate->GetCurrentContext()).FromMaybe(0);
  if (!info[1]->IsString()) return;
  v8::String::Utf8Value text(isolate, info[1]);
  if (*text == nullptr) return;
  host->console(host->console_user_data, level, *text, static_cast<size_t>(text.length()));
}

// host.promiseState(p) -> [state, value]; state 0 pending, 1 fulfilled, 2 rejected
void PromiseState(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  if (info.Length() < 1 || !info[0]->IsPromise()) return;
  Local<v8::Promise> promise = info[0].As<v8::Promise>();
  int state = 0;
  Local<Value> value = v8::Undefined(isolate);
  switch (promise->State()) {
    case v8::Promise::kPending:
      break;
    case v8::Promise::kFulfilled:
      state = 1;
      value = promise->Result();
      break;
    case v8::Promise::kRejected:
      state = 2;
      value = promise->Result();
      break;
  }
  Local<Value> items[] = {v8::Integer::New(isolate, state), value};
  info.GetReturnValue().Set(v8::Array::New(isolate, items, 2));
}

// host.proxyDetails(v) -> undefined | [target, handler]
void ProxyDetails(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  if (info.Length() < 1 || !info[0]->IsProxy()) return;
  Local<v8::Proxy> proxy = info[0].As<v8::Proxy>();
  Local<Value> items[] = {proxy->GetTarget(), proxy->GetHandler()};
  info.GetReturnValue().Set(v8::Array::New(isolate, items, 2));
}

void AddTimer(const FunctionCallbackInfo<Value>& info, bool repeat) {
  v8::Isolate* isolate = info.GetIsolate();
  HostContext* host = HostContext::From(isolate);
  if (info.Length() < 1 || !info[0]->IsFunction()) {
    ThrowTypeError(isolate, "The \"callback\" argument must be of type function");
    return;
  }
  if (host == nullptr || host->loop == nullptr) {
    ThrowTypeError(isolate, "timers are not available here");
    return;
  }
  double delay = 0;
  if (info.Length() >= 2) {
    delay = info[1]->NumberValue(isolate->GetCurrentContext()).FromMaybe(0);
  }
  std::vector<Local<Value>> args;
  for (int i = 2; i < info.Length(); i++) args.push_back(info[i]);
  double id = host->loop->AddTimer(info[0].As<v8::Function>(), args, delay, repeat);
  if (id < 0) {
    isolate->ThrowException(v8::Exception::RangeError(
        v8::String::NewFromUtf8Literal(isolate, "too many pending timers")));
    return;
  }
  info.GetReturnValue().Set(id);
}

void SetTimeout(const FunctionCallbackInfo<Value>& info) { AddTimer(info, false); }
void SetInterval(const FunctionCallbackInfo<Value>& info) { AddTimer(info, true); }

void ClearTimer(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  HostContext* host = HostContext::From(isolate);
  if (host == nullptr || host->loop == nullptr || info.Length() < 1 || !info[0]->IsNumber()) return;
  host->loop->ClearTimer(info[0].As<v8::Number>()->Value());
}

void QueueMicrotask(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  if (info.Length() < 1 || !info[0]->IsFunction()) {
    ThrowTypeError(isolate, "The \"callback\" argument must be of type function");
    return;
  }
  isolate->EnqueueMicrotask(info[0].As<v8::Function>());
}


// Runs one of cpp/js/*.js: a script whose completion value is a function, called with
// `native`; with an empty `native`, a script that installs what it defines by itself.
bool RunBootstrap(Local<v8::Context> context, const char* name, const char* source, Local<v8::Object> native,
                  std::string* error) {
  v8::Isolate* isolate = context->GetIsolate();
  v8::TryCatch try_catch(isolate);
  std::string origin_name = std::string("mcp-v8:") + name;
  v8::ScriptOrigin origin(isolate, v8::String::NewFromUtf8(isolate, origin_name.c_str()).ToLocalChecked());
  Local<v8::Script> script;
  Local<Value> factory;
  Local<Value> argv[] = {native};
  if (!v8::Script::Compile(context, v8::String::NewFromUtf8(isolate, source).ToLocalChecked(), &origin)
           .ToLocal(&script) ||
      !script->Run(context).ToLocal(&factory) ||
      (!native.IsEmpty() &&
       (!factory->IsFunction() || factory.As<v8::Function>()->Call(context, v8::Undefined(isolate), 1, argv).IsEmpty()))) {
    v8::String::Utf8Value message(isolate, try_catch.Exception());
    *error = std::string(name) + " failed: " + (*message ? *message : "not a function");
    if (try_catch.Message().IsEmpty() == false) {
      *error += " (line " + std::to_string(try_catch.Message()->GetLineNumber(context).FromMaybe(0)) + ")";
    }
    return false;
  }
  return true;
}

}  // namespace

bool DefineFunction(Local<v8::Context> context, Local<v8::Object> target, const char* name,
                    v8::FunctionCallback callback) {
  v8::Isolate* isolate = context->GetIsolate();
  Local<v8::String> key = v8::String::NewFromUtf8(isolate, name, v8::NewStringType::kInternalized).ToLocalChecked();
  Local<v8::Function> fn;
  if (!v8::FunctionTemplate::New(isolate, callback, Local<Value>(), Local<v8::Signature>(), 0,
                                 v8::ConstructorBehavior::kThrow)
           ->GetFunction(context)
           .ToLocal(&fn)) {
    return false;
  }
  fn->SetName(key);
  return target->DefineOwnProperty(context, key, fn, v8::DontEnum).FromMaybe(false);
}

const intptr_t* ExternalReferences() {
#define MV8_REF(fn) reinterpret_cast<intptr_t>(&fn),
  static const intptr_t refs[] = {
#include "external_refs.inc"
      0,
  };
#undef MV8_REF
  return refs;
}

bool InstallGlobals(Local<v8::Context> context, std::string* error) {
  v8::Isolate* isolate = context->GetIsolate();
  Local<v8::Object> global = context->Global();
  if (!DefineFunction(context, global, "setTimeout", SetTimeout) || !DefineFunction(context, global, "setInterval", SetInterval) ||
      !DefineFunction(context, global, "clearTimeout", ClearTimer) || !DefineFunction(context, global, "clearInterval", ClearTimer) ||
      !DefineFunction(context, global, "queueMicrotask", QueueMicrotask)) {
    *error = "could not install timer functions";
    return false;
  }
  Local<v8::Object> native = v8::Object::New(isolate);
  if (!DefineFunction(context, native, "print", Print) || !DefineFunction(context, native, "promiseState", PromiseState) ||
      !DefineFunction(context, native, "proxyDetails", ProxyDetails)) {
    *error = "could not create the console host object";
    return false;
  }
  if (!RunBootstrap(context, "console.js", kConsoleJs, native, error)) return false;
  // The ES2023-ES2025 built-ins V8 10.2 lacks.
  if (!RunBootstrap(context, "builtins.js", kBuiltinsJs, Local<v8::Object>(), error)) return false;
  Local<v8::Object> web_native = v8::Object::New(isolate);
  if (!web::Install(context, web_native)) {
    *error = "could not create the web platform host object";
    return false;
  }
  return RunBootstrap(context, "web.js", kWebJs, web_native, error);
}

}  // namespace host
}  // namespace mv8
