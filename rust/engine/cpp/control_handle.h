// The C ABI's opaque mv8_control: a shared reference to a Control, so that a handle
// the caller frees early never dangles inside a running execution or the watchdog.
#pragma once
#include <memory>

#include "control.h"
#include "shim.h"

struct mv8_control {
  std::shared_ptr<mv8::Control> control = std::make_shared<mv8::Control>();
};

namespace mv8 {
inline std::shared_ptr<Control> ControlOf(mv8_control* handle) { return handle->control; }
}  // namespace mv8
