#include "errors.h"

namespace mv8 {
namespace {

bool OwnOrInheritedString(v8::Isolate* isolate, v8::Local<v8::Context> context, v8::Local<v8::Object> object,
                          const char* key, std::string* out) {
  v8::Local<v8::Value> value;
  if (!object->Get(context, v8::String::NewFromUtf8(isolate, key).ToLocalChecked()).ToLocal(&value) ||
      !value->IsString()) {
    return false;
  }
  v8::String::Utf8Value utf8(isolate, value);
  if (*utf8 == nullptr) return false;
  out->assign(*utf8, utf8.length());
  return true;
}

}  // namespace

std::string DetailString(v8::Isolate* isolate, v8::Local<v8::Context> context, v8::Local<v8::Value> value) {
  v8::TryCatch try_catch(isolate);
  v8::Local<v8::String> text;
  if (!value->ToDetailString(context).ToLocal(&text)) return "<unprintable value>";
  v8::String::Utf8Value utf8(isolate, text);
  return *utf8 ? std::string(*utf8, utf8.length()) : "<unprintable value>";
}

ErrorInfo ErrorInfo::Plain(std::string name, std::string message) {
  ErrorInfo info;
  info.name = std::move(name);
  info.message = std::move(message);
  info.stack = info.name.empty() ? info.message : info.name + ": " + info.message;
  return info;
}

ErrorInfo ErrorInfo::FromException(v8::Isolate* isolate, v8::Local<v8::Context> context,
                                   v8::Local<v8::Value> exception, v8::Local<v8::Message> message,
                                   const ScriptBounds* script) {
  ErrorInfo info;
  // Reading name/message/stack may run getters; they must not leak an exception.
  v8::TryCatch try_catch(isolate);
  if (message.IsEmpty() && !exception.IsEmpty()) message = v8::Exception::CreateMessage(isolate, exception);
  if (!message.IsEmpty()) {
    info.line = message->GetLineNumber(context).FromMaybe(0);
    info.column = message->GetStartColumn(context).FromMaybe(-1) + 1;
    if (script != nullptr && script->end_line > 0 && info.line > script->end_line) {
      info.line = script->end_line;
      info.column = script->end_column;
    }
  }
  if (!exception.IsEmpty() && exception->IsNativeError()) {
    v8::Local<v8::Object> object = exception.As<v8::Object>();
    info.is_error_object = true;
    OwnOrInheritedString(isolate, context, object, "name", &info.name);
    OwnOrInheritedString(isolate, context, object, "message", &info.message);
    OwnOrInheritedString(isolate, context, object, "stack", &info.stack);
  } else if (!exception.IsEmpty()) {
    info.message = "Uncaught " + DetailString(isolate, context, exception);
  }
  if (info.stack.empty()) {
    info.stack = info.name.empty() ? info.message : info.name + ": " + info.message;
  }
  // Syntax errors (and thrown non-errors) carry no frame: add the position.
  if (info.stack.find("\n    at ") == std::string::npos && info.line > 0 && !message.IsEmpty()) {
    v8::Local<v8::Value> name = message->GetScriptResourceName();
    bool named = !name.IsEmpty() && name->IsString() && name.As<v8::String>()->Length() > 0;
    std::string resource = named || script == nullptr ? DetailString(isolate, context, name) : script->name;
    info.stack += "\n    at " + resource + ":" + std::to_string(info.line) + ":" + std::to_string(info.column);
  }
  return info;
}

}  // namespace mv8
