// SPDX-License-Identifier: BSD-3-Clause
// stop_deadline_test.cpp — the bound on nbdsnapd's stop (stop_deadline.h): disarmed in time it never saves
// nor exits; past its limit it saves the CBT state once, logs why, makes a late disarm() answer false, and
// ends the process with the save's result. The firing cases run in a forked child, since they end it.
#include "stop_deadline.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

using namespace nbdsnap;
using namespace std::chrono_literals;

namespace {

// What a forked child wrote to its pipe, and how it ended.
struct ChildEnd {
  std::string said;
  int exit_status = -1;  // -1: killed by a signal, or did not end within the bound
};

// Runs `body` in a forked child whose fd `out` is a pipe to this process; waits at most 20 s for its end.
template <typename Body>
ChildEnd run_in_child(Body body) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    body(pipe_fds[1]);
    ::_exit(99);  // the body was to end the process itself
  }
  ::close(pipe_fds[1]);
  ChildEnd end;
  char buffer[1024];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof(buffer))) > 0;) end.said.append(buffer, size_t(n));
  ::close(pipe_fds[0]);
  int status = 0;
  for (int i = 0; i < 2000; ++i) {
    if (::waitpid(child, &status, WNOHANG) == child) {
      if (WIFEXITED(status)) end.exit_status = WEXITSTATUS(status);
      return end;
    }
    std::this_thread::sleep_for(10ms);
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, &status, 0);
  return end;
}

void say(int fd, const std::string& text) {
  (void)!::write(fd, text.data(), text.size());
}

}  // namespace

TEST_CASE("a stop disarmed in time never saves nor exits") {
  std::atomic<int> saves{0};
  std::atomic<int> warnings{0};
  SUBCASE("armed, then disarmed") {
    StopDeadline deadline(
        200ms, [&] { return ++saves, true; }, [&](const std::string&) { ++warnings; });
    deadline.arm();
    deadline.arm();  // a second SIGTERM: no second clock
    CHECK(deadline.disarm());
    std::this_thread::sleep_for(300ms);  // past the limit
    CHECK(!deadline.disarm());           // decided once
  }
  SUBCASE("never armed: the destructor has no thread to wait for") {
    StopDeadline deadline(
        1ms, [&] { return ++saves, true; }, [&](const std::string&) { ++warnings; });
    std::this_thread::sleep_for(20ms);
    CHECK(deadline.disarm());
  }
  SUBCASE("armed, and the process ends its stop by destroying it before the limit") {
    const auto begun = std::chrono::steady_clock::now();
    {
      StopDeadline deadline(
          10s, [&] { return ++saves, true; }, [&](const std::string&) { ++warnings; });
      deadline.arm();
    }
    CHECK(std::chrono::steady_clock::now() - begun < 5s);  // the watch ends with it, not at its limit
  }
  CHECK(saves == 0);
  CHECK(warnings == 0);
}

TEST_CASE("past its limit the deadline saves once, refuses a late disarm and exits with the save's result") {
  for (const bool save_succeeds : {true, false}) {
    CAPTURE(save_succeeds);
    const ChildEnd end = run_in_child([save_succeeds](int out) {
      StopDeadline deadline(
          50ms,
          [&] {
            std::this_thread::sleep_for(
                200ms);  // a save that takes time: the stop sequence goes on meanwhile
            say(out, "save;");
            return save_succeeds;
          },
          [&](const std::string& line) { say(out, "warn: " + line + ";"); });
      deadline.arm();
      std::this_thread::sleep_for(100ms);  // past the limit, during the save
      say(out, deadline.disarm() ? "disarmed in time;" : "disarm refused;");
      for (;;) std::this_thread::sleep_for(1s);  // the stop sequence waits for the exit (stop_deadline.h)
    });
    INFO(end.said);
    CHECK(end.exit_status == (save_succeeds ? 0 : 1));
    CHECK(end.said.find("warn: a request still ran 0 s into the stop") == 0);
    CHECK(end.said.find("disarm refused;") != std::string::npos);
    CHECK(end.said.find("disarm refused;") < end.said.find("save;"));
    CHECK(end.said.find(save_succeeds ? "CBT state saved; exiting with a request still stuck"
                                      : "exiting with errors") != std::string::npos);
  }
}
