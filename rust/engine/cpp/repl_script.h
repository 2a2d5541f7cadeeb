// ReplScript: user code evaluated in V8's REPL mode, the mode the DevTools console uses.
// Top-level `await` works with the script's completion value kept for every statement kind,
// and a later script may declare a top-level `let`, `class` or `const` again. Every user script
// goes through it (one-shot runs, live contexts, with and without snapshots): bindings made by a
// classic script and by a REPL script cannot redeclare one another, so the two never mix.
//
// What REPL mode changes for the embedder:
// - the evaluation's value is a promise of `{".repl_result": value}`, whatever the code; the
//   value itself is not awaited (Unwrap reads it out, the caller awaits it);
// - an exception thrown while the script runs rejects that promise: only a source that does
//   not compile throws synchronously;
// - the script has no ScriptOrigin: its name in stack frames comes from a `//# sourceURL=`
//   comment appended after the code, which V8 ignores when the name holds white space or a
//   quote (SourceUrl percent-encodes those).
#pragma once
#include <v8.h>

#include <string>

namespace v8 {
namespace debug {
// Declared in V8's src/debug/debug-interface.h (not shipped by libnode-dev); exported by
// libnode.so.108 with this signature.
enum class EvaluateGlobalMode { kDefault = 0, kDisableBreaks = 1, kDisableBreaksAndThrowOnSideEffect = 2 };
V8_EXPORT MaybeLocal<Value> EvaluateGlobal(Isolate* isolate, Local<String> source, EvaluateGlobalMode mode,
                                           bool repl);
}  // namespace debug
}  // namespace v8

namespace mv8 {

class ReplScript {
 public:
  // Compiles and starts `code` in the isolate's entered context. An empty result means an
  // exception is pending in the caller's TryCatch: the source did not compile, or it is too
  // long for a V8 string (then `*too_long` is set and nothing is pending), or termination.
  static v8::MaybeLocal<v8::Promise> Evaluate(v8::Isolate* isolate, const char* code, size_t code_len,
                                              const std::string& filename, bool* too_long);

  // The script's completion value out of its fulfilled promise's value.
  static v8::Local<v8::Value> Unwrap(v8::Isolate* isolate, v8::Local<v8::Context> context,
                                     v8::Local<v8::Value> fulfilled);

  // Where `code` ends: its number of lines (1-based line of its end) and the 1-based column in
  // UTF-16 units just past its last character. A compile error past it (on the line of the
  // sourceURL comment: "Unexpected end of input") is reported there.
  static void End(const char* code, size_t code_len, int* line, int* column);

  // `filename` as V8 accepts it in a sourceURL comment: white space, line terminators, quotes
  // and `%` percent-encoded (UTF-8 bytes), everything else kept. The name stack frames show.
  static std::string SourceUrl(const std::string& filename);
};

}  // namespace mv8
