// ErrorInfo: a JS exception (or rejection value) turned into plain data: name,
// message, stack and the 1-based line/column in the user's source.
#pragma once
#include <v8.h>

#include <string>

namespace mv8 {

struct ErrorInfo {
  bool is_error_object = false;  // an Error instance: name is meaningful
  std::string name;
  std::string message;
  std::string stack;
  int line = 0;
  int column = 0;

  // `message` may be empty; it is then derived from the exception.
  static ErrorInfo FromException(v8::Isolate* isolate, v8::Local<v8::Context> context, v8::Local<v8::Value> exception,
                                 v8::Local<v8::Message> message);
  static ErrorInfo Plain(std::string name, std::string message);
};

// UTF-8 of any value without running user code where V8 allows it.
std::string DetailString(v8::Isolate* isolate, v8::Local<v8::Context> context, v8::Local<v8::Value> value);

}  // namespace mv8
