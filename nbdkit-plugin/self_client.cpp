// SPDX-License-Identifier: BSD-3-Clause
// self_client.cpp — the client side of the NBD fixed newstyle handshake, over a non-blocking socket with a
// deadline.
#include "self_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>
#include <utility>

#include "mutex.h"
#include "nbd_protocol.h"

namespace nbdsnap {
namespace {

using Clock = std::chrono::steady_clock;

// The oldstyle greeting: NBDMAGIC, the oldstyle magic, the size (8 bytes), flags (4) and 124 zero bytes.
constexpr size_t kOldstyleGreetingSize = 152;

// Longest option reply payload we accept: a name and a description of at most 4096 bytes each, and headers.
constexpr uint32_t kMaxReplyPayload = 3 * nbd::kMaxStringLength;

// The clients alive in this process (self_client.h): how many, and the TCP addresses they are bound to.
// Never destroyed: a control request's thread may still end its client while the process exits.
struct LiveClients {
  Mutex mutex;
  CondVar released;  // count went down
  int count GUARDED_BY(mutex) = 0;
  std::set<std::pair<uint32_t, uint16_t>> tcp GUARDED_BY(mutex);  // (address, port), network byte order
};

LiveClients& live_clients() {
  static auto* live = new LiveClients;
  return *live;
}

// Waits until fewer than kMaxLive clients live, at most until `deadline`: a burst of opens of names not
// listed yet (each asks for the list) queues for a moment, each client living milliseconds.
bool take_live_slot(Clock::time_point deadline) {
  LiveClients& live = live_clients();
  MutexLock lock(live.mutex);
  while (live.count >= SelfClient::kMaxLive) {
    if (!live.released.wait_until(live.mutex, deadline) && live.count >= SelfClient::kMaxLive) return false;
  }
  ++live.count;
  return true;
}

void release_live_slot() {
  LiveClients& live = live_clients();
  MutexLock lock(live.mutex);
  --live.count;
  live.released.notify_one();
}

Status timed_out(const std::string& what) {
  return {Errc::io_error, what + ": no answer in time"};
}

// The address to connect to: a Unix socket path, or an IPv4 "HOST:PORT" ("localhost" for any address).
Status socket_address(const NbdListener& where, sockaddr_storage& address, socklen_t& length) {
  std::memset(&address, 0, sizeof address);
  if (!where.unix_path.empty()) {
    auto* un = reinterpret_cast<sockaddr_un*>(&address);
    if (where.unix_path.size() >= sizeof un->sun_path)
      return {Errc::invalid_argument, "socket path " + where.unix_path + " is too long"};
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, where.unix_path.c_str(), where.unix_path.size() + 1);
    length = sizeof *un;
    return Status::ok();
  }
  const size_t colon = where.tcp_host_port.rfind(':');
  if (colon == std::string::npos) return {Errc::invalid_argument, "no port in " + where.tcp_host_port};
  std::string host = where.tcp_host_port.substr(0, colon);
  if (host == "localhost") host = "127.0.0.1";
  const std::string port = where.tcp_host_port.substr(colon + 1);
  char* end = nullptr;
  const unsigned long number = std::strtoul(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || number == 0 || number > 65535)
    return {Errc::invalid_argument, "bad port in " + where.tcp_host_port};
  auto* in = reinterpret_cast<sockaddr_in*>(&address);
  in->sin_family = AF_INET;
  in->sin_port = htons(static_cast<uint16_t>(number));
  if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) != 1)
    return {Errc::invalid_argument, "not an IPv4 address: " + host};
  length = sizeof *in;
  return Status::ok();
}

std::string reply_name(uint32_t type) {
  switch (type) {
    case nbd::kRepErrUnsup:
      return "NBD_REP_ERR_UNSUP";
    case nbd::kRepErrPolicy:
      return "NBD_REP_ERR_POLICY";
    case nbd::kRepErrInvalid:
      return "NBD_REP_ERR_INVALID";
    case nbd::kRepErrPlatform:
      return "NBD_REP_ERR_PLATFORM";
    case nbd::kRepErrTlsReqd:
      return "NBD_REP_ERR_TLS_REQD";
    case nbd::kRepErrUnknown:
      return "NBD_REP_ERR_UNKNOWN";
    case nbd::kRepErrShutdown:
      return "NBD_REP_ERR_SHUTDOWN";
    case nbd::kRepErrTooBig:
      return "NBD_REP_ERR_TOO_BIG";
    default:
      return "reply type " + std::to_string(type);
  }
}

// An error reply as a Status: the code says what a caller can do about it.
Status option_error(const std::string& what, uint32_t type, const std::vector<uint8_t>& payload) {
  std::string message = what + " refused with " + reply_name(type);
  if (!payload.empty()) message += ": " + std::string(payload.begin(), payload.end());
  if (type == nbd::kRepErrTlsReqd) return {Errc::not_supported, message + " (nbdkit requires TLS)"};
  if (type == nbd::kRepErrUnknown) return {Errc::not_found, message};
  return {Errc::io_error, message};
}

}  // namespace

Status SelfClient::connect(const NbdListener& where, std::chrono::milliseconds timeout,
                           std::unique_ptr<SelfClient>& out, bool* oldstyle) {
  sockaddr_storage address;
  socklen_t length = 0;
  if (Status s = socket_address(where, address, length); !s) return s;
  if (!take_live_slot(Clock::now() + timeout))
    return {Errc::busy,
            "the filter's " + std::to_string(kMaxLive) +
                " connections of its own to nbdkit did not end in time; not one more (a connection "
                "made while nbdkit opens one of them would open another, without end)"};
  const int fd = ::socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    const int error = errno;
    release_live_slot();
    return Status::from_errno(error, "socket");
  }
  std::unique_ptr<SelfClient> client(new SelfClient(fd, timeout));  // releases the slot when destroyed
  if (address.ss_family == AF_INET) {
    if (Status s = client->bind_tcp(reinterpret_cast<const sockaddr_in&>(address)); !s) return s;
  }
  const std::string what = "connect to " + where.to_string();
  // A Unix socket whose backlog is full answers EAGAIN at once: try again until the deadline.
  while (::connect(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
    if (errno == EINPROGRESS || errno == EALREADY) {
      if (Status s = client->wait_ready(POLLOUT); !s) return {s.code(), what + ": " + s.message()};
      int error = 0;
      socklen_t size = sizeof error;
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) != 0) error = errno;
      if (error != 0) return Status::from_errno(error, what);
      break;
    }
    if (errno != EAGAIN && errno != EINTR) return Status::from_errno(errno, what);
    if (Clock::now() >= client->deadline_) return timed_out(what);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  uint8_t greeting[18];
  if (Status s = client->receive_bytes(greeting, sizeof greeting); !s)
    return {s.code(), "greeting: " + s.message()};
  if (nbd::get_u64(greeting) == nbd::kInitPasswd && nbd::get_u64(greeting + 8) == nbd::kOldstyleMagic) {
    if (oldstyle != nullptr) *oldstyle = true;
    // The rest of the oldstyle greeting (size, flags, 124 zero bytes), read so that the close is a plain
    // end of the connection to nbdkit, not a reset it would log as an error.
    uint8_t rest[kOldstyleGreetingSize - sizeof greeting];
    (void)client->receive_bytes(rest, sizeof rest);
    return {Errc::not_supported, where.to_string() +
                                     " speaks the oldstyle NBD handshake (nbdkit -o): it serves the default "
                                     "export only, and lists none"};
  }
  if (nbd::get_u64(greeting) != nbd::kInitPasswd || nbd::get_u64(greeting + 8) != nbd::kOptionMagic)
    return {Errc::not_supported, where.to_string() + " does not speak the newstyle NBD handshake"};
  const uint16_t flags = nbd::get_u16(greeting + 16);
  if ((flags & nbd::kFlagFixedNewstyle) == 0)
    return {Errc::not_supported, where.to_string() + " does not offer the fixed newstyle handshake"};
  std::vector<uint8_t> client_flags;
  nbd::put_u32(client_flags, nbd::kClientFlagFixedNewstyle |
                                 ((flags & nbd::kFlagNoZeroes) != 0 ? nbd::kClientFlagNoZeroes : 0));
  if (Status s = client->send_bytes(client_flags.data(), client_flags.size()); !s) return s;
  client->newstyle_ = true;
  out = std::move(client);
  return Status::ok();
}

SelfClient::~SelfClient() {
  // Best effort: nbdkit closes the connection either way once we close ours. Only a newstyle server reads
  // options; to an oldstyle one these bytes would be a malformed request.
  if (newstyle_) {
    std::vector<uint8_t> abort;
    nbd::put_u64(abort, nbd::kOptionMagic);
    nbd::put_u32(abort, nbd::kOptAbort);
    nbd::put_u32(abort, 0);
    (void)::send(fd_, abort.data(), abort.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  ::close(fd_);
  {
    LiveClients& live = live_clients();
    MutexLock lock(live.mutex);
    if (registered_tcp_) live.tcp.erase({tcp_self_.sin_addr.s_addr, tcp_self_.sin_port});
  }
  release_live_slot();
}

int SelfClient::live_count() {
  LiveClients& live = live_clients();
  MutexLock lock(live.mutex);
  return live.count;
}

bool SelfClient::is_own_tcp_peer(const sockaddr_in& peer) {
  LiveClients& live = live_clients();
  MutexLock lock(live.mutex);
  return live.tcp.count({peer.sin_addr.s_addr, peer.sin_port}) != 0;
}

Status SelfClient::bind_tcp(const sockaddr_in& destination) {
  // Bound before the connect, so the port is registered before nbdkit can accept the connection and ask.
  // The destination is this process's own listening address, so it is a local address to bind to.
  sockaddr_in self{};
  self.sin_family = AF_INET;
  self.sin_addr = destination.sin_addr;
  self.sin_port = 0;
  if (::bind(fd_, reinterpret_cast<const sockaddr*>(&self), sizeof self) != 0)
    return Status::from_errno(errno, "bind a connection to nbdkit's own socket");
  socklen_t length = sizeof tcp_self_;
  if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&tcp_self_), &length) != 0)
    return Status::from_errno(errno, "getsockname");
  LiveClients& live = live_clients();
  MutexLock lock(live.mutex);
  live.tcp.insert({tcp_self_.sin_addr.s_addr, tcp_self_.sin_port});
  registered_tcp_ = true;
  return Status::ok();
}

Status SelfClient::list(std::vector<std::string>& names) {
  names.clear();
  if (Status s = send_option(nbd::kOptList, {}); !s) return s;
  for (;;) {
    OptionReply reply;
    if (Status s = read_option_reply(nbd::kOptList, reply); !s) return s;
    if (reply.type == nbd::kRepAck) return Status::ok();
    if ((reply.type & 0x80000000u) != 0) return option_error("NBD_OPT_LIST", reply.type, reply.payload);
    if (reply.type != nbd::kRepServer || reply.payload.size() < 4)
      return {Errc::io_error, "NBD_OPT_LIST: unexpected " + reply_name(reply.type)};
    const uint32_t name_length = nbd::get_u32(reply.payload.data());
    if (name_length > reply.payload.size() - 4)
      return {Errc::io_error, "NBD_OPT_LIST: name longer than its reply"};
    names.emplace_back(reply.payload.begin() + 4, reply.payload.begin() + 4 + name_length);
  }
}

Status SelfClient::info(const std::string& export_name) {
  std::vector<uint8_t> data;
  nbd::put_u32(data, static_cast<uint32_t>(export_name.size()));
  nbd::put_bytes(data, export_name);
  nbd::put_u16(data, 0);  // no information requests: NBD_INFO_EXPORT comes anyway
  if (Status s = send_option(nbd::kOptInfo, data); !s) return s;
  for (;;) {
    OptionReply reply;
    if (Status s = read_option_reply(nbd::kOptInfo, reply); !s) return s;
    if (reply.type == nbd::kRepAck) return Status::ok();
    if ((reply.type & 0x80000000u) != 0)
      return option_error("NBD_OPT_INFO of export '" + export_name + "'", reply.type, reply.payload);
    // NBD_REP_INFO replies carry the size and flags; opening the export was the point.
  }
}

Status SelfClient::send_option(uint32_t option, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> message;
  nbd::put_u64(message, nbd::kOptionMagic);
  nbd::put_u32(message, option);
  nbd::put_u32(message, static_cast<uint32_t>(data.size()));
  message.insert(message.end(), data.begin(), data.end());
  return send_bytes(message.data(), message.size());
}

Status SelfClient::read_option_reply(uint32_t option, OptionReply& out) {
  uint8_t header[20];
  if (Status s = receive_bytes(header, sizeof header); !s) return s;
  if (nbd::get_u64(header) != nbd::kOptionReplyMagic || nbd::get_u32(header + 8) != option)
    return {Errc::io_error, std::string("bad reply to ") + nbd::option_name(option)};
  out.type = nbd::get_u32(header + 12);
  const uint32_t length = nbd::get_u32(header + 16);
  if (length > kMaxReplyPayload)
    return {Errc::io_error, std::string("reply to ") + nbd::option_name(option) + " too long"};
  out.payload.resize(length);
  return receive_bytes(out.payload.data(), length);
}

Status SelfClient::send_bytes(const void* data, size_t length) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (length > 0) {
    const ssize_t n = ::send(fd_, p, length, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      length -= static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (Status s = wait_ready(POLLOUT); !s) return s;
    } else {
      return Status::from_errno(errno, "send to nbdkit");
    }
  }
  return Status::ok();
}

Status SelfClient::receive_bytes(void* data, size_t length) {
  auto* p = static_cast<uint8_t*>(data);
  while (length > 0) {
    const ssize_t n = ::recv(fd_, p, length, 0);
    if (n > 0) {
      p += n;
      length -= static_cast<size_t>(n);
    } else if (n == 0) {
      return {Errc::io_error, "nbdkit closed the connection"};
    } else if (errno == EAGAIN || errno == EINTR) {
      if (Status s = wait_ready(POLLIN); !s) return s;
    } else {
      return Status::from_errno(errno, "receive from nbdkit");
    }
  }
  return Status::ok();
}

Status SelfClient::wait_ready(short events) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
    if (left <= 0) return timed_out("nbdkit's own socket");
    pollfd p{fd_, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n > 0) return Status::ok();  // ready, or an error the next send/recv reports
    if (n < 0 && errno != EINTR) return Status::from_errno(errno, "poll");
  }
}

}  // namespace nbdsnap
