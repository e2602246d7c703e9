// SPDX-License-Identifier: BSD-3-Clause
// nbd_image.h — an NBD export opened with libnbd for reading: size, export name, and extents from the
// block status meta contexts (base:allocation for holes and zeroes, qemu:dirty-bitmap:NAME for changes).
//
// Every wait on the server is bounded by the timeout given at construction (nbdsnap --timeout): connecting
// and the handshake, each block status request, and (through poll()) the reads of image_copier; time while
// nbdsnap itself was stopped does not count (stop_aware_deadline.h). libnbd 1.14
// has no timeouts of its own, so everything goes through its asynchronous API and a poll(2) with a bound
// (poll_nbd_handles, which unlike nbd_poll() lets a signal end the wait).
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "byte_ranges.h"
#include "exit_codes.h"

struct nbd_handle;

namespace nbdsnap::cli {

inline constexpr const char* kBaseAllocation = "base:allocation";
inline constexpr uint32_t kStateHole = 1;   // base:allocation: not allocated
inline constexpr uint32_t kStateZero = 2;   // base:allocation: reads as zeroes
inline constexpr uint32_t kStateDirty = 1;  // qemu:dirty-bitmap:NAME: changed

std::string dirty_bitmap_context(const std::string& checkpoint);

// Runs the state machines of these libnbd handles for at most `wait` (one poll(2) of all their descriptors):
// 1 when something happened, 0 when nothing did or a signal cut the wait short, -1 when a connection failed
// (libnbd's last error, or errno, says why). NbdImage::poll and poll_both use it; public for the tests.
int poll_nbd_handles(std::span<nbd_handle* const> handles, std::chrono::milliseconds wait);

class NbdImage {
 public:
  // Whether a handshake that fails or stalls should check if the URI's Unix socket is a control socket.
  enum class Probe { wrong_socket, none };

  // Connects to uri asking for the given meta contexts, within `timeout`. Throws CliError: not_found when
  // the server does not know the export; usage when the URI's socket is an nbdsnap control socket; io_error
  // otherwise (a timeout names it).
  NbdImage(const std::string& uri, const std::vector<std::string>& meta_contexts,
           std::chrono::milliseconds timeout, Probe probe = Probe::wrong_socket);
  // As above with Probe::wrong_socket, naming `option` (the command's option that took the URI; "--image"
  // otherwise) in the message for a control socket given by mistake.
  NbdImage(const std::string& uri, const std::vector<std::string>& meta_contexts,
           std::chrono::milliseconds timeout, const std::string& option);
  // Disconnects politely (waiting at most a second, or the timeout if shorter) unless give_up() was called;
  // then just closes.
  ~NbdImage();
  NbdImage(const NbdImage&) = delete;
  NbdImage& operator=(const NbdImage&) = delete;

  nbd_handle* handle() { return handle_; }
  const std::string& uri() const { return uri_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  uint64_t size() const { return size_; }
  std::string export_name() const;
  // Whether the export takes writes, and write-zeroes requests (NBD_CMD_WRITE_ZEROES).
  bool read_only() const;
  bool can_zero() const;
  // Flushes the export's writes to stable storage (NBD_CMD_FLUSH); a no-op where the server has no flush.
  // Throws CliError (io_error) when it fails or no reply comes within the timeout (at least 10 minutes).
  void flush();
  // Whether the server agreed to serve this meta context.
  bool has_meta_context(const std::string& context) const;
  // Largest request the server accepts (0: unknown).
  uint64_t maximum_request_size() const;
  // Ranges of [0, size) whose flags in `context` satisfy (flags & mask) == want, merged.
  std::vector<ByteRange> ranges_where(const std::string& context, uint32_t mask, uint32_t want);

  // Runs libnbd's state machine for at most `wait`: 1 when something happened, 0 when nothing did (or a
  // signal cut the wait short: the caller looks at its deadline again), -1 when the connection failed
  // (last_error() says why).
  int poll(std::chrono::milliseconds wait);
  // As poll(), for two connections at once (a copy reading one export and writing another): runs the state
  // machine of whichever is ready. -1 when either connection failed (last_error() says why).
  static int poll_both(NbdImage& first, NbdImage& second, std::chrono::milliseconds wait);
  // The server stopped answering: requests in flight are abandoned, so closing must not wait for them (nor
  // let libnbd read their replies into buffers their owner has freed).
  void give_up() { responsive_ = false; }
  // The message for a request that got no reply within the timeout.
  std::string no_reply_message(const std::string& request) const;
  // The last libnbd error as text.
  static std::string last_error();

 private:
  void open(const std::vector<std::string>& meta_contexts, Probe probe);
  void connect(const std::vector<std::string>& meta_contexts, Probe probe);
  [[noreturn]] void connect_failed(const std::string& socket, bool probed);
  // not_found (3) when the server speaks the oldstyle handshake and the URI names an export (nbd_image.cpp).
  void refuse_export_name_on_oldstyle();
  // Waits for one command to complete (at most the timeout, or `bound`); throws CliError (io_error) when it
  // fails or times out.
  void wait_for_command(int64_t cookie, const std::string& request);
  void wait_for_command(int64_t cookie, const std::string& request, std::chrono::milliseconds bound);

  nbd_handle* handle_ = nullptr;
  std::string uri_;
  std::chrono::milliseconds timeout_;
  uint64_t size_ = 0;
  bool responsive_ = true;
  std::string option_ = "--image";
  std::string server_message_;  // the server's error text in the handshake (NBD_REP_ERR_POLICY's reason...)
};

}  // namespace nbdsnap::cli
