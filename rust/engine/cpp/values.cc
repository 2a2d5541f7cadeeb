#include "values.h"

#include <cstring>

namespace mv8 {
namespace {

class Revive {
 public:
  Revive(v8::Isolate* isolate, v8::Local<v8::Context> context, const std::vector<std::string>& buffers)
      : isolate_(isolate), context_(context), buffers_(buffers) {
    key_ = v8::String::NewFromUtf8(isolate, Values::BytesKey().data(), v8::NewStringType::kInternalized,
                                   static_cast<int>(Values::BytesKey().size()))
               .ToLocalChecked();
  }

  // `value` itself replaced when it is a marker; its children replaced in place. Empty on
  // failure (exception pending).
  v8::MaybeLocal<v8::Value> Walk(v8::Local<v8::Value> value, int depth) {
    if (!value->IsObject() || depth > Values::kMaxDepth) return value;
    v8::Local<v8::Object> object = value.As<v8::Object>();
    if (value->IsArray()) {
      v8::Local<v8::Array> array = value.As<v8::Array>();
      for (uint32_t i = 0; i < array->Length(); i++) {
        v8::Local<v8::Value> item, revived;
        if (!array->Get(context_, i).ToLocal(&item)) return {};
        if (!item->IsObject()) continue;
        if (!Walk(item, depth + 1).ToLocal(&revived)) return {};
        if (revived != item && array->Set(context_, i, revived).IsNothing()) return {};
      }
      return value;
    }
    v8::Local<v8::Array> keys;
    if (!object->GetOwnPropertyNames(context_).ToLocal(&keys)) return {};
    if (keys->Length() == 1) {
      v8::Local<v8::Value> key = keys->Get(context_, 0).ToLocalChecked();
      if (key->StrictEquals(key_)) return Bytes(object);
    }
    for (uint32_t i = 0; i < keys->Length(); i++) {
      v8::Local<v8::Value> key = keys->Get(context_, i).ToLocalChecked();
      v8::Local<v8::Value> item, revived;
      if (!object->Get(context_, key).ToLocal(&item)) return {};
      if (!item->IsObject()) continue;
      if (!Walk(item, depth + 1).ToLocal(&revived)) return {};
      if (revived != item && object->Set(context_, key, revived).IsNothing()) return {};
    }
    return value;
  }

 private:
  v8::MaybeLocal<v8::Value> Bytes(v8::Local<v8::Object> marker) {
    v8::Local<v8::Value> index;
    if (!marker->Get(context_, key_).ToLocal(&index)) return {};
    if (!index->IsUint32() || index.As<v8::Uint32>()->Value() >= buffers_.size()) return marker;
    const std::string& bytes = buffers_[index.As<v8::Uint32>()->Value()];
    // NewBackingStore aborts the process when the allocator refuses (the off-heap budget);
    // this variant, exported by libnode 108, returns null instead.
    std::unique_ptr<v8::BackingStore> store = v8::ArrayBuffer::NewBackingStoreForNodeLTS(isolate_, bytes.size());
    if (!store) {
      isolate_->ThrowException(v8::Exception::RangeError(
          v8::String::NewFromUtf8Literal(isolate_, "Array buffer allocation failed: the bytes do not fit the budget")));
      return {};
    }
    if (!bytes.empty()) std::memcpy(store->Data(), bytes.data(), bytes.size());
    v8::Local<v8::ArrayBuffer> buffer = v8::ArrayBuffer::New(isolate_, std::move(store));
    return v8::Uint8Array::New(buffer, 0, bytes.size());
  }

  v8::Isolate* isolate_;
  v8::Local<v8::Context> context_;
  const std::vector<std::string>& buffers_;
  v8::Local<v8::String> key_;
};

}  // namespace

const std::string& Values::BytesKey() {
  static const std::string key("\0mcp-v8:bytes", 13);
  return key;
}

v8::MaybeLocal<v8::Value> Values::FromJson(v8::Isolate* isolate, v8::Local<v8::Context> context,
                                           const std::string& json, const std::vector<std::string>& buffers) {
  v8::EscapableHandleScope scope(isolate);
  v8::Local<v8::String> text;
  if (!v8::String::NewFromUtf8(isolate, json.data(), v8::NewStringType::kNormal, static_cast<int>(json.size()))
           .ToLocal(&text)) {
    isolate->ThrowException(v8::Exception::RangeError(v8::String::NewFromUtf8Literal(isolate, "the value is too large")));
    return {};
  }
  v8::Local<v8::Value> value;
  if (!v8::JSON::Parse(context, text).ToLocal(&value)) return {};
  if (!buffers.empty() && !Revive(isolate, context, buffers).Walk(value, 0).ToLocal(&value)) return {};
  return scope.Escape(value);
}

}  // namespace mv8
