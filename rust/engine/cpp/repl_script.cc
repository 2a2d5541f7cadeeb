#include "repl_script.h"

#include <cstdio>

namespace mv8 {
namespace {

// Code points V8's scanner ends a sourceURL value at (WhiteSpace and LineTerminator of
// ECMAScript), or refuses it for (quotes); `%` so that the encoding reads back unambiguously.
bool NeedsEncoding(uint32_t c) {
  switch (c) {
    case '\t': case '\n': case 0x0B: case 0x0C: case '\r': case ' ': case '"': case '\'': case '%':
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
    case 0xFEFF:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

}  // namespace

std::string ReplScript::SourceUrl(const std::string& filename) {
  std::string out;
  out.reserve(filename.size());
  size_t i = 0;
  while (i < filename.size()) {
    const unsigned char lead = static_cast<unsigned char>(filename[i]);
    size_t len = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 1;
    if (i + len > filename.size()) len = 1;
    uint32_t c = len == 1 ? lead : lead & (0x7F >> len);
    for (size_t k = 1; k < len; k++) c = (c << 6) | (static_cast<unsigned char>(filename[i + k]) & 0x3F);
    if (NeedsEncoding(c) || c < 0x20) {
      for (size_t k = 0; k < len; k++) {
        char hex[4];
        std::snprintf(hex, sizeof hex, "%%%02X", static_cast<unsigned char>(filename[i + k]));
        out += hex;
      }
    } else {
      out.append(filename, i, len);
    }
    i += len;
  }
  return out;
}

void ReplScript::End(const char* code, size_t code_len, int* line, int* column) {
  *line = 1;
  *column = 1;
  size_t i = 0;
  while (i < code_len) {
    const unsigned char c = static_cast<unsigned char>(code[i]);
    // ECMAScript's line terminators: LF, CR (CR LF is one), U+2028, U+2029 (E2 80 A8/A9).
    if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < code_len && code[i + 1] == '\n') i++;
      ++*line;
      *column = 1;
      i++;
      continue;
    }
    if (c == 0xE2 && i + 2 < code_len && static_cast<unsigned char>(code[i + 1]) == 0x80 &&
        (static_cast<unsigned char>(code[i + 2]) == 0xA8 || static_cast<unsigned char>(code[i + 2]) == 0xA9)) {
      ++*line;
      *column = 1;
      i += 3;
      continue;
    }
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    *column += len == 4 ? 2 : 1;  // a code point past the BMP is two UTF-16 units
    i += len;
  }
}

v8::MaybeLocal<v8::Promise> ReplScript::Evaluate(v8::Isolate* isolate, const char* code, size_t code_len,
                                                 const std::string& filename, bool* too_long) {
  *too_long = false;
  // On a line of its own: the code may end in a line comment. It adds no line before the
  // code, so positions in the code are unchanged.
  const std::string url = "\n//# sourceURL=" + SourceUrl(filename);
  v8::Local<v8::String> source;
  v8::Local<v8::String> suffix;
  if (!v8::String::NewFromUtf8(isolate, code, v8::NewStringType::kNormal, static_cast<int>(code_len))
           .ToLocal(&source) ||
      !v8::String::NewFromUtf8(isolate, url.data(), v8::NewStringType::kNormal, static_cast<int>(url.size()))
           .ToLocal(&suffix) ||
      source->Length() > v8::String::kMaxLength - suffix->Length()) {
    *too_long = true;
    return v8::MaybeLocal<v8::Promise>();
  }
  source = v8::String::Concat(isolate, source, suffix);
  v8::Local<v8::Value> result;
  if (!v8::debug::EvaluateGlobal(isolate, source, v8::debug::EvaluateGlobalMode::kDefault, true).ToLocal(&result)) {
    return v8::MaybeLocal<v8::Promise>();
  }
  // REPL mode always answers with a promise; anything else would be a V8 that changed.
  if (!result->IsPromise()) {
    isolate->ThrowException(v8::Exception::Error(
        v8::String::NewFromUtf8Literal(isolate, "REPL-mode evaluation did not return a promise")));
    return v8::MaybeLocal<v8::Promise>();
  }
  return result.As<v8::Promise>();
}

v8::Local<v8::Value> ReplScript::Unwrap(v8::Isolate* isolate, v8::Local<v8::Context> context,
                                        v8::Local<v8::Value> fulfilled) {
  if (!fulfilled->IsObject()) return v8::Undefined(isolate);
  // An own data property of an object V8 made: reading it runs no user code.
  v8::Local<v8::Value> value;
  if (!fulfilled.As<v8::Object>()
           ->GetRealNamedProperty(context, v8::String::NewFromUtf8Literal(isolate, ".repl_result"))
           .ToLocal(&value)) {
    return v8::Undefined(isolate);
  }
  return value;
}

}  // namespace mv8
