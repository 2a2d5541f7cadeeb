// The C ABI (shim.h). Every entry point catches C++ exceptions: none may unwind into
// Rust.
#include "shim.h"

#include <v8.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>

#include "control_handle.h"
#include "live_context.h"
#include "replies_handle.h"
#include "runner.h"
#include "evaluation.h"
#include "v8_process.h"
#include "web.h"

extern "C" {

void mv8_set_hooks(const mv8_hooks* hooks) {
  if (hooks != nullptr) mv8::web::SetHooks(*hooks);
}

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

int mv8_set_jitless(int jitless) { return mv8::V8Process::SetJitless(jitless != 0) ? 0 : 1; }

int mv8_jitless(void) { return mv8::V8Process::Jitless() ? 1 : 0; }

const char* mv8_v8_version(void) { return v8::V8::GetVersion(); }

uint64_t mv8_monotonic_ns(void) { return mv8::MonotonicNs(); }

mv8_control* mv8_control_new(void) { return new (std::nothrow) mv8_control(); }

void mv8_control_free(mv8_control* control) { delete control; }

void mv8_control_terminate(mv8_control* control, int reason) {
  if (control != nullptr) control->control->Terminate(reason);
}

struct mv8_isolate {
  std::unique_ptr<mv8::PlainIsolate> plain;
};

void mv8_execute(mv8_isolate* prepared, const mv8_request* request, mv8_response* response) {
  std::unique_ptr<mv8::PlainIsolate> plain;
  if (prepared != nullptr) {
    plain = std::move(prepared->plain);
    delete prepared;
  }
  try {
    mv8::Execute(*request, response, std::move(plain));
  } catch (const std::bad_alloc&) {
    response->status = MV8_INTERNAL;
    response->error_message = strdup("out of memory in the engine");
  } catch (const std::exception& e) {
    response->status = MV8_INTERNAL;
    response->error_message = strdup(e.what());
  }
}

mv8_isolate* mv8_isolate_new(const mv8_isolate_options* options, mv8_response* response) {
  std::memset(response, 0, sizeof *response);
  try {
    std::string error;
    std::unique_ptr<mv8::PlainIsolate> plain = mv8::Prepare(*options, &error);
    if (plain == nullptr) {
      response->status = MV8_INTERNAL;
      response->error_message = strdup(error.c_str());
      return nullptr;
    }
    return new mv8_isolate{std::move(plain)};
  } catch (const std::bad_alloc&) {
    response->status = MV8_INTERNAL;
    response->error_message = strdup("out of memory in the engine");
  } catch (const std::exception& e) {
    response->status = MV8_INTERNAL;
    response->error_message = strdup(e.what());
  }
  return nullptr;
}

void mv8_isolate_free(mv8_isolate* isolate) {
  try {
    delete isolate;
  } catch (...) {
  }
}

int mv8_isolate_fits(const mv8_isolate* isolate, const mv8_isolate_options* options) {
  try {
    return isolate != nullptr && mv8::Fits(*isolate->plain, *options) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

void mv8_response_free(mv8_response* response) {
  for (size_t i = 0; i < response->n_buffers; i++) std::free(response->buffers[i].data);
  std::free(response->buffers);
  std::free(response->result);
  std::free(response->error_name);
  std::free(response->error_message);
  std::free(response->error_stack);
  delete[] reinterpret_cast<char*>(response->snapshot);  // V8's own blob (runner.cc)
  std::memset(response, 0, sizeof *response);
}

struct mv8_context {
  mv8::LiveContext* live;
};

namespace {

void Internal(mv8_response* response, const char* message) {
  response->status = MV8_INTERNAL;
  std::free(response->error_message);
  response->error_message = strdup(message);
}

}  // namespace

mv8_context* mv8_context_new(const mv8_context_options* options, mv8_response* response) {
  std::memset(response, 0, sizeof *response);
  try {
    std::string error;
    mv8::LiveContext* live = mv8::LiveContext::New(*options, &error);
    if (live == nullptr) {
      Internal(response, error.c_str());
      return nullptr;
    }
    return new mv8_context{live};
  } catch (const std::bad_alloc&) {
    Internal(response, "out of memory in the engine");
  } catch (const std::exception& e) {
    Internal(response, e.what());
  }
  return nullptr;
}

void mv8_context_free(mv8_context* context) {
  if (context == nullptr) return;
  try {
    delete context->live;
  } catch (...) {
  }
  delete context;
}

void mv8_context_run(mv8_context* context, const mv8_context_request* request, mv8_response* response) {
  std::memset(response, 0, sizeof *response);
  try {
    context->live->Run(*request, response);
  } catch (const std::bad_alloc&) {
    Internal(response, "out of memory in the engine");
  } catch (const std::exception& e) {
    Internal(response, e.what());
  }
}

int mv8_context_expose(mv8_context* context, const char* name, size_t name_len, char** error) {
  std::string message;
  try {
    if (context->live->Expose(std::string(name, name_len), &message)) return 0;
  } catch (const std::exception& e) {
    message = e.what();
  }
  if (error != nullptr) *error = strdup(message.c_str());
  return 1;
}

void mv8_context_snapshot(mv8_context* context, mv8_response* response) {
  std::memset(response, 0, sizeof *response);
  try {
    context->live->Snapshot(response);
  } catch (const std::bad_alloc&) {
    Internal(response, "out of memory in the engine");
  } catch (const std::exception& e) {
    Internal(response, e.what());
  }
}

int mv8_context_closed(mv8_context* context) { return context->live->closed() ? 1 : 0; }

int mv8_context_heap_stats(mv8_context* context, mv8_heap_stats* stats) {
  std::memset(stats, 0, sizeof *stats);
  try {
    return context->live->HeapStats(stats) ? MV8_COMPLETED : MV8_CLOSED;
  } catch (...) {
    return MV8_INTERNAL;
  }
}

mv8_replies* mv8_context_replies(mv8_context* context) {
  return new (std::nothrow) mv8_replies{context->live->replies()};
}

mv8_replies* mv8_replies_new(void) {
  try {
    return new mv8_replies{std::make_shared<mv8::Replies>()};
  } catch (...) {
    return nullptr;
  }
}

void mv8_replies_free(mv8_replies* replies) { delete replies; }

void mv8_replies_post(mv8_replies* replies, uint64_t call_id, int ok, const char* json, size_t json_len,
                      const mv8_bytes* buffers, size_t n_buffers) {
  try {
    mv8::Reply reply;
    reply.id = call_id;
    reply.ok = ok != 0;
    reply.json.assign(json, json_len);
    for (size_t i = 0; i < n_buffers; i++) {
      reply.buffers.emplace_back(reinterpret_cast<const char*>(buffers[i].data), buffers[i].len);
    }
    replies->replies->Post(std::move(reply));
  } catch (...) {
    // Out of memory: the call stays pending until its run ends.
  }
}

}  // extern "C"
