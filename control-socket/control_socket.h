// control_socket.h — serves a line protocol on a Unix stream socket with one thread per client.
//
// Both front ends use it to serve the engine's Control (one JSON request per line, one reply per line).
// The handler runs on the client's thread and may block (events-wait) without holding up other clients.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "mutex.h"

namespace nbdsnap {

class ControlSocketServer {
 public:
  using LineHandler = std::function<std::string(const std::string& line)>;

  ControlSocketServer() = default;
  ~ControlSocketServer();  // stop()
  ControlSocketServer(const ControlSocketServer&) = delete;
  ControlSocketServer& operator=(const ControlSocketServer&) = delete;

  // Binds PATH (removing a stale socket file, refusing a live one), chmod 0600, and starts accepting.
  // Returns false with a message in `error` on failure.
  bool start(const std::string& path, LineHandler handler, std::string& error);
  // Stops accepting, shuts down client connections, joins all threads, removes the socket file. Returns as
  // soon as every handler running returns: a handler that waits (events-wait) must have been released
  // before, for good (EventLog::stop()). Clients that send half a line or do not read their replies do not
  // hold it up (their descriptors are shut down).
  void stop();

 private:
  void accept_loop();
  void serve_client(int fd);
  std::string path_;
  LineHandler handler_;
  int listen_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  Mutex clients_mutex_;  // a leaf lock; held while closing a client's descriptor (see control_socket.cpp)
  std::list<std::pair<int, std::thread>> clients_ GUARDED_BY(clients_mutex_);
};

}  // namespace nbdsnap
