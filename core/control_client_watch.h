// SPDX-License-Identifier: BSD-3-Clause
// control_client_watch.h — lets a long control command (events-wait) notice that its client hung up, without
// the core knowing what a socket is: the control socket says how to tell, the command asks.
#pragma once

#include <functional>

namespace nbdsnap {

// While alive, tells the control commands run on this thread whether their client has hung up. A control
// socket serves each client's requests on one thread and sets this around each request it hands over;
// events-wait (which may wait up to 24 h) checks it each second and ends early once the client is gone, so a
// client killed while waiting (Ctrl-C on `nbdsnap events --wait`) does not keep its session — and a slot of
// --control-max-sessions — for the rest of the wait. `gone` is called on this thread; it must not block.
// Thread-safety: per thread; nests (the innermost counts).
class ControlClientWatch {
 public:
  explicit ControlClientWatch(std::function<bool()> gone);
  ~ControlClientWatch();
  ControlClientWatch(const ControlClientWatch&) = delete;
  ControlClientWatch& operator=(const ControlClientWatch&) = delete;
  // Whether the innermost watch of this thread says its client is gone (false without a watch).
  static bool client_gone();

 private:
  std::function<bool()> gone_;
  ControlClientWatch* outer_;
};

}  // namespace nbdsnap
