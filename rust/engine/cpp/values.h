// Values: data crossing between the embedder and JavaScript as JSON text, with byte strings
// carried beside it. A byte string stands in the JSON as the marker object
// {"\u0000mcp-v8:bytes": <index into the byte strings>} and is a Uint8Array on the JS side
// (Serializer::ToJson writes the markers, for ArrayBuffers and their views).
#pragma once
#include <v8.h>

#include <string>
#include <vector>

namespace mv8 {

class Values {
 public:
  // The marker object's one key: a NUL and "mcp-v8:bytes".
  static const std::string& BytesKey();
  // Markers nested deeper than this stay objects.
  static constexpr int kMaxDepth = 1000;

  // Parses `json` (V8's JSON.parse, no user code) and replaces each marker by a Uint8Array
  // of its byte string. Empty with an exception pending when it is not JSON or a buffer
  // cannot be allocated.
  static v8::MaybeLocal<v8::Value> FromJson(v8::Isolate* isolate, v8::Local<v8::Context> context,
                                            const std::string& json, const std::vector<std::string>& buffers);
};

}  // namespace mv8
