// SPDX-License-Identifier: BSD-3-Clause
// nbd_poll_test.cpp — the bounded wait on libnbd handles (poll_nbd_handles, behind NbdImage::poll): a signal
// ends it at once, so a --timeout deadline looks again right after a continue (stop_aware_deadline.h).
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include <libnbd.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbd_connect_errors.h"
#include "nbd_image.h"
#include "stop_aware_deadline.h"

using namespace nbdsnap::cli;
using namespace std::chrono_literals;

TEST_CASE("poll_nbd_handles: a SIGCONT ends the wait at once, not after the whole wait again") {
  watch_for_continues();
  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  nbd_handle* handle = nbd_create();
  REQUIRE(handle != nullptr);
  REQUIRE(nbd_aio_connect_socket(handle, pair[0]) == 0);  // waits for a greeting the peer never sends
  const pthread_t waiter = ::pthread_self();
  std::thread continuer([waiter] {
    std::this_thread::sleep_for(100ms);
    ::pthread_kill(waiter,
                   SIGCONT);  // handled on the waiting thread, as after a ^Z of a single-threaded wait
  });
  const auto start = std::chrono::steady_clock::now();
  nbd_handle* handles[1] = {handle};
  const int polled = poll_nbd_handles(handles, 10s);
  const auto waited = std::chrono::steady_clock::now() - start;
  continuer.join();
  CHECK(polled == 0);  // nothing happened: the caller's deadline looks again
  CHECK(waited < 5s);  // nbd_poll() of libnbd 1.14 polled the whole 10 s again after EINTR
  nbd_close(handle);   // closes pair[0]
  ::close(pair[1]);
}

TEST_CASE("poll_nbd_handles: nothing to read within the wait is 0, a peer that hangs up is a failure") {
  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  nbd_handle* handle = nbd_create();
  REQUIRE(handle != nullptr);
  REQUIRE(nbd_aio_connect_socket(handle, pair[0]) == 0);
  nbd_handle* handles[1] = {handle};
  CHECK(poll_nbd_handles(handles, 10ms) == 0);
  ::close(pair[1]);  // the "server" goes away before its greeting
  int polled = 0;
  for (int i = 0; i < 10 && polled == 0; ++i) polled = poll_nbd_handles(handles, 1s);
  CHECK((polled == -1 || nbd_aio_is_dead(handle) == 1 || nbd_aio_is_closed(handle) == 1));
  nbd_close(handle);
}

TEST_CASE("lost_connection_message: nothing while the connection lives, the URI once the server hung up") {
  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
  nbd_handle* handle = nbd_create();
  REQUIRE(handle != nullptr);
  REQUIRE(nbd_aio_connect_socket(handle, pair[0]) == 0);
  const std::string uri = "nbd+unix:///A?socket=/run/x.sock";
  CHECK(lost_connection_message(handle, uri).empty());
  ::close(pair[1]);
  nbd_handle* handles[1] = {handle};
  for (int i = 0; i < 10 && poll_nbd_handles(handles, 1s) == 0;) ++i;
  const std::string message = lost_connection_message(handle, uri);
  CHECK(message.find(uri) != std::string::npos);
  CHECK(message.find("closed the connection") != std::string::npos);
  nbd_close(handle);
}
