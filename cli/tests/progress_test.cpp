// SPDX-License-Identifier: BSD-3-Clause
// progress_test.cpp — --progress=FD lines: nbdcopy's "N/100" format, one line per percent gained, 100 at the
// end once, and a reader that went away does not stop (or kill) the command.
#include <doctest/doctest.h>

#include <csignal>
#include <string>

#include <fcntl.h>
#include <unistd.h>

#include "exit_codes.h"
#include "progress_bar.h"

using namespace nbdsnap::cli;

namespace {

std::string drain(int fd) {
  std::string text;
  char buffer[4096];
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  for (ssize_t n; (n = ::read(fd, buffer, sizeof(buffer))) > 0;) text.append(buffer, static_cast<size_t>(n));
  return text;
}

}  // namespace

TEST_CASE("progress_percent_is_whole_percent_and_100_for_nothing_to_do") {
  CHECK(progress_percent(0, 200) == 0);
  CHECK(progress_percent(1, 200) == 0);
  CHECK(progress_percent(2, 200) == 1);
  CHECK(progress_percent(199, 200) == 99);
  CHECK(progress_percent(200, 200) == 100);
  CHECK(progress_percent(0, 0) == 100);
}

TEST_CASE("machine_progress_writes_a_line_per_percent_gained_and_100_once_at_the_end") {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  {
    MachineProgress progress(pipe_fds[1], 400);
    progress.add(1);    // 0%
    progress.add(3);    // 1%
    progress.add(4);    // 2%
    progress.add(392);  // 100%: written as 99 until finish()
    progress.finish();
    progress.finish();
  }
  CHECK(drain(pipe_fds[0]) == "0/100\n1/100\n2/100\n99/100\n100/100\n");
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST_CASE("machine_progress_gives_up_quietly_when_its_reader_is_gone") {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  ::close(pipe_fds[0]);
  MachineProgress progress(pipe_fds[1], 100);
  progress.add(50);  // EPIPE, and no SIGPIPE kills the test
  progress.add(50);
  progress.finish();
  ::close(pipe_fds[1]);
  sigset_t pending;
  sigpending(&pending);
  CHECK_FALSE(sigismember(&pending, SIGPIPE));
}

TEST_CASE("a_progress_fd_must_be_an_open_descriptor") {
  CHECK(parse_progress_fd("2") == 2);
  CHECK_THROWS_AS(parse_progress_fd("999"), CliError);
  CHECK_THROWS_AS(parse_progress_fd("x"), CliError);
  CHECK_THROWS_AS(parse_progress_fd("-1"), CliError);
}
