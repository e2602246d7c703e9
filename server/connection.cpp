// SPDX-License-Identifier: BSD-3-Clause
// connection.cpp — the socket side of an NBD connection (see connection.h).
//
// Design notes. The reader coroutine is the only one reading the socket; it parses a request header,
// validates it (refused WRITEs have their payload read and dropped so the stream stays in step), reads the
// payload, and hands the request to the worker pool. It reads through a receive buffer, so one system call
// brings in many small requests; large payloads are read straight into their own buffer, never zero-filled.
//
// Where requests run. An I/O thread never waits for a disk: every connection dealt to it would stop with it
// (one write stuck on a frozen file system once held up every new connection to other origins). So it runs no
// request at all: every one, READs included, goes to the worker pool (worker_pool.h), which grows while some
// workers hang, and where one export never holds more than --threads of them, so a stalled disk holds up only
// its own exports. No read can promise not to wait for a disk, not even one the page cache would serve:
// small READs once ran inline through preadv2(RWF_NOWAIT), and a 4 KiB READ of a fragmented origin on a
// dying disk put the I/O thread in D state. RWF_NOWAIT sets IOCB_NOWAIT, not IOCB_NOIO (Linux 6.1 and
// later): for bytes not cached filemap_get_pages() still starts synchronous readahead, and a cached page
// carrying the readahead mark starts asynchronous readahead; both map blocks through the file system, and
// ext4 reads its extent-tree blocks synchronously for that. After the copy, file_accessed() may update atime,
// and the inode update waits for a journal handle. A residency check first (cachestat, mincore) sees neither
// of the last two and races with eviction. Writes could never run inline: a buffered pwrite sleeps for as
// long as the disk wants (a freeze, dirty-page throttling, a dead NFS server). The thread of Server::run()
// (listeners, signals, the shutdown sequence) serves no connection at all (server.h).
//
// The price is a thread hand-off per task. Small READs (at most 64 KiB) received together share one: the
// reader holds them while more requests are already received, and hands them (up to 16) to the workers as
// one batch before it next waits (for the socket or for a slot). The worker that runs the batch takes its
// reads one after the other and queues their replies, to be sent together (one gathered send) once no read
// is left to take. Reads the page cache serves cost one hand-off for the batch. But any read may wait for
// the disk (a cold block, a sector retried for 30 s), and the others must not wait behind it: a tester saw
// 15 cached READs answered only when the one READ sent before them came back, and a burst of 16 cold reads
// of a 20 ms disk take 340 ms on one worker instead of 100 ms on four. So a worker that starts on a batch
// with more than one read left first asks for a helper, a task of the same batch (which does the same): a
// read that waits keeps its worker, and the helpers take the others, up to what the export's lane lets run
// (--threads). A helper that finds nothing left sends what the batch's workers queued and ends: the extra
// hand-off when every read was quick. Whoever finds the batch taken sends after the replies of every read
// taken before that were queued; a read that took long is sent at once (kSlowRead: the disk is in play,
// gathering saves nothing beside it); and while batches of several reads run, the I/O thread sends what is
// queued every kQueuedReplyWait (watch_batches): a worker that queued a quick read's reply and then took a
// read that got stuck, beside helpers stuck in the batch's other reads (or kept from running by the lane),
// held that reply for as long as the disk (attack13c). The I/O thread arms its timer when it hands a batch
// over, so no worker wakes it. So a worker stuck in a read holds back only that read's reply. Larger
// READs and every other request go one task each. Overlapping requests in flight together may therefore run
// in any order, as the NBD protocol allows ("Ordering of messages and writes"): a READ sent before a WRITE to
// the same bytes may see the WRITE's data.
//
// Replies: the worker that finishes a request queues its reply and, unless another thread is sending, sends
// the queue itself with non-blocking gathered writes (several replies in one sendmsg), so a reply needs no
// trip through the I/O thread. One thread at a time holds the sender role, and a reply is sent from its first
// to its last byte before the next one starts: two replies' bytes never interleave. When the socket is full
// the sender hands the role to the I/O thread, which waits until it is writable and sends on; workers never
// block on a client that does not read. A request holds its in-flight slot until its reply is sent.
//
// TLS: after STARTTLS the reader receives and the sender role sends through the connection's TlsChannel
// instead of the socket: the same roles, so replies still go out from the thread that finished them, one
// record per send (no gathering: a record already carries up to 16 KiB). A send that cannot go on waits for
// writability on the I/O thread as in clear, and is repeated with the same bytes, as GnuTLS requires.
// Nothing is read ahead before STARTTLS (every handshake read takes exactly the option's bytes), so bytes a
// client sent after STARTTLS in clear cannot be taken for options negotiated under TLS.
//
// Garbage (a bad request magic) ends the connection: there is no way to find the next request in the stream.
// Nothing here touches the engine directly; RequestExecutor does.
#include "connection.h"

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "log.h"

namespace nbdsnap {

using namespace nbd;

namespace {
constexpr uint64_t kMaxDiscard = 256ull << 20;     // a refused WRITE larger than this ends the connection
constexpr size_t kInboxSize = 64 << 10;            // receive buffer; reads of half of it or more bypass it
constexpr size_t kMaxGather = 64;                  // replies sent by one sendmsg
constexpr int kUnixSendBuffer = 1 << 20;           // the kernel doubles it for its bookkeeping
constexpr uint32_t kMaxHeldReadLength = 64 << 10;  // larger READs go to the workers one by one
constexpr size_t kMaxHeldReads = 16;               // READs of one batch at most
// A batched READ that took longer than this waited for something (a page cache hit of 64 KiB takes a few
// microseconds): its reply is sent at once.
constexpr auto kSlowRead = std::chrono::microseconds(200);
// While batches run, the I/O thread sends what they queued this often: the longest a quick read's reply
// waits behind a read of its batch that is stuck.
constexpr auto kQueuedReplyWait = std::chrono::milliseconds(1);

// Who is at the other end, as the kernel tells: the TCP peer's address, or a Unix-socket client's
// credentials.
std::string peer_address(NbdSocket& socket, bool tcp) {
  if (tcp) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    char host[NI_MAXHOST];
    char port[NI_MAXSERV];
    if (::getpeername(socket.native_handle(), reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
        ::getnameinfo(reinterpret_cast<sockaddr*>(&address), length, host, sizeof host, port, sizeof port,
                      NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
      return "an unknown TCP peer";
    }
    return address.ss_family == AF_INET6 ? "[" + std::string(host) + "]:" + port
                                         : std::string(host) + ":" + port;
  }
  ucred credentials{};
  socklen_t length = sizeof credentials;
  if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    return "a local client";
  }
  return "uid " + std::to_string(credentials.uid) + " pid " + std::to_string(credentials.pid);
}

// Reads until the buffer is full, each receive as large as the socket allows (asio's transfer_all caps
// every receive at 64 KiB).
size_t whole_buffer(const asio::error_code& ec, size_t) {
  return ec ? 0 : kMaxRequestLength;
}
}  // namespace

Connection::Connection(NbdSocket socket, uint64_t id, const ExportCatalog& catalog, WorkerPool& workers,
                       ClientRegistry& registry, ConnectionLimits limits, ConnectionSecurity security)
    : socket_(std::move(socket)),
      id_(id),
      workers_(workers),
      registry_(registry),
      limits_(limits),
      security_(std::move(security)),
      peer_address_(peer_address(socket_, security_.tcp)),
      handshake_(catalog, security_.tls),
      wakeup_(socket_.get_executor()),
      flush_timer_(socket_.get_executor()) {
  if (security_.access) {
    PeerIdentity plain;  // until STARTTLS: a local client on a Unix socket, anonymous on TCP
    plain.local = !security_.tcp;
    handshake_.set_access(std::make_shared<ClientAccess>(security_.access, plain, security_.tcp));
  }
}

Connection::~Connection() {
  if (send_fd_ >= 0) ::close(send_fd_);
}

void Connection::start() {
  registry_.add(id_, shared_from_this(), refused_);
  asio::co_spawn(
      socket_.get_executor(), [self = shared_from_this()] { return self->run(); },
      [self = shared_from_this()](const std::exception_ptr& error) {
        if (!error) return;
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          log_error(self->describe() + ": " + e.what());
        }
        self->close_socket();
        self->registry_.remove(self->id_);
      });
}

std::string Connection::describe() const {
  return "connection " + std::to_string(id_) + (export_name_.empty() ? "" : " (" + export_name_ + ")");
}

std::string Connection::describe_client() const {
  return describe() + " from " + peer_address_ + (tls_ ? " as " + tls_->peer().describe() : "");
}

void Connection::refuse(uint32_t reply_type, std::string message) {
  refused_ = true;
  handshake_.refuse_all_options(reply_type, std::move(message));
}

void Connection::shut_down() {
  stopping_ = true;
  wakeup_.cancel();
  if (negotiating_) {
    // NBD spec (proto.md, "Termination of the session during option haggling"): a server shutting down
    // SHOULD answer further options with NBD_REP_ERR_SHUTDOWN. So the reader goes on: the client's next
    // option gets that error and the connection closes; one that sends nothing is closed by the server's
    // shutdown deadline. (A connection entering transmission meanwhile sees stopping_ and reads nothing.)
    handshake_.refuse_all_options(kRepErrShutdown, "the server is shutting down",
                                  Handshake::AfterRefusal::close);
    return;
  }
  asio::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_receive, ignored);  // wakes the reader with end of file
}

void Connection::abort() {
  broken_ = true;  // a sender drops what is queued; a wait for writability ends with the close
  stopping_ = true;
  close_socket();
  wakeup_.cancel();
}

void Connection::close_socket() {
  asio::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  socket_.close(ignored);
}

asio::awaitable<void> Connection::run() {
  // (no co_await inside conditions or structured bindings: g++ 12 miscompiles some of those forms)
  asio::steady_timer deadline(socket_.get_executor());
  start_handshake_deadline(deadline);
  const bool negotiated = co_await negotiate();
  negotiating_ = false;
  deadline.cancel();
  if (negotiated) {
    enlarge_unix_send_buffer();
    if (send_fd_ < 0) send_fd_ = ::fcntl(socket_.native_handle(), F_DUPFD_CLOEXEC, 0);  // TLS made it earlier
    if (send_fd_ < 0) {
      log_warning(describe() + ": cannot duplicate the socket descriptor: " + std::strerror(errno));
    } else {
      co_await transmit();
    }
  }
  co_await wait_until_idle();
  if (tls_ && !broken_) tls_->bye();
  close_socket();
  registry_.remove(id_);
  log_debug(describe() + ": closed");
}

// A client that connects and then says nothing (or too little) would hold a descriptor and a connection slot
// for ever. The deadline covers the whole handshake, as QEMU's handshake-max-seconds does.
void Connection::start_handshake_deadline(asio::steady_timer& deadline) {
  if (limits_.handshake_timeout.count() == 0) return;
  deadline.expires_after(limits_.handshake_timeout);
  deadline.async_wait([weak = weak_from_this()](const asio::error_code& ec) {
    const auto self = weak.lock();
    if (ec || !self || !self->negotiating_) return;
    // Any peer can connect and say nothing, over and over: counted with the other refusals.
    const std::string seconds = std::to_string(self->limits_.handshake_timeout.count());
    self->log_refusal("closed without a handshake in " + seconds + " s",
                      self->describe_client() + ": no handshake within " + seconds + " s; disconnecting");
    asio::error_code ignored;
    self->socket_.shutdown(asio::socket_base::shutdown_both, ignored);  // the pending read ends
  });
}

// A Unix socket's default send buffer (about 200 KiB) is smaller than one 256 KiB READ reply: every such
// reply would fill it and be finished by the I/O thread. TCP keeps the kernel's buffer autotuning (which an
// explicit size would turn off).
void Connection::enlarge_unix_send_buffer() {
  asio::error_code ec;
  const auto local = socket_.local_endpoint(ec);
  if (ec || local.protocol().family() != AF_UNIX) return;
  socket_.set_option(asio::socket_base::send_buffer_size(kUnixSendBuffer),
                     ec);  // capped by net.core.wmem_max
}

asio::awaitable<bool> Connection::negotiate() {
  // A peer that connects and hangs up (a port scanner, a TCP health check), or sends what is no NBD client's
  // flags, can do it at will: counted as the other refusals, not a line each (nor unseen). One that hung up
  // at once may make the greeting fail already.
  const bool greeted = co_await write_all(handshake_.greeting());
  std::array<uint8_t, 4> flags{};
  bool flagged = false;
  if (greeted) flagged = co_await read_exact(flags.data(), flags.size());
  if (!flagged) {
    if (!stopping_) {
      log_refusal("closed before the NBD handshake began",
                  describe_client() + ": closed the connection before sending its NBD client flags");
    }
    co_return false;
  }
  if (!handshake_.accept_client_flags(get_u32(flags.data()))) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%08x", unsigned(get_u32(flags.data())));
    log_refusal("with unknown NBD client flags", describe_client() + ": refused: unknown NBD client flags " +
                                                     hex +
                                                     " (not an NBD client, or not a fixed-newstyle one)");
    co_return false;
  }
  std::vector<uint8_t> data;
  for (;;) {
    std::array<uint8_t, kOptionHeaderSize> raw{};
    const bool got_header = co_await read_exact(raw.data(), raw.size());
    if (!got_header) co_return false;
    const OptionHeader header = parse_option_header(raw);
    if (!handshake_.accept_option_header(header)) {
      log_refusal("with a malformed NBD option header",
                  describe_client() + ": malformed option header; disconnecting");
      co_return false;
    }
    data.resize(header.length);
    const bool got_data = co_await read_exact(data.data(), data.size());
    if (!got_data) co_return false;
    log_debug(describe() + ": option " + option_name(header.option));
    Handshake::Step step = handshake_.handle_option(header.option, data);
    if (!step.refused.empty()) {
      // One warning per connection: a client may send thousands of refused options, and the log must not
      // become theirs to fill. The rest go to the debug level.
      if (refusals_logged_++ == 0) {
        // In clear under --tls require, any peer can make this refusal, once per connection: counted.
        const bool tls_required = security_.tls == TlsMode::require && !tls_;
        const std::string line = describe_client() + ": refused: " + step.refused;
        if (tls_required) {
          log_refusal("in clear under --tls require", line);
        } else {
          log_warning(line);
        }
      } else {
        log_debug(describe_client() + ": refused again: " + step.refused);
      }
    }
    if (step.next == Handshake::Next::transmission) {
      // The export is resolved: from now on this connection counts as its client (a detach without force is
      // refused), even while the GO reply still waits in a full socket buffer below.
      export_name_ = handshake_.session().target->name();
      lane_ = export_name_;
      registry_.set_export(id_, export_name_);
    }
    if (!step.reply.empty()) {
      const bool sent = co_await write_all(step.reply);
      if (!sent) co_return false;
    }
    if (step.next == Handshake::Next::close) co_return false;
    if (step.next == Handshake::Next::transmission) break;
    if (step.next == Handshake::Next::start_tls) {
      const bool secured = co_await start_tls();
      if (!secured) co_return false;
    }
  }
  NegotiatedSession session = handshake_.take_session();
  log_debug(describe() + ": transmission, structured replies " + (session.structured_replies ? "on" : "off") +
            ", " + std::to_string(session.contexts.size()) + " metadata contexts");
  executor_ = std::make_shared<const RequestExecutor>(std::move(session));
  co_return true;
}

void Connection::log_refusal(const std::string& kind, const std::string& line) {
  if (refusal_counted_.exchange(true)) {
    log_debug(line);
    return;
  }
  if (security_.refusals != nullptr) {
    security_.refusals->report(kind, peer_address_, line);
  } else {
    log_warning(line);
  }
}

asio::awaitable<bool> Connection::start_tls() {
  const auto credentials = security_.credentials ? security_.credentials->current() : nullptr;
  // The senders' descriptor exists from now on: the TLS session writes to it (see send_fd_).
  send_fd_ = ::fcntl(socket_.native_handle(), F_DUPFD_CLOEXEC, 0);
  Status created = credentials ? Status::ok() : Status{Errc::bad_state, "no TLS credentials loaded"};
  if (send_fd_ < 0) created = Status::from_errno(errno, "cannot duplicate the socket descriptor");
  if (created) created = TlsChannel::create(credentials, socket_, send_fd_, tls_);
  if (!created) {
    log_error(describe() + ": cannot start TLS: " + created.to_string());
    co_return false;
  }
  const bool secured = co_await tls_->handshake(socket_);
  if (!secured) {
    // A wrong PSK, a certificate from another CA, a plain client that sent STARTTLS and nothing else...
    const std::string error = tls_->error();
    const std::string kind = tls_->failure_kind();
    tls_.reset();  // no close_notify for a session that never started; and no identity for describe_client()
    // "TLS handshake: what to check (GnuTLS: ...)"; a peer can repeat it at will, so it is counted.
    log_refusal(kind, describe_client() + ": refused: " + error);
    co_return false;
  }
  handshake_.tls_started();
  if (security_.access) {
    handshake_.set_access(std::make_shared<ClientAccess>(security_.access, tls_->peer(), security_.tcp));
  }
  log_debug(describe() + ": TLS as " + tls_->peer().describe() + " (" + tls_->description() + ")");
  co_return true;
}

asio::awaitable<bool> Connection::read_exact(uint8_t* out, size_t length) {
  if (length == 0) co_return true;
  const size_t got = co_await read_at_least(out, length, length);
  co_return got == length;
}

asio::awaitable<bool> Connection::write_all(const std::vector<uint8_t>& bytes) {
  if (tls_) {
    const bool sent = co_await tls_->write_all(socket_, bytes.data(), bytes.size());
    co_return sent;
  }
  asio::error_code ec;
  co_await asio::async_write(socket_, asio::buffer(bytes), asio::redirect_error(asio::use_awaitable, ec));
  co_return !ec;
}

asio::awaitable<size_t> Connection::read_at_least(uint8_t* out, size_t minimum, size_t capacity) {
  if (tls_) {
    size_t got = 0;
    while (got < minimum) {
      const size_t n = co_await tls_->read_some(socket_, out + got, capacity - got);
      if (n == 0) break;
      got += n;
    }
    co_return got;
  }
  asio::error_code ec;
  if (minimum == capacity) {
    const size_t got = co_await asio::async_read(socket_, asio::buffer(out, capacity), whole_buffer,
                                                 asio::redirect_error(asio::use_awaitable, ec));
    co_return ec ? std::min(got, minimum - 1) : got;
  }
  const size_t got =
      co_await asio::async_read(socket_, asio::buffer(out, capacity), asio::transfer_at_least(minimum),
                                asio::redirect_error(asio::use_awaitable, ec));
  co_return got;
}

asio::awaitable<void> Connection::transmit() {
  inbox_ = std::make_unique_for_overwrite<uint8_t[]>(kInboxSize);
  std::array<uint8_t, kRequestHeaderSize> raw{};
  while (!stopping_ && !broken_) {
    const bool received = co_await receive(raw.data(), raw.size());
    if (!received) break;
    const RequestHeader request = parse_request_header(raw);
    if (request.magic != kRequestMagic) {
      log_warning(describe() + ": bad request magic; disconnecting");
      break;
    }
    if (request.type == kCmdDisc) break;
    std::string why;
    if (const uint32_t error = executor_->validate(request, why)) {
      log_debug(describe() + ": " + command_name(request.type) + " refused: " + why);
      if (request.type == kCmdWrite) {
        if (request.length > kMaxDiscard) {
          log_warning(describe() + ": oversized WRITE of " + std::to_string(request.length) +
                      " bytes; disconnecting");
          break;
        }
        const bool discarded = co_await discard_payload(request.length);
        if (!discarded) break;
      }
      const bool slot = co_await wait_for_slot(0);
      if (!slot) break;
      send(executor_->error_reply(request, error, why), 0);
      continue;
    }
    // Payload bytes only. A READ reply also holds its header and the pad in front of its aligned data (under
    // a page plus 32 bytes, Reply::aligned_capacity): at most max_in_flight (<= 4096) times that, 16.1 MiB,
    // beside the 256 MiB byte limit, which only 64 KiB requests and larger can reach, where the pad is at
    // most 6%. Measured: 64 clients x 60 unread 4 KiB reads held 8.3 KB of RSS per reply (--cache none or
    // not), 512-byte reads 1.2 KB.
    const uint64_t accounted = (request.type == kCmdRead || request.type == kCmdWrite) ? request.length : 0;
    const bool slot = co_await wait_for_slot(accounted);
    if (!slot) break;
    Payload payload;
    if (request.type == kCmdWrite) {
      payload.reset(new (std::align_val_t{kPayloadAlignment}) uint8_t[request.length]);
      const bool complete = co_await receive(payload.get(), request.length);
      if (!complete) {
        give_back_slot(accounted);
        break;
      }
    }
    if (request.type == kCmdRead && request.length <= kMaxHeldReadLength) {
      hold_read(request, accounted);
    } else {
      dispatch(request, std::move(payload), accounted);
    }
  }
  dispatch_held();
  inbox_.reset();
}

asio::awaitable<bool> Connection::receive(uint8_t* out, size_t length) {
  const size_t buffered = std::min(length, inbox_end_ - inbox_begin_);
  if (buffered > 0) std::memcpy(out, inbox_.get() + inbox_begin_, buffered);
  inbox_begin_ += buffered;
  out += buffered;
  length -= buffered;
  if (length == 0) co_return true;
  dispatch_held();  // the socket may make us wait
  inbox_begin_ = inbox_end_ = 0;
  if (length >= kInboxSize / 2) {
    const size_t got = co_await read_at_least(out, length, length);
    co_return got == length;
  }
  const size_t got = co_await read_at_least(inbox_.get(), length, kInboxSize);
  if (got < length) co_return false;
  std::memcpy(out, inbox_.get(), length);
  inbox_begin_ = length;
  inbox_end_ = got;
  co_return true;
}

asio::awaitable<bool> Connection::discard_payload(uint64_t bytes) {
  std::vector<uint8_t> scratch(std::min<uint64_t>(bytes, 1u << 20));
  while (bytes > 0) {
    const size_t chunk = size_t(std::min<uint64_t>(bytes, scratch.size()));
    const bool received = co_await receive(scratch.data(), chunk);
    if (!received) co_return false;
    bytes -= chunk;
  }
  co_return true;
}

// Waits until one more request of `bytes` fits the limits and takes its slot; false (no slot) once broken.
asio::awaitable<bool> Connection::wait_for_slot(uint64_t bytes) {
  for (;;) {
    {
      MutexLock lock(mutex_);
      if (broken_) co_return false;
      const bool full = in_flight_ >= limits_.max_in_flight ||
                        (in_flight_ > 0 && in_flight_bytes_ + bytes > limits_.max_in_flight_bytes);
      if (!full) {
        ++in_flight_;
        in_flight_bytes_ += bytes;
        co_return true;
      }
      reader_waiting_ = true;
    }
    dispatch_held();  // they hold slots: they must run for one to come free
    co_await sleep_until_woken();
  }
}

// Waits until every request read has been answered and no reply is being sent.
asio::awaitable<void> Connection::wait_until_idle() {
  for (;;) {
    {
      MutexLock lock(mutex_);
      if (in_flight_ == 0 && !sending_ && outbox_.empty()) co_return;
      reader_waiting_ = true;
    }
    co_await sleep_until_woken();
  }
}

// The reader sleeps here after setting reader_waiting_; wake_reader() posts the cancel to this (the I/O)
// thread, so it cannot run between the check and the wait.
asio::awaitable<void> Connection::sleep_until_woken() {
  wakeup_.expires_at(asio::steady_timer::time_point::max());
  asio::error_code ignored;
  co_await wakeup_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
}

void Connection::give_back_slot(uint64_t accounted) {
  MutexLock lock(mutex_);
  --in_flight_;
  in_flight_bytes_ -= accounted;
}

void Connection::dispatch(const RequestHeader& request, Payload payload, uint64_t accounted) {
  workers_.post(lane_, [self = shared_from_this(), request, payload = std::move(payload), accounted,
                        work = asio::make_work_guard(socket_.get_executor())]() mutable {
    const size_t payload_length = payload ? request.length : 0;
    Reply reply = self->execute(request, {payload.get(), payload_length});
    payload.reset();
    self->send(std::move(reply), accounted);
  });
}

void Connection::hold_read(const RequestHeader& request, uint64_t accounted) {
  held_reads_.push_back(request);
  held_accounted_.push_back(accounted);
  if (held_reads_.size() >= kMaxHeldReads) dispatch_held();
}

void Connection::dispatch_held() {
  if (held_reads_.empty()) return;
  auto batch = std::make_shared<ReadBatch>();
  batch->reads = std::move(held_reads_);
  batch->accounted = std::move(held_accounted_);
  held_reads_.clear();  // moved from: empty, but only clear() says so
  held_accounted_.clear();
  if (batch->reads.size() > 1) {  // a lone read's worker sends its reply itself, right after it
    ++batches_running_;
    watch_batches();
  }
  post_batch(std::move(batch));
}

void Connection::post_batch(std::shared_ptr<ReadBatch> batch) {
  workers_.post(lane_, [self = shared_from_this(), batch = std::move(batch),
                        work = asio::make_work_guard(socket_.get_executor())] { self->run_batch(batch); });
}

void Connection::run_batch(const std::shared_ptr<ReadBatch>& batch) {
  const size_t count = batch->reads.size();
  if (count - std::min(batch->next.load(), count) > 1) post_batch(batch);  // a helper (design notes)
  for (size_t i = batch->next++; i < count; i = batch->next++) {
    const auto started = std::chrono::steady_clock::now();
    Reply reply = execute(batch->reads[i], {});
    const bool slow = std::chrono::steady_clock::now() - started > kSlowRead;
    queue(std::move(reply), batch->accounted[i]);
    if (++batch->done == count && count > 1) --batches_running_;  // its replies are queued: watched no more
    if (slow) send_queued_unless_sending();
  }
  // Taken: every reply of a read taken before now is queued, or its read is still running (and its worker
  // comes here after it).
  send_queued_unless_sending();
}

Reply Connection::execute(const RequestHeader& request, std::span<const uint8_t> payload) {
  try {
    return executor_->execute(request, payload, &reply_buffers_);
  } catch (const std::exception& e) {
    return executor_->error_reply(request, kEio, e.what());
  }
}

void Connection::send(Reply reply, uint64_t accounted) {
  {
    MutexLock lock(mutex_);
    outbox_.push_back({std::move(reply), accounted});
    if (sending_) return;  // the sender sends it after the ones before it
    sending_ = true;
  }
  send_queued();
}

void Connection::queue(Reply reply, uint64_t accounted) {
  MutexLock lock(mutex_);
  outbox_.push_back({std::move(reply), accounted});
}

void Connection::watch_batches() {
  if (flush_timer_waits_) return;
  flush_timer_waits_ = true;
  flush_timer_.expires_after(kQueuedReplyWait);
  flush_timer_.async_wait([self = shared_from_this()](asio::error_code ec) {
    self->flush_timer_waits_ = false;
    if (ec) return;
    self->send_queued_unless_sending();
    if (self->batches_running_ > 0) self->watch_batches();
  });
}

void Connection::send_queued_unless_sending() {
  {
    MutexLock lock(mutex_);
    if (sending_ || outbox_.empty()) return;  // the sender sends them
    sending_ = true;
  }
  send_queued();
}

void Connection::send_queued() {
  MutexLock lock(mutex_);
  for (;;) {
    if (broken_) {  // nobody will read them: just release their slots
      while (!outbox_.empty()) {
        release_slot(outbox_.front());
        outbox_.pop_front();
      }
      front_sent_ = 0;
    }
    if (outbox_.empty()) {
      sending_ = false;
      wake_reader();
      return;
    }
    ssize_t sent = 0;
    int error = 0;
    if (tls_) {
      // The front reply's unsent bytes: the same call again after want_write, as GnuTLS requires.
      const Outgoing& front = outbox_.front();
      const uint8_t* data = front.reply.data() + front_sent_;
      const size_t length = front.reply.size() - front_sent_;
      lock.unlock();
      size_t done = 0;
      const TlsSession::Io io = tls_->send(data, length, done);
      sent = io == TlsSession::Io::ok ? ssize_t(done) : -1;
      error = io == TlsSession::Io::ok                                              ? 0
              : io == TlsSession::Io::want_read || io == TlsSession::Io::want_write ? EAGAIN
                                                                                    : EPIPE;
    } else {
      std::array<iovec, kMaxGather> iov{};
      size_t count = 0;
      for (Outgoing& out : outbox_) {
        if (count == kMaxGather) break;
        const size_t skip = count == 0 ? front_sent_ : 0;
        iov[count++] = {out.reply.data() + skip, out.reply.size() - skip};
      }
      lock.unlock();  // queued replies stay put (only the sender pops them); new ones may be queued meanwhile
      msghdr message{};
      message.msg_iov = iov.data();
      message.msg_iovlen = count;
      sent = ::sendmsg(send_fd_, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
      error = sent < 0 ? errno : 0;
    }
    lock.lock();
    if (sent < 0) {
      if (error == EINTR) continue;
      if (error == EAGAIN || error == EWOULDBLOCK) {
        // The client has not read enough yet: the I/O thread waits for room and sends on.
        asio::post(socket_.get_executor(), [self = shared_from_this()] { self->wait_writable(); });
        return;
      }
      broken_ = true;
      asio::post(socket_.get_executor(), [self = shared_from_this()] { self->close_socket(); });
      continue;
    }
    size_t left = size_t(sent);
    while (!outbox_.empty()) {
      Outgoing& front = outbox_.front();
      const size_t rest = front.reply.size() - front_sent_;
      if (left < rest) {
        front_sent_ += left;
        break;
      }
      left -= rest;
      release_slot(front);
      reply_buffers_.recycle(std::move(front.reply));
      outbox_.pop_front();
      front_sent_ = 0;
    }
    wake_reader();
  }
}

void Connection::wait_writable() {
  socket_.async_wait(asio::socket_base::wait_write, [self = shared_from_this()](asio::error_code ec) {
    if (ec) self->broken_ = true;  // closed meanwhile
    self->send_queued();
  });
}

void Connection::release_slot(const Outgoing& sent) {
  --in_flight_;
  in_flight_bytes_ -= sent.accounted;
}

void Connection::wake_reader() {
  if (!reader_waiting_) return;
  reader_waiting_ = false;
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->wakeup_.cancel(); });
}

}  // namespace nbdsnap
