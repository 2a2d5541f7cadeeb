// HostCalls: JavaScript calling the embedder. An exposed function (MakeHostFunction: the
// native HostCall, named by its data) returns a promise; the call leaves through the live
// context's dispatch callback with its arguments as JSON (byte strings beside it) and its
// answer comes back from any thread as a Reply posted to Replies. The event loop delivers
// replies and settles the promises. A reply for a call that is no longer pending (its run
// was cancelled or timed out, or a snapshot dropped it) is discarded.
#pragma once
#include <v8.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "control.h"
#include "shim.h"

namespace mv8 {

struct Reply {
  uint64_t id = 0;
  bool ok = false;   // false: `json` is {"name": ..., "message": ...} of the embedder's error
  std::string json;
  std::vector<std::string> buffers;
};

// The inbox of one live context: thread-safe, shared with the embedder's handles, so a
// reply posted after the context is gone lands nowhere harmful.
class Replies {
 public:
  void Post(Reply reply);
  std::vector<Reply> Take();
  // The Control of the run that is waiting for replies (nullptr between runs): woken on Post.
  void SetWaiter(std::shared_ptr<Control> control);

 private:
  std::mutex mu_;
  std::vector<Reply> inbox_;
  std::shared_ptr<Control> waiter_;
};

class HostCalls {
 public:
  HostCalls(mv8_host_call_fn dispatch, void* user_data, std::shared_ptr<Replies> replies)
      : dispatch_(dispatch), user_data_(user_data), replies_(std::move(replies)) {}

  bool pending() const { return !pending_.empty(); }
  // Where the answers to these calls arrive.
  Replies* replies() const { return replies_.get(); }
  // Sends one call out; the promise settles when its reply is delivered.
  v8::MaybeLocal<v8::Promise> Start(v8::Local<v8::Context> context, v8::Local<v8::String> name,
                                    v8::Local<v8::Array> args);
  // Settles the promises whose replies arrived; returns whether it settled any.
  bool Deliver(v8::Local<v8::Context> context);
  // Forgets every pending call (their promises stay pending) and every undelivered reply.
  void Clear();
  // Forgets the pending call whose promise is `promise` (an aborted fetch): the run no longer
  // waits for it, and its reply is dropped.
  void Forget(v8::Local<v8::Promise> promise);

 private:
  mv8_host_call_fn dispatch_;
  void* user_data_;
  std::shared_ptr<Replies> replies_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, v8::Global<v8::Promise::Resolver>> pending_;
};

// The native behind every exposed function (external_refs.inc). Outside a live context
// that answers it, the promise it returns is rejected with a TypeError.
void HostCall(const v8::FunctionCallbackInfo<v8::Value>& info);

// A function called `name` that calls out through HostCall (not a constructor).
v8::MaybeLocal<v8::Function> MakeHostFunction(v8::Local<v8::Context> context, v8::Local<v8::String> name);

}  // namespace mv8
