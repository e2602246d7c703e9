// socket_io.h — bounded waits on Unix stream sockets for the CLI: connecting, sending and receiving each end
// at a deadline, so a server that accepts and never answers (or a full listen backlog) cannot hang a command.
//
// Descriptors opened here are non-blocking and close-on-exec. Errors are errno values (ETIMEDOUT when the
// deadline passed); callers turn them into CliError messages naming the socket.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include <sys/types.h>

namespace nbdsnap::cli {

// A point in time after which a wait gives up (steady clock).
class Deadline {
 public:
  explicit Deadline(std::chrono::milliseconds budget) : end_(std::chrono::steady_clock::now() + budget) {}
  // Whichever of the two comes first.
  static Deadline earlier(const Deadline& a, const Deadline& b) { return a.end_ < b.end_ ? a : b; }
  bool passed() const { return std::chrono::steady_clock::now() >= end_; }
  std::chrono::steady_clock::time_point end() const { return end_; }
  // Milliseconds left for poll(2): 0 once passed, rounded up so a wait never ends early, capped at INT_MAX.
  int poll_milliseconds() const;

 private:
  std::chrono::steady_clock::time_point end_;
};

// The timeout of the command line as milliseconds (seconds may have a fraction).
std::chrono::milliseconds timeout_milliseconds(double seconds);

// Connects to the Unix socket at path. Returns the descriptor, or -1 with errno (ENAMETOOLONG for a path
// that does not fit; ETIMEDOUT when the listen backlog stayed full until the deadline).
int connect_unix(const std::string& path, const Deadline& deadline);

// Sends all of data. False with errno (ETIMEDOUT when the peer did not take it in time).
bool send_all(int fd, std::string_view data, const Deadline& deadline);

// Receives at most `capacity` bytes, waiting until some arrive. Returns the count, 0 at end of file, or -1
// with errno (ETIMEDOUT when nothing came before the deadline).
ssize_t receive_some(int fd, char* buffer, size_t capacity, const Deadline& deadline);

}  // namespace nbdsnap::cli
