// The C ABI (shim.h). Every entry point catches C++ exceptions: none may unwind into
// Rust.
#include "shim.h"

#include <v8.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "control_handle.h"
#include "runner.h"
#include "v8_process.h"

extern "C" {

int mv8_initialize(char** error) {
  std::string message;
  try {
    if (mv8::V8Process::Get(&message) != nullptr) return 0;
  } catch (const std::exception& e) {
    message = e.what();
  }
  if (error != nullptr) *error = strdup(message.c_str());
  return 1;
}

const char* mv8_v8_version(void) { return v8::V8::GetVersion(); }

mv8_control* mv8_control_new(void) { return new (std::nothrow) mv8_control(); }

void mv8_control_free(mv8_control* control) { delete control; }

void mv8_control_terminate(mv8_control* control, int reason) {
  if (control != nullptr) control->control->Terminate(reason);
}

void mv8_execute(const mv8_request* request, mv8_response* response) {
  try {
    mv8::Execute(*request, response);
  } catch (const std::bad_alloc&) {
    response->status = MV8_INTERNAL;
    response->error_message = strdup("out of memory in the engine");
  } catch (const std::exception& e) {
    response->status = MV8_INTERNAL;
    response->error_message = strdup(e.what());
  }
}

void mv8_response_free(mv8_response* response) {
  std::free(response->result);
  std::free(response->error_name);
  std::free(response->error_message);
  std::free(response->error_stack);
  delete[] reinterpret_cast<char*>(response->snapshot);  // V8's own blob (runner.cc)
  std::memset(response, 0, sizeof *response);
}

}  // extern "C"
