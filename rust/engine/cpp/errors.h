// ErrorInfo: a JS exception (or rejection value) turned into plain data: name,
// message, stack and the 1-based line/column in the user's source.
#pragma once
#include <v8.h>

#include <string>

namespace mv8 {

// The user's script as a compile error needs it: the name its message may lack, and where the
// user's code ends (0: unknown), past which a position is moved back to that end.
struct ScriptBounds {
  std::string name;
  int end_line = 0;
  int end_column = 0;
};

struct ErrorInfo {
  bool is_error_object = false;  // an Error instance: name is meaningful
  std::string name;
  std::string message;
  std::string stack;
  int line = 0;
  int column = 0;

  // `message` may be empty; it is then derived from the exception. `script`, when given, is
  // the script the position is in (see ScriptBounds).
  static ErrorInfo FromException(v8::Isolate* isolate, v8::Local<v8::Context> context, v8::Local<v8::Value> exception,
                                 v8::Local<v8::Message> message, const ScriptBounds* script = nullptr);
  static ErrorInfo Plain(std::string name, std::string message);
};

// UTF-8 of any value without running user code where V8 allows it.
std::string DetailString(v8::Isolate* isolate, v8::Local<v8::Context> context, v8::Local<v8::Value> value);

}  // namespace mv8
