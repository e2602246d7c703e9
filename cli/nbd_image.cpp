// SPDX-License-Identifier: BSD-3-Clause
// nbd_image.cpp — libnbd connection with a bounded handshake, and block status walking.
//
// Design notes. The handshake runs through nbd_aio_connect_uri() and poll_nbd_handles() until the handle is
// ready, the connection fails, or the timeout passes. The wrong socket given by mistake is recognised on the
// way: an nbdsnap control socket accepts the connection and then says nothing (it waits for a request line),
// so a handshake that has not finished after kProbeAfter, or that failed or timed out, probes the URI's Unix
// socket on a fresh connection (libnbdsnap's socket_probe.h) and, if it speaks the control protocol, says so.
#include "nbd_image.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include <libnbd.h>
#include <poll.h>
#include <sys/stat.h>

#include "control_client.h"
#include "exit_codes.h"
#include "nbd_connect_errors.h"
#include "socket_kind.h"
#include "stop_aware_deadline.h"

namespace nbdsnap::cli {

namespace {

constexpr uint64_t kBlockStatusWindow = 1ull << 30;           // below 4 GiB: every server accepts it
constexpr std::chrono::milliseconds kProbeAfter{1000};        // an NBD server greets at once
constexpr std::chrono::milliseconds kProbeGreetingWait{500};  // the probe's wait for an NBD greeting
constexpr std::chrono::milliseconds kProbeBound{2000};        // the whole probe
constexpr std::chrono::milliseconds kDisconnectWait{1000};    // for the server to close after NBD_CMD_DISC
constexpr std::chrono::milliseconds kFlushWait{std::chrono::minutes(10)};  // for NBD_CMD_FLUSH at least

// Whether the socket is an nbdsnap control socket, asked within `budget` (half of it at most to listen for
// an NBD greeting first).
bool is_control_socket(const std::string& socket, std::chrono::milliseconds budget) {
  const auto bound = std::min(budget, kProbeBound);
  return client::probe_socket_kind(socket, std::min(kProbeGreetingWait, bound / 2),
                                   std::chrono::steady_clock::now() + bound) == client::SocketKind::control;
}

struct ExtentWalk {
  const std::string* context;
  uint64_t request_offset;
  uint64_t request_end;
  uint32_t mask;
  uint32_t want;
  uint64_t covered;  // end of the last extent seen, clamped to request_end
  std::vector<ByteRange>* out;
};

int collect_extents(void* user_data, const char* metacontext, uint64_t offset, uint32_t* entries,
                    size_t count, int* error) {
  auto* walk = static_cast<ExtentWalk*>(user_data);
  if (*walk->context != metacontext) return 0;
  uint64_t position = offset;
  for (size_t i = 0; i + 1 < count && position < walk->request_end; i += 2) {
    uint64_t length = std::min<uint64_t>(entries[i], walk->request_end - position);
    if ((entries[i + 1] & walk->mask) == walk->want && length > 0) walk->out->push_back({position, length});
    position += length;
  }
  walk->covered = std::max(walk->covered, position);
  return 0;
}

std::chrono::milliseconds until(std::chrono::steady_clock::time_point when) {
  const auto left = when - std::chrono::steady_clock::now();
  return std::max(std::chrono::milliseconds(0), std::chrono::ceil<std::chrono::milliseconds>(left));
}

}  // namespace

std::string dirty_bitmap_context(const std::string& checkpoint) {
  return "qemu:dirty-bitmap:" + checkpoint;
}

NbdImage::NbdImage(const std::string& uri, const std::vector<std::string>& meta_contexts,
                   std::chrono::milliseconds timeout, const std::string& option)
    : uri_(uri), timeout_(timeout), option_(option) {
  open(meta_contexts, Probe::wrong_socket);
}

NbdImage::NbdImage(const std::string& uri, const std::vector<std::string>& meta_contexts,
                   std::chrono::milliseconds timeout, Probe probe)
    : uri_(uri), timeout_(timeout) {
  open(meta_contexts, probe);
}

void NbdImage::open(const std::vector<std::string>& meta_contexts, Probe probe) {
  handle_ = nbd_create();
  if (handle_ == nullptr) throw CliError(ExitCode::io_error, "libnbd: " + last_error());
  try {
    connect(meta_contexts, probe);
  } catch (...) {
    nbd_close(handle_);
    handle_ = nullptr;
    throw;
  }
}

void NbdImage::connect(const std::vector<std::string>& meta_contexts, Probe probe) {
  // The URI is the user's own (--image): its tls-psk-file= may name a local file, as with nbdinfo and
  // nbdcopy. nbds:// and nbds+unix:// need TLS; tls-certificates= names the CA and client certificate
  // directory.
  if (nbd_set_uri_allow_local_file(handle_, true) == -1)
    throw CliError(ExitCode::io_error, "libnbd: " + last_error());
  for (const std::string& context : meta_contexts) {
    if (nbd_add_meta_context(handle_, context.c_str()) == -1)
      throw CliError(ExitCode::io_error, "libnbd: " + last_error());
  }
  const std::string socket = probe == Probe::wrong_socket ? unix_socket_of_uri(uri_) : std::string();
  bool probed = socket.empty();
  const auto start = std::chrono::steady_clock::now();
  StopAwareDeadline deadline(timeout_);  // a stop of nbdsnap itself does not count (stop_aware_deadline.h)
  const auto probe_at =
      start + std::min(kProbeAfter, timeout_ / 2);    // leaves time to probe within the timeout
  capture_server_messages(handle_, server_message_);  // the server's reason for refusing, if it gives one
  if (nbd_aio_connect_uri(handle_, uri_.c_str()) == -1) connect_failed(socket, probed);
  while (nbd_aio_is_ready(handle_) != 1) {
    if (nbd_aio_is_dead(handle_) == 1 || nbd_aio_is_closed(handle_) == 1) connect_failed(socket, probed);
    const auto now = std::chrono::steady_clock::now();
    if (!probed && now >= probe_at) {
      probed = true;
      if (is_control_socket(socket, deadline.remaining())) {
        throw CliError(ExitCode::usage, control_socket_given_as_nbd_message(uri_, socket, option_),
                       {"wrong_socket", EPROTO, ""});
      }
    }
    if (deadline.expired()) {
      responsive_ = false;
      throw CliError(ExitCode::io_error,
                     "cannot open " + uri_ + ": no NBD handshake within " + format_timeout(timeout_) +
                         " (--timeout): is it an NBD server?",
                     no_reply_detail());
    }
    const auto wait = probed ? deadline.remaining() : std::min(deadline.remaining(), until(probe_at));
    if (poll(wait) == -1) connect_failed(socket, probed);
  }
  stop_capturing(handle_);
  refuse_export_name_on_oldstyle();
  int64_t size = nbd_get_size(handle_);
  if (size < 0) throw CliError(ExitCode::io_error, uri_ + ": cannot get the size: " + last_error());
  size_ = static_cast<uint64_t>(size);
}

// The oldstyle handshake (nbdkit -o) carries no export name: libnbd connects anyway, to the server's one
// export, which for an image's URI is the live origin, so a backup would copy the wrong data without an
// error. Refused, as qemu refuses it ("Server does not support non-empty export names").
void NbdImage::refuse_export_name_on_oldstyle() {
  const char* protocol = nbd_get_protocol(handle_);
  if (protocol == nullptr || std::string(protocol) != "oldstyle") return;
  char* name = nbd_get_export_name(handle_);
  const std::string requested = name != nullptr ? name : "";
  std::free(name);
  if (requested.empty()) return;
  throw CliError(ExitCode::not_found,
                 "cannot open " + uri_ +
                     ": the server speaks the oldstyle NBD handshake, which carries no "
                     "export name, so it would serve its only export instead of '" +
                     requested + "' (a snapshot image is never reachable so: start nbdkit without -o)",
                 {"not_found", ENOTSUP, ""});
}

// A handshake that failed: with a reply that is not NBD, the socket may be a control socket.
void NbdImage::connect_failed(const std::string& socket, bool probed) {
  const int err = nbd_get_errno();
  const std::string message =
      "cannot open " + uri_ + ": " + explain_connect_failure(uri_, last_error(), server_message_);
  if (!probed && is_control_socket(socket, kProbeBound)) {
    throw CliError(ExitCode::usage, control_socket_given_as_nbd_message(uri_, socket, option_),
                   {"wrong_socket", EPROTO, ""});
  }
  // libnbd says ENOENT both for an export the server does not have (not found, 3) and for a Unix socket that
  // does not exist, where no server answered (cannot be reached, 4).
  const std::string unix_socket = unix_socket_of_uri(uri_);
  struct stat st {};
  const bool server_answered = unix_socket.empty() || ::stat(unix_socket.c_str(), &st) == 0;
  if (err == ENOENT && server_answered) throw CliError(ExitCode::not_found, message, {"not_found", err, ""});
  throw CliError(ExitCode::io_error, message, {"connection_failed", err, ""});
}

NbdImage::~NbdImage() {
  if (handle_ == nullptr) return;
  // NBD_CMD_DISC has no reply: waiting for the server to close is a courtesy, so it is kept short (a backup
  // closes several connections, and a server that stopped answering would hold up each of them).
  if (responsive_ && nbd_aio_is_ready(handle_) == 1 && nbd_aio_disconnect(handle_, 0) == 0) {
    const auto deadline = std::chrono::steady_clock::now() + std::min(timeout_, kDisconnectWait);
    while (nbd_aio_is_closed(handle_) != 1 && nbd_aio_is_dead(handle_) != 1 &&
           std::chrono::steady_clock::now() < deadline) {
      if (poll(until(deadline)) == -1) break;
    }
  }
  nbd_close(handle_);
}

int NbdImage::poll(std::chrono::milliseconds wait) {
  nbd_handle* handles[1] = {handle_};
  return poll_nbd_handles(handles, wait);
}

int NbdImage::poll_both(NbdImage& first, NbdImage& second, std::chrono::milliseconds wait) {
  nbd_handle* handles[2] = {first.handle_, second.handle_};
  return poll_nbd_handles(handles, wait);
}

int poll_nbd_handles(std::span<nbd_handle* const> handles, std::chrono::milliseconds wait) {
  // libnbd's nbd_poll() done here, for several handles at once: wait on each descriptor in the direction its
  // state machine wants, then tell the ready ones (as nbd_poll does: read first, then write, else a hang-up).
  // Not nbd_poll() itself, even for one handle: libnbd 1.14 retries poll(2) after EINTR with its whole
  // timeout, so a wait cut short by a signal (SIGCONT after a stop: stop_aware_deadline.h) went on for up to
  // another whole --timeout before its deadline could look; here EINTR ends the wait ("nothing happened").
  std::vector<pollfd> entries;
  entries.reserve(handles.size());
  for (nbd_handle* handle : handles) {
    const int fd = nbd_aio_get_fd(handle);
    if (fd < 0) return -1;
    const unsigned direction = nbd_aio_get_direction(handle);
    short events = 0;
    if ((direction & LIBNBD_AIO_DIRECTION_READ) != 0) events |= POLLIN;
    if ((direction & LIBNBD_AIO_DIRECTION_WRITE) != 0) events |= POLLOUT;
    entries.push_back(pollfd{fd, events, 0});
  }
  const auto milliseconds = std::min<std::chrono::milliseconds::rep>(wait.count(), 1 << 30);
  const int ready = ::poll(entries.data(), entries.size(), static_cast<int>(milliseconds));
  if (ready < 0) return errno == EINTR ? 0 : -1;
  if (ready == 0) return 0;
  for (size_t i = 0; i < handles.size(); ++i) {
    const short revents = entries[i].revents;
    int status = 0;
    if ((revents & (POLLIN | POLLHUP)) != 0) {
      status = nbd_aio_notify_read(handles[i]);
    } else if ((revents & POLLOUT) != 0) {
      status = nbd_aio_notify_write(handles[i]);
    } else if ((revents & (POLLERR | POLLNVAL)) != 0) {
      status = -1;
    }
    if (status == -1) return -1;
  }
  return 1;
}

bool NbdImage::read_only() const {
  return nbd_is_read_only(handle_) == 1;
}

bool NbdImage::can_zero() const {
  return nbd_can_zero(handle_) == 1;
}

void NbdImage::flush() {
  if (nbd_can_flush(handle_) != 1) return;
  const int64_t cookie = nbd_aio_flush(handle_, NBD_NULL_COMPLETION, 0);
  if (cookie == -1) throw CliError(ExitCode::io_error, uri_ + ": flush: " + last_error());
  // A flush writes out everything the server cached (gigabytes after a backup into a writeback cache): it
  // may take far longer than one request, so it gets its own, longer bound.
  wait_for_command(cookie, uri_ + ": flush", std::max(timeout_, kFlushWait));
}

std::string NbdImage::no_reply_message(const std::string& request) const {
  return uri_ + ": " + request + ": no reply from the NBD server within " + format_timeout(timeout_) +
         " (--timeout)";
}

void NbdImage::wait_for_command(int64_t cookie, const std::string& request) {
  wait_for_command(cookie, request, timeout_);
}

void NbdImage::wait_for_command(int64_t cookie, const std::string& request, std::chrono::milliseconds bound) {
  StopAwareDeadline deadline(bound);  // a stop of nbdsnap itself does not count (stop_aware_deadline.h)
  for (;;) {
    const int done = nbd_aio_command_completed(handle_, static_cast<uint64_t>(cookie));
    if (done == 1) return;
    if (done == -1) throw CliError(ExitCode::io_error, request + ": " + last_error());
    if (deadline.expired()) {
      give_up();
      if (bound == timeout_) throw CliError(ExitCode::io_error, no_reply_message(request), no_reply_detail());
      throw CliError(ExitCode::io_error,
                     request + ": no reply from the NBD server within " + format_timeout(bound),
                     no_reply_detail());
    }
    if (poll(deadline.remaining()) == -1) throw CliError(ExitCode::io_error, request + ": " + last_error());
  }
}

std::string NbdImage::export_name() const {
  char* name = nbd_get_export_name(handle_);
  if (name == nullptr) return {};
  std::string out = name;
  std::free(name);
  return out;
}

bool NbdImage::has_meta_context(const std::string& context) const {
  return nbd_can_meta_context(handle_, context.c_str()) == 1;
}

uint64_t NbdImage::maximum_request_size() const {
  int64_t maximum = nbd_get_block_size(handle_, LIBNBD_SIZE_MAXIMUM);
  return maximum > 0 ? static_cast<uint64_t>(maximum) : 0;
}

std::vector<ByteRange> NbdImage::ranges_where(const std::string& context, uint32_t mask, uint32_t want) {
  std::vector<ByteRange> out;
  uint64_t offset = 0;
  while (offset < size_) {
    uint64_t count = std::min(kBlockStatusWindow, size_ - offset);
    ExtentWalk walk{&context, offset, offset + count, mask, want, offset, &out};
    nbd_extent_callback callback{collect_extents, &walk, nullptr};
    const std::string request = "block status (" + context + ") at offset " + std::to_string(offset);
    const int64_t cookie = nbd_aio_block_status(handle_, count, offset, callback, NBD_NULL_COMPLETION, 0);
    if (cookie == -1) throw CliError(ExitCode::io_error, request + ": " + last_error());
    wait_for_command(cookie, request);  // `walk` outlives the command: it completed, or the handle gave up
    if (walk.covered <= offset) {
      throw CliError(ExitCode::io_error,
                     "the server sent no " + context + " extents at offset " + std::to_string(offset));
    }
    offset = walk.covered;
  }
  return merge_byte_ranges(std::move(out));
}

std::string NbdImage::last_error() {
  const char* message = nbd_get_error();
  return message != nullptr ? message : "unknown error";
}

}  // namespace nbdsnap::cli
