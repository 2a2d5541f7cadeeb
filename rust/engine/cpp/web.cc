#include "web.h"

#include <sys/random.h>

#include <cerrno>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "event_loop.h"
#include "host.h"
#include "host_calls.h"

namespace mv8 {
namespace web {
namespace {

using v8::FunctionCallbackInfo;
using v8::Local;
using v8::Value;

mv8_hooks g_hooks{};

void Throw(v8::Isolate* isolate, Local<Value> (*make)(Local<v8::String>), const std::string& message) {
  isolate->ThrowException(make(v8::String::NewFromUtf8(isolate, message.c_str()).ToLocalChecked()));
}

Local<v8::String> Utf8(v8::Isolate* isolate, const char* data, size_t len) {
  Local<v8::String> s;
  if (!v8::String::NewFromUtf8(isolate, data, v8::NewStringType::kNormal, static_cast<int>(len)).ToLocal(&s)) {
    return v8::String::Empty(isolate);
  }
  return s;
}

// The bytes of an ArrayBufferView or ArrayBuffer (empty for anything else).
bool Bytes(Local<Value> value, const uint8_t** data, size_t* len) {
  if (value->IsArrayBufferView()) {
    Local<v8::ArrayBufferView> view = value.As<v8::ArrayBufferView>();
    std::shared_ptr<v8::BackingStore> store = view->Buffer()->GetBackingStore();
    *data = static_cast<const uint8_t*>(store->Data()) + view->ByteOffset();
    *len = view->ByteLength();
    return true;
  }
  if (value->IsArrayBuffer()) {
    std::shared_ptr<v8::BackingStore> store = value.As<v8::ArrayBuffer>()->GetBackingStore();
    *data = static_cast<const uint8_t*>(store->Data());
    *len = store->ByteLength();
    return true;
  }
  return false;
}

// A Uint8Array of `len` bytes copied from `data`, or empty with a RangeError thrown when the
// off-heap budget refuses it.
v8::MaybeLocal<v8::Uint8Array> NewBytes(v8::Isolate* isolate, const uint8_t* data, size_t len) {
  std::unique_ptr<v8::BackingStore> store = v8::ArrayBuffer::NewBackingStoreForNodeLTS(isolate, len);
  if (!store) {
    Throw(isolate, v8::Exception::RangeError, "Array buffer allocation failed");
    return {};
  }
  if (len != 0) std::memcpy(store->Data(), data, len);
  Local<v8::ArrayBuffer> buffer = v8::ArrayBuffer::New(isolate, std::move(store));
  return v8::Uint8Array::New(buffer, 0, len);
}

// The URL parts a hook wrote (NUL-separated) as a JS array of strings.
Local<v8::Array> Parts(v8::Isolate* isolate, const mv8_buffer& out) {
  std::vector<Local<Value>> parts;
  const char* p = reinterpret_cast<const char*>(out.data);
  const char* end = p + out.len;
  while (p < end) {
    size_t n = strnlen(p, static_cast<size_t>(end - p));
    parts.push_back(Utf8(isolate, p, n));
    p += n + 1;
  }
  return v8::Array::New(isolate, parts.data(), parts.size());
}

// Whether `bytes` more of V8 heap fit under the isolate's heap limit. A string these natives
// read may be a rope that V8 flattens into one allocation, and a single allocation beyond the
// limit is a fatal OOM, not the heap cap's termination: such inputs are refused first.
bool HeapRoomFor(v8::Isolate* isolate, size_t bytes) {
  if (bytes < (1u << 20)) return true;
  v8::HeapStatistics stats;
  isolate->GetHeapStatistics(&stats);
  size_t used = stats.used_heap_size();
  size_t limit = stats.heap_size_limit();
  return used < limit && bytes < (limit - used) / 2;
}

bool CheckRoom(v8::Isolate* isolate, Local<v8::String> text) {
  // A flat copy takes up to two bytes per UTF-16 unit.
  if (HeapRoomFor(isolate, static_cast<size_t>(text->Length()) * 2)) return true;
  Throw(isolate, v8::Exception::RangeError, "the string is too large for the heap limit");
  return false;
}

// The UTF-8 of `value` as a string; false (a RangeError thrown) when it is too large to read.
bool Utf8Of(v8::Isolate* isolate, Local<Value> value, std::string* out) {
  Local<v8::String> text;
  if (!value->ToString(isolate->GetCurrentContext()).ToLocal(&text) || !CheckRoom(isolate, text)) return false;
  v8::String::Utf8Value utf8(isolate, text);
  out->assign(*utf8 ? *utf8 : "", *utf8 ? utf8.length() : 0);
  return true;
}

class CloneDelegate final : public v8::ValueSerializer::Delegate {
 public:
  explicit CloneDelegate(v8::Isolate* isolate) : isolate_(isolate) {}
  void ThrowDataCloneError(Local<v8::String> message) override {
    Local<Value> error = v8::Exception::Error(message);
    Local<v8::Context> context = isolate_->GetCurrentContext();
    error.As<v8::Object>()
        ->Set(context, v8::String::NewFromUtf8Literal(isolate_, "name"),
              v8::String::NewFromUtf8Literal(isolate_, "DataCloneError"))
        .Check();
    isolate_->ThrowException(error);
  }

 private:
  v8::Isolate* isolate_;
};

std::chrono::steady_clock::time_point ProcessStart() {
  static const auto start = std::chrono::steady_clock::now();
  return start;
}


}  // namespace

void SetHooks(const mv8_hooks& hooks) { g_hooks = hooks; }

const char* FetchOffMessage() { return g_hooks.fetch_off != nullptr ? g_hooks.fetch_off : "fetch is off"; }

// urlParse(input, base?) -> parts | null
void UrlParse(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  if (g_hooks.url_parse == nullptr) return Throw(isolate, v8::Exception::TypeError, "URL parsing is not available");
  std::string input, base;
  bool has_base = info.Length() > 1 && !info[1]->IsUndefined();
  if (!Utf8Of(isolate, info[0], &input) || (has_base && !Utf8Of(isolate, info[1], &base))) return;
  mv8_buffer out{nullptr, 0};
  int ok = g_hooks.url_parse(input.data(), input.size(), has_base ? base.data() : nullptr, base.size(), &out);
  if (ok) info.GetReturnValue().Set(Parts(isolate, out));
  else info.GetReturnValue().SetNull();
  std::free(out.data);
}

// urlSet(href, part, value) -> parts | null
void UrlSet(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  if (g_hooks.url_set == nullptr) return Throw(isolate, v8::Exception::TypeError, "URL parsing is not available");
  std::string href, value;
  int part = info[1]->Int32Value(isolate->GetCurrentContext()).FromMaybe(-1);
  if (!Utf8Of(isolate, info[0], &href) || !Utf8Of(isolate, info[2], &value)) return;
  mv8_buffer out{nullptr, 0};
  int ok = g_hooks.url_set(href.data(), href.size(), part, value.data(), value.size(), &out);
  if (ok) info.GetReturnValue().Set(Parts(isolate, out));
  else info.GetReturnValue().SetNull();
  std::free(out.data);
}

// utf8Encode(string) -> Uint8Array (lone surrogates become U+FFFD)
void Utf8Encode(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  Local<v8::String> text;
  if (!info[0]->ToString(isolate->GetCurrentContext()).ToLocal(&text) || !CheckRoom(isolate, text)) return;
  int size = text->Utf8Length(isolate);
  std::unique_ptr<v8::BackingStore> store =
      v8::ArrayBuffer::NewBackingStoreForNodeLTS(isolate, static_cast<size_t>(size));
  if (!store) return Throw(isolate, v8::Exception::RangeError, "Array buffer allocation failed");
  text->WriteUtf8(isolate, static_cast<char*>(store->Data()), size, nullptr,
                  v8::String::NO_NULL_TERMINATION | v8::String::REPLACE_INVALID_UTF8);
  Local<v8::ArrayBuffer> buffer = v8::ArrayBuffer::New(isolate, std::move(store));
  info.GetReturnValue().Set(v8::Uint8Array::New(buffer, 0, static_cast<size_t>(size)));
}

// utf8EncodeInto(string, Uint8Array) -> [read UTF-16 units, written bytes]
void Utf8EncodeInto(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  Local<v8::String> text;
  if (!info[0]->ToString(isolate->GetCurrentContext()).ToLocal(&text) || !CheckRoom(isolate, text)) return;
  if (!info[1]->IsUint8Array()) return Throw(isolate, v8::Exception::TypeError, "destination must be a Uint8Array");
  Local<v8::Uint8Array> dest = info[1].As<v8::Uint8Array>();
  std::shared_ptr<v8::BackingStore> store = dest->Buffer()->GetBackingStore();
  char* data = static_cast<char*>(store->Data()) + dest->ByteOffset();
  int read = 0;
  int written = text->WriteUtf8(isolate, data, static_cast<int>(dest->ByteLength()), &read,
                                v8::String::NO_NULL_TERMINATION | v8::String::REPLACE_INVALID_UTF8);
  Local<Value> items[] = {v8::Integer::New(isolate, read), v8::Integer::New(isolate, written)};
  info.GetReturnValue().Set(v8::Array::New(isolate, items, 2));
}

// utf8Decode(bytes, fatal, stream) -> [string, consumed] | null (fatal and invalid)
void Utf8Decode(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  if (g_hooks.utf8_decode == nullptr) return Throw(isolate, v8::Exception::TypeError, "decoding is not available");
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (!Bytes(info[0], &data, &len)) {
    return Throw(isolate, v8::Exception::TypeError, "input must be an ArrayBuffer or a view of one");
  }
  bool fatal = info[1]->BooleanValue(isolate);
  bool stream = info[2]->BooleanValue(isolate);
  mv8_buffer out{nullptr, 0};
  size_t consumed = 0;
  int ok = g_hooks.utf8_decode(data, len, fatal, stream, &out, &consumed);
  if (!ok) {
    std::free(out.data);
    info.GetReturnValue().SetNull();
    return;
  }
  if (!HeapRoomFor(isolate, out.len * 2)) {
    std::free(out.data);
    return Throw(isolate, v8::Exception::RangeError, "the decoded text is too large for the heap limit");
  }
  Local<v8::String> text;
  bool made = v8::String::NewFromUtf8(isolate, reinterpret_cast<const char*>(out.data), v8::NewStringType::kNormal,
                                      static_cast<int>(out.len))
                  .ToLocal(&text);
  std::free(out.data);
  if (!made) return Throw(isolate, v8::Exception::RangeError, "the decoded text is too long");
  Local<Value> items[] = {text, v8::Number::New(isolate, static_cast<double>(consumed))};
  info.GetReturnValue().Set(v8::Array::New(isolate, items, 2));
}

// randomFill(view): fills it from the OS's random source.
void RandomFill(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (!info[0]->IsArrayBufferView() || !Bytes(info[0], &data, &len)) {
    return Throw(isolate, v8::Exception::TypeError, "expected a typed array");
  }
  auto* p = const_cast<uint8_t*>(data);
  while (len > 0) {
    ssize_t n = getrandom(p, len, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Throw(isolate, v8::Exception::Error, "the OS random source failed");
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
}

// digest(bits, bytes) -> ArrayBuffer | undefined (unknown algorithm)
void Digest(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  if (g_hooks.digest == nullptr) return Throw(isolate, v8::Exception::TypeError, "digests are not available");
  int algorithm = info[0]->Int32Value(isolate->GetCurrentContext()).FromMaybe(0);
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (!Bytes(info[1], &data, &len)) {
    return Throw(isolate, v8::Exception::TypeError, "data must be an ArrayBuffer or a view of one");
  }
  uint8_t out[64];
  size_t n = g_hooks.digest(algorithm, data, len, out);
  if (n == 0) return;
  Local<v8::Uint8Array> bytes;
  if (NewBytes(isolate, out, n).ToLocal(&bytes)) info.GetReturnValue().Set(bytes->Buffer());
}

// structuredClone(value) -> a deep copy (V8's serializer: the HTML structured clone algorithm)
void StructuredClone(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  Local<v8::Context> context = isolate->GetCurrentContext();
  CloneDelegate delegate(isolate);
  v8::ValueSerializer serializer(isolate, &delegate);
  serializer.WriteHeader();
  if (serializer.WriteValue(context, info[0]).IsNothing()) return;  // DataCloneError thrown
  std::pair<uint8_t*, size_t> buffer = serializer.Release();
  v8::ValueDeserializer deserializer(isolate, buffer.first, buffer.second);
  Local<Value> copy;
  bool ok = deserializer.ReadHeader(context).FromMaybe(false) && deserializer.ReadValue(context).ToLocal(&copy);
  std::free(buffer.first);
  if (ok) info.GetReturnValue().Set(copy);
}

// now() -> milliseconds on a monotonic clock since the process started (performance.now
// subtracts its time origin)
void Now(const FunctionCallbackInfo<Value>& info) {
  auto elapsed = std::chrono::steady_clock::now() - ProcessStart();
  info.GetReturnValue().Set(std::chrono::duration<double, std::milli>(elapsed).count());
}

void StampOrigin(HostContext* host) {
  auto wall = std::chrono::system_clock::now().time_since_epoch();
  auto mono = std::chrono::steady_clock::now() - ProcessStart();
  host->origin_wall_ms = std::chrono::duration<double, std::milli>(wall).count();
  host->origin_mono_ms = std::chrono::duration<double, std::milli>(mono).count();
}

// timeOrigin() -> [wall-clock ms, monotonic ms] when this execution (or live context) began
void TimeOrigin(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  HostContext stamp;
  HostContext* host = HostContext::From(isolate);
  if (host == nullptr || host->origin_wall_ms == 0) {
    StampOrigin(&stamp);
    host = &stamp;
  }
  Local<Value> items[] = {
      v8::Number::New(isolate, host->origin_wall_ms),
      v8::Number::New(isolate, host->origin_mono_ms),
  };
  info.GetReturnValue().Set(v8::Array::New(isolate, items, 2));
}

// setUnrefTimeout(callback, ms) -> id: a timeout that does not keep the event loop alive
void SetUnrefTimeout(const FunctionCallbackInfo<Value>& info) {
  v8::Isolate* isolate = info.GetIsolate();
  HostContext* host = HostContext::From(isolate);
  if (info.Length() < 2 || !info[0]->IsFunction()) {
    return Throw(isolate, v8::Exception::TypeError, "expected a callback and a delay");
  }
  if (host == nullptr || host->loop == nullptr) return;
  double delay = info[1]->NumberValue(isolate->GetCurrentContext()).FromMaybe(0);
  double id = host->loop->AddTimer(info[0].As<v8::Function>(), {}, delay, false, false);
  if (id < 0) return Throw(isolate, v8::Exception::RangeError, "too many pending timers");
  info.GetReturnValue().Set(id);
}

// abandon(promise): the run stops waiting for the host call behind `promise` (fetch aborted)
void Abandon(const FunctionCallbackInfo<Value>& info) {
  HostContext* host = HostContext::From(info.GetIsolate());
  if (host == nullptr || host->calls == nullptr || info.Length() < 1 || !info[0]->IsPromise()) return;
  host->calls->Forget(info[0].As<v8::Promise>());
}

// holding(n): web.js holds n tool calls for the embedder (EventLoop::Stop::kSuspended)
void Holding(const FunctionCallbackInfo<Value>& info) {
  HostContext* host = HostContext::From(info.GetIsolate());
  if (host == nullptr || info.Length() < 1 || !info[0]->IsUint32()) return;
  host->held_tool_calls = info[0].As<v8::Uint32>()->Value();
}

bool Install(Local<v8::Context> context, Local<v8::Object> target) {
  v8::Isolate* isolate = context->GetIsolate();
  Local<v8::Function> fetch;
  Local<v8::String> fetch_name = v8::String::NewFromUtf8Literal(isolate, "mcp-v8:fetch");
  if (!MakeHostFunction(context, fetch_name).ToLocal(&fetch) ||
      !target->DefineOwnProperty(context, v8::String::NewFromUtf8Literal(isolate, "fetch"), fetch, v8::DontEnum)
           .FromMaybe(false)) {
    return false;
  }
  Local<v8::Function> tool;
  Local<v8::String> tool_name = v8::String::NewFromUtf8Literal(isolate, "mcp-v8:tool");
  if (!MakeHostFunction(context, tool_name).ToLocal(&tool) ||
      !target->DefineOwnProperty(context, v8::String::NewFromUtf8Literal(isolate, "tool"), tool, v8::DontEnum)
           .FromMaybe(false)) {
    return false;
  }
  return host::DefineFunction(context, target, "urlParse", UrlParse) && host::DefineFunction(context, target, "urlSet", UrlSet) &&
         host::DefineFunction(context, target, "utf8Encode", Utf8Encode) &&
         host::DefineFunction(context, target, "utf8EncodeInto", Utf8EncodeInto) &&
         host::DefineFunction(context, target, "utf8Decode", Utf8Decode) && host::DefineFunction(context, target, "randomFill", RandomFill) &&
         host::DefineFunction(context, target, "digest", Digest) && host::DefineFunction(context, target, "structuredClone", StructuredClone) &&
         host::DefineFunction(context, target, "now", Now) && host::DefineFunction(context, target, "timeOrigin", TimeOrigin) &&
         host::DefineFunction(context, target, "setUnrefTimeout", SetUnrefTimeout) && host::DefineFunction(context, target, "abandon", Abandon) &&
         host::DefineFunction(context, target, "holding", Holding);
}

}  // namespace web
}  // namespace mv8
