#include "stack_trace_limit.h"

namespace mv8 {
namespace {

constexpr int kDefaultLimit = 10;  // V8's --stack-trace-limit

v8::Local<v8::Private> Key(v8::Isolate* isolate, const char* name) {
  return v8::Private::ForApi(isolate, v8::String::NewFromUtf8(isolate, name).ToLocalChecked());
}

v8::Local<v8::Private> AnchorKey(v8::Isolate* isolate) { return Key(isolate, "mcp-v8:intrinsic-Error"); }
v8::Local<v8::Private> StashKey(v8::Isolate* isolate) { return Key(isolate, "mcp-v8:Error.stackTraceLimit"); }
v8::Local<v8::String> Name(v8::Isolate* isolate) { return v8::String::NewFromUtf8Literal(isolate, "stackTraceLimit"); }

// An own property of a plain object V8 made (a property descriptor): no user code runs.
v8::Local<v8::Value> Field(v8::Local<v8::Context> context, v8::Local<v8::Object> object, const char* key) {
  v8::Local<v8::String> name = v8::String::NewFromUtf8(context->GetIsolate(), key).ToLocalChecked();
  v8::Local<v8::Value> value;
  if (!object->HasOwnProperty(context, name).FromMaybe(false) || !object->Get(context, name).ToLocal(&value)) {
    return v8::Local<v8::Value>();
  }
  return value;
}

// Whether `candidate` is the intrinsic Error function, whose prototype `proto` is (the
// prototype of every error V8 makes): a built-in constructor (no script, not bound, not a
// proxy) whose own `prototype` is `proto`, fixed. Only the intrinsic passes: built-in
// constructors fix their own prototypes, and no script can make a built-in constructor.
bool IsIntrinsicError(v8::Local<v8::Context> context, v8::Local<v8::Value> candidate, v8::Local<v8::Value> proto) {
  v8::Isolate* isolate = context->GetIsolate();
  if (!candidate->IsFunction() || candidate->IsProxy()) return false;
  v8::Local<v8::Function> fn = candidate.As<v8::Function>();
  if (!fn->IsConstructor() || fn->ScriptId() != v8::UnboundScript::kNoScriptId ||
      !fn->GetBoundFunction()->IsUndefined()) {
    return false;
  }
  v8::Local<v8::Value> desc;
  if (!fn->GetOwnPropertyDescriptor(context, v8::String::NewFromUtf8Literal(isolate, "prototype")).ToLocal(&desc) ||
      !desc->IsObject()) {
    return false;
  }
  v8::Local<v8::Object> d = desc.As<v8::Object>();
  v8::Local<v8::Value> value = Field(context, d, "value"), writable = Field(context, d, "writable"),
                       configurable = Field(context, d, "configurable");
  return !value.IsEmpty() && value->StrictEquals(proto) && !writable.IsEmpty() && writable->IsFalse() &&
         !configurable.IsEmpty() && configurable->IsFalse();
}

// The intrinsic Error function, or an empty handle when it cannot be told.
v8::Local<v8::Object> Intrinsic(v8::Local<v8::Context> context) {
  v8::Isolate* isolate = context->GetIsolate();
  v8::TryCatch try_catch(isolate);
  v8::Local<v8::Object> global = context->Global();
  v8::Local<v8::Value> anchored;
  if (global->GetPrivate(context, AnchorKey(isolate)).ToLocal(&anchored) && anchored->IsFunction()) {
    return anchored.As<v8::Object>();
  }
  // A heap made before the anchor: Error.prototype.constructor, when it is the intrinsic.
  v8::Local<v8::Value> error = v8::Exception::Error(v8::String::Empty(isolate));
  if (!error->IsObject()) return v8::Local<v8::Object>();
  v8::Local<v8::Value> proto = error.As<v8::Object>()->GetPrototype();
  v8::Local<v8::Value> desc;  // its own data property only: reading it runs no user code
  if (!proto->IsObject() ||
      !proto.As<v8::Object>()
           ->GetOwnPropertyDescriptor(context, v8::String::NewFromUtf8Literal(isolate, "constructor"))
           .ToLocal(&desc) ||
      !desc->IsObject()) {
    return v8::Local<v8::Object>();
  }
  v8::Local<v8::Value> candidate = Field(context, desc.As<v8::Object>(), "value");
  if (candidate.IsEmpty() || !IsIntrinsicError(context, candidate, proto)) return v8::Local<v8::Object>();
  if (global->SetPrivate(context, AnchorKey(isolate), candidate).FromMaybe(false)) {
    return candidate.As<v8::Object>();
  }
  return v8::Local<v8::Object>();
}

bool IsTrue(v8::Local<v8::Value> v) { return !v.IsEmpty() && v->IsTrue(); }

// A descriptor object (what getOwnPropertyDescriptor returns) as a v8::PropertyDescriptor
// applied to `target`.
void Define(v8::Local<v8::Context> context, v8::Local<v8::Object> target, v8::Local<v8::Object> saved) {
  v8::Isolate* isolate = context->GetIsolate();
  v8::Local<v8::Value> get = Field(context, saved, "get"), set = Field(context, saved, "set");
  bool accessor = (!get.IsEmpty() && !get->IsUndefined()) || (!set.IsEmpty() && !set->IsUndefined());
  if (accessor) {
    v8::PropertyDescriptor desc(get.IsEmpty() ? v8::Undefined(isolate).As<v8::Value>() : get,
                                set.IsEmpty() ? v8::Undefined(isolate).As<v8::Value>() : set);
    desc.set_enumerable(IsTrue(Field(context, saved, "enumerable")));
    desc.set_configurable(true);  // it was, or Stash would have refused it
    target->DefineProperty(context, Name(isolate), desc).FromMaybe(false);
    return;
  }
  v8::Local<v8::Value> value = Field(context, saved, "value");
  v8::PropertyDescriptor desc(value.IsEmpty() ? v8::Undefined(isolate).As<v8::Value>() : value,
                              IsTrue(Field(context, saved, "writable")));
  desc.set_enumerable(IsTrue(Field(context, saved, "enumerable")));
  desc.set_configurable(true);
  target->DefineProperty(context, Name(isolate), desc).FromMaybe(false);
}

}  // namespace

void StackTraceLimit::Anchor(v8::Local<v8::Context> context) {
  v8::Isolate* isolate = context->GetIsolate();
  v8::Local<v8::Value> error;
  if (context->Global()->Get(context, v8::String::NewFromUtf8Literal(isolate, "Error")).ToLocal(&error) &&
      error->IsFunction()) {
    (void)context->Global()->SetPrivate(context, AnchorKey(isolate), error);
  }
}

bool StackTraceLimit::Stash(v8::Local<v8::Context> context, std::string* why) {
  v8::Isolate* isolate = context->GetIsolate();
  v8::TryCatch try_catch(isolate);
  v8::Local<v8::Object> error = Intrinsic(context);
  if (error.IsEmpty()) return true;  // nothing can be found, nothing is put back
  (void)error->DeletePrivate(context, StashKey(isolate));
  v8::Local<v8::Value> desc;
  if (!error->GetOwnPropertyDescriptor(context, Name(isolate)).ToLocal(&desc) || !desc->IsObject()) return true;
  v8::Local<v8::Object> d = desc.As<v8::Object>();
  if (!IsTrue(Field(context, d, "configurable"))) {
    *why = "the heap snapshot cannot be made: the script made Error.stackTraceLimit non-configurable";
    return false;
  }
  v8::Local<v8::Value> value = Field(context, d, "value");
  bool is_default = !value.IsEmpty() && value->IsNumber() && value.As<v8::Number>()->Value() == kDefaultLimit &&
                    IsTrue(Field(context, d, "writable")) && IsTrue(Field(context, d, "enumerable"));
  if (!is_default && !error->SetPrivate(context, StashKey(isolate), d).FromMaybe(false)) {
    *why = "the heap snapshot cannot be made: Error.stackTraceLimit could not be kept";
    return false;
  }
  if (!error->Delete(context, Name(isolate)).FromMaybe(false)) {
    *why = "the heap snapshot cannot be made: Error.stackTraceLimit could not be taken off";
    return false;
  }
  return true;
}

void StackTraceLimit::Install(v8::Local<v8::Context> context) {
  v8::Isolate* isolate = context->GetIsolate();
  v8::TryCatch try_catch(isolate);
  v8::Local<v8::Object> error = Intrinsic(context);
  if (error.IsEmpty()) return;
  v8::Local<v8::Value> saved;
  if (error->GetPrivate(context, StashKey(isolate)).ToLocal(&saved) && saved->IsObject()) {
    (void)error->DeletePrivate(context, StashKey(isolate));
    Define(context, error, saved.As<v8::Object>());
    return;
  }
  if (error->HasOwnProperty(context, Name(isolate)).FromMaybe(true)) return;  // V8 installed it
  v8::PropertyDescriptor desc(v8::Integer::New(isolate, kDefaultLimit), true);
  desc.set_enumerable(true);
  desc.set_configurable(true);
  error->DefineProperty(context, Name(isolate), desc).FromMaybe(false);
}

}  // namespace mv8
