#include "serializer.h"

#include <vector>

#include "errors.h"
#include "values.h"

namespace mv8 {
namespace {

using v8::Local;
using v8::Value;

class Walker {
 public:
  Walker(v8::Isolate* isolate, Local<v8::Context> context, std::vector<std::string>* buffers)
      : isolate_(isolate), context_(context), buffers_(buffers) {}

  bool terminated() const { return terminated_; }

  // Returns an empty handle for "omit" (undefined, function, symbol).
  Local<Value> Clean(Local<Value> key, Local<Value> value, int depth) {
    if (terminated_) return Local<Value>();
    if (value->IsBigInt()) return Str(DetailString(isolate_, context_, value));
    if (buffers_ != nullptr && (value->IsArrayBufferView() || value->IsArrayBuffer())) return Bytes(value);
    if (value->IsObject() && !value->IsFunction()) {
      Local<Value> to_json;
      if (!Call([&] { return value.As<v8::Object>()->Get(context_, Str("toJSON")); }, &to_json)) return thrown_;
      if (to_json->IsFunction()) {
        Local<Value> replaced;
        Local<Value> argv[] = {key};
        if (!Call([&] { return to_json.As<v8::Function>()->Call(context_, value, 1, argv); }, &replaced)) {
          return thrown_;
        }
        value = replaced;
        if (value->IsBigInt()) return Str(DetailString(isolate_, context_, value));
      }
    }
    if (value->IsUndefined() || value->IsFunction() || value->IsSymbol()) return Local<Value>();
    if (!value->IsObject()) return value;
    Local<v8::Object> object = value.As<v8::Object>();
    for (auto& ancestor : ancestors_) {
      if (ancestor == object) return Str("[Circular]");
    }
    if (depth >= Serializer::kMaxDepth) return Str("[Too deep]");
    // Boxed primitives and other exotic objects: JSON.stringify copes with them.
    if (value->IsNumberObject() || value->IsStringObject() || value->IsBooleanObject()) return value;
    ancestors_.push_back(object);
    Local<Value> out = value->IsArray() ? CleanArray(object.As<v8::Array>(), depth) : CleanObject(object, depth);
    ancestors_.pop_back();
    return out;
  }

 private:
  Local<Value> Bytes(Local<Value> value) {
    std::string bytes;
    if (value->IsArrayBufferView()) {
      Local<v8::ArrayBufferView> view = value.As<v8::ArrayBufferView>();
      bytes.resize(view->ByteLength());
      if (!bytes.empty()) view->CopyContents(bytes.data(), bytes.size());
    } else {
      std::shared_ptr<v8::BackingStore> store = value.As<v8::ArrayBuffer>()->GetBackingStore();
      if (store->ByteLength() != 0) bytes.assign(static_cast<const char*>(store->Data()), store->ByteLength());
    }
    Local<v8::Object> marker = v8::Object::New(isolate_);
    Local<Value> index = v8::Integer::NewFromUnsigned(isolate_, static_cast<uint32_t>(buffers_->size()));
    buffers_->push_back(std::move(bytes));
    if (marker->CreateDataProperty(context_, Str(Values::BytesKey()), index).IsNothing()) return Local<Value>();
    return marker;
  }

  Local<v8::String> Str(const std::string& s) {
    return v8::String::NewFromUtf8(isolate_, s.data(), v8::NewStringType::kNormal, static_cast<int>(s.size()))
        .ToLocalChecked();
  }

  // Runs `fn` under a TryCatch; on exception sets thrown_ to "[Thrown: ...]".
  template <typename T, typename Fn>
  bool Call(Fn fn, Local<T>* out) {
    v8::TryCatch try_catch(isolate_);
    if (fn().ToLocal(out)) return true;
    if (try_catch.HasTerminated() || isolate_->IsExecutionTerminating()) {
      terminated_ = true;
      thrown_ = Local<Value>();
      return false;
    }
    thrown_ = Str("[Thrown: " + DetailString(isolate_, context_, try_catch.Exception()) + "]");
    return false;
  }

  Local<Value> CleanArray(Local<v8::Array> array, int depth) {
    uint32_t length = array->Length();
    Local<v8::Array> out = v8::Array::New(isolate_, 0);
    for (uint32_t i = 0; i < length && !terminated_; i++) {
      Local<Value> item;
      if (!Call([&] { return array->Get(context_, i); }, &item)) {
        item = thrown_;
      } else {
        item = Clean(v8::Integer::NewFromUnsigned(isolate_, i)->ToString(context_).ToLocalChecked(), item, depth + 1);
      }
      if (terminated_) return Local<Value>();
      if (item.IsEmpty()) item = v8::Null(isolate_);
      if (out->Set(context_, i, item).IsNothing()) return Local<Value>();
    }
    return out;
  }

  Local<Value> CleanObject(Local<v8::Object> object, int depth) {
    Local<v8::Array> keys;
    if (!Call(
            [&] {
              return object->GetOwnPropertyNames(context_, v8::PropertyFilter::ONLY_ENUMERABLE,
                                                 v8::KeyConversionMode::kConvertToString);
            },
            &keys)) {
      return thrown_;
    }
    Local<v8::Object> out = v8::Object::New(isolate_);
    for (uint32_t i = 0; i < keys->Length() && !terminated_; i++) {
      Local<Value> key = keys->Get(context_, i).ToLocalChecked();
      Local<Value> item;
      if (!Call([&] { return object->Get(context_, key); }, &item)) {
        item = thrown_;
      } else {
        item = Clean(key, item, depth + 1);
      }
      if (terminated_) return Local<Value>();
      if (item.IsEmpty()) continue;
      if (out->CreateDataProperty(context_, key.As<v8::Name>(), item).IsNothing()) return Local<Value>();
    }
    return out;
  }

  v8::Isolate* isolate_;
  Local<v8::Context> context_;
  std::vector<std::string>* buffers_;
  std::vector<Local<v8::Object>> ancestors_;
  Local<Value> thrown_;
  bool terminated_ = false;
};

bool Stringify(v8::Isolate* isolate, Local<v8::Context> context, Local<Value> value, std::string* out,
               bool* threw) {
  v8::TryCatch try_catch(isolate);
  Local<v8::String> json;
  if (!v8::JSON::Stringify(context, value).ToLocal(&json)) {
    if (try_catch.HasTerminated() || isolate->IsExecutionTerminating()) return false;
    *threw = true;
    return true;
  }
  v8::String::Utf8Value utf8(isolate, json);
  out->assign(*utf8, utf8.length());
  // For undefined, functions and symbols (also as toJSON results) the API returns the
  // word "undefined", which is not JSON.
  if (*out == "undefined") *out = "null";
  return true;
}

}  // namespace

bool Serializer::ToJson(v8::Isolate* isolate, Local<v8::Context> context, Local<Value> value, std::string* out,
                        std::vector<std::string>* buffers) {
  v8::HandleScope scope(isolate);
  bool threw = false;
  // With buffers, an object may hold byte views anywhere: only the walk finds them.
  if (buffers == nullptr || !value->IsObject()) {
    if (!Stringify(isolate, context, value, out, &threw)) return false;
    if (!threw) return true;
  }
  Walker walker(isolate, context, buffers);
  Local<Value> clean = walker.Clean(v8::String::Empty(isolate), value, 0);
  if (walker.terminated()) return false;
  if (clean.IsEmpty()) {
    *out = "null";
    return true;
  }
  threw = false;
  if (!Stringify(isolate, context, clean, out, &threw)) return false;
  if (threw) *out = "null";  // cannot happen with a cleaned tree; never leave it empty
  return true;
}

}  // namespace mv8
