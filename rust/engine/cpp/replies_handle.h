// The C ABI's opaque mv8_replies: a shared reference to a Replies inbox, so that an answer
// posted after its run or context is gone lands nowhere harmful.
#pragma once
#include <memory>

#include "host_calls.h"
#include "shim.h"

struct mv8_replies {
  std::shared_ptr<mv8::Replies> replies;
};
