// Web platform natives: the few things cpp/js/web.js cannot do in JavaScript. UTF-8 encoding
// (V8's own writer), UTF-8 decoding, WHATWG URL parsing and digests (the embedder's hooks:
// Rust's std, the url crate, sha1/sha2), OS randomness (getrandom), structured clone (V8's
// ValueSerializer), a monotonic clock and timers that do not keep the event loop alive.
// They hold no state: everything web.js builds lives in JS objects, so it survives snapshots.
#pragma once
#include <v8.h>

#include "shim.h"

namespace mv8 {
struct HostContext;
namespace web {


void SetHooks(const mv8_hooks& hooks);
// The embedder's message for a fetch where none is allowed.
const char* FetchOffMessage();
// Records now as the time origin of the execution or live context `host` serves.
void StampOrigin(HostContext* host);

void UrlParse(const v8::FunctionCallbackInfo<v8::Value>& info);
void UrlSet(const v8::FunctionCallbackInfo<v8::Value>& info);
void Utf8Encode(const v8::FunctionCallbackInfo<v8::Value>& info);
void Utf8EncodeInto(const v8::FunctionCallbackInfo<v8::Value>& info);
void Utf8Decode(const v8::FunctionCallbackInfo<v8::Value>& info);
void RandomFill(const v8::FunctionCallbackInfo<v8::Value>& info);
void Digest(const v8::FunctionCallbackInfo<v8::Value>& info);
void StructuredClone(const v8::FunctionCallbackInfo<v8::Value>& info);
void Now(const v8::FunctionCallbackInfo<v8::Value>& info);
void TimeOrigin(const v8::FunctionCallbackInfo<v8::Value>& info);
void SetUnrefTimeout(const v8::FunctionCallbackInfo<v8::Value>& info);
void Abandon(const v8::FunctionCallbackInfo<v8::Value>& info);
void Holding(const v8::FunctionCallbackInfo<v8::Value>& info);

// Adds the natives above to `target` under their JS names.
bool Install(v8::Local<v8::Context> context, v8::Local<v8::Object> target);

}  // namespace web
}  // namespace mv8
