// io_gate_test.cpp — draining in-flight I/O: freeze waits for those inside, close refuses newcomers.
#include "io_gate.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <thread>

using namespace nbdsnap;
using namespace std::chrono_literals;

TEST_CASE("freeze waits for I/O inside the gate and holds new entries until thaw") {
  IoGate gate;
  REQUIRE(gate.enter());
  std::atomic<bool> frozen{false};
  std::thread freezer([&] {
    gate.freeze();
    frozen = true;
  });
  std::this_thread::sleep_for(30ms);
  CHECK_FALSE(frozen);  // one I/O is still inside
  gate.leave();
  freezer.join();
  CHECK(frozen);

  std::atomic<bool> entered{false};
  std::thread late([&] {
    entered = gate.enter();
    if (entered) gate.leave();
  });
  std::this_thread::sleep_for(30ms);
  CHECK_FALSE(entered);  // waits while frozen
  gate.thaw();
  late.join();
  CHECK(entered);
}

TEST_CASE("nested freezes need as many thaws") {
  IoGate gate;
  gate.freeze();
  gate.freeze();
  gate.thaw();
  std::atomic<bool> entered{false};
  std::thread late([&] {
    entered = gate.enter();
    if (entered) gate.leave();
  });
  std::this_thread::sleep_for(30ms);
  CHECK_FALSE(entered);
  gate.thaw();
  late.join();
  CHECK(entered);
}

TEST_CASE("close waits for I/O inside and then refuses every entry") {
  IoGate gate;
  REQUIRE(gate.enter());
  std::atomic<bool> closed{false};
  std::thread closer([&] {
    gate.close();
    closed = true;
  });
  std::this_thread::sleep_for(30ms);
  CHECK_FALSE(closed);
  gate.leave();
  closer.join();
  CHECK(gate.is_closed());
  CHECK_FALSE(gate.enter());
  GatePass pass(gate);
  CHECK_FALSE(pass.entered());
}

TEST_CASE("close releases entries waiting on a frozen gate with a refusal") {
  IoGate gate;
  gate.freeze();
  std::atomic<int> result{-1};
  std::thread waiter([&] {
    const bool entered = gate.enter();
    result = entered ? 1 : 0;
    if (entered) gate.leave();
  });
  std::this_thread::sleep_for(30ms);
  gate.close();
  waiter.join();
  CHECK(result == 0);
}
