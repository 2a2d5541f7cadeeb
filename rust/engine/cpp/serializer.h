// Serializer: the completion value as JSON text.
//
// Fast path: V8's JSON.stringify (the builtin, immune to user code replacing the
// global JSON). When that throws (cycles, BigInt, a throwing toJSON or getter) the value
// is rebuilt by a careful walk and stringified again:
//   - undefined, functions and symbols: dropped from objects, null in arrays, and the
//     JSON text `null` at the top level;
//   - NaN and +/-Infinity: null (as JSON.stringify);
//   - BigInt: a string of its decimal digits ("123");
//   - a reference back to an ancestor: the string "[Circular]";
//   - a toJSON or getter that throws: the string "[Thrown: <exception>]";
//   - nesting deeper than kMaxDepth: the string "[Too deep]".
// With `buffers`, an ArrayBuffer or a view of one becomes a marker object naming its bytes,
// copied into *buffers (values.h); without, it is what JSON.stringify makes of it.
#pragma once
#include <v8.h>

#include <string>
#include <vector>

namespace mv8 {

class Serializer {
 public:
  static constexpr int kMaxDepth = 256;

  // Returns false only when the isolate was terminated while user code ran.
  static bool ToJson(v8::Isolate* isolate, v8::Local<v8::Context> context, v8::Local<v8::Value> value,
                     std::string* out, std::vector<std::string>* buffers = nullptr);
};

}  // namespace mv8
