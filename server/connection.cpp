// connection.cpp — the socket side of an NBD connection (see connection.h).
//
// Design notes. The reader coroutine is the only one reading the socket; it parses a request header,
// validates it (refused WRITEs have their payload read and dropped so the stream stays in step), reads the
// payload, and hands the request to the worker pool. Replies are queued and written one at a time by a
// completion-handler chain. Garbage (a bad request magic) ends the connection: there is no way to find the
// next request in the stream. Nothing here touches the engine directly; RequestExecutor does.
#include "connection.h"

#include <array>


#include "log.h"

namespace nbdsnap {

using namespace nbd;

namespace {
constexpr uint64_t kMaxDiscard = 256ull << 20;  // a refused WRITE larger than this ends the connection
}  // namespace

Connection::Connection(NbdSocket socket, uint64_t id, const ExportCatalog& catalog, asio::thread_pool& workers,
                       ClientRegistry& registry, ConnectionLimits limits)
    : socket_(std::move(socket)),
      id_(id),
      catalog_(catalog),
      workers_(workers),
      registry_(registry),
      limits_(limits),
      handshake_(catalog),
      wakeup_(socket_.get_executor()) {}

void Connection::start() {
  registry_.add(id_, shared_from_this());
  asio::co_spawn(socket_.get_executor(), [self = shared_from_this()] { return self->run(); },
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

void Connection::shut_down() {
  stopping_ = true;
  handshake_.set_shutting_down();
  asio::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_receive, ignored);  // wakes the reader with end of file
  wakeup_.cancel();
}

void Connection::abort() {
  broken_ = true;
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
  const bool negotiated = co_await negotiate();
  if (negotiated) co_await transmit();
  co_await wait_until_idle(false, 0);
  close_socket();
  registry_.remove(id_);
  log_debug(describe() + ": closed");
}

asio::awaitable<bool> Connection::negotiate() {
  asio::error_code ec;
  const auto greeting = handshake_.greeting();
  co_await asio::async_write(socket_, asio::buffer(greeting), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return false;
  std::array<uint8_t, 4> flags{};
  co_await asio::async_read(socket_, asio::buffer(flags), asio::redirect_error(asio::use_awaitable, ec));
  if (ec || !handshake_.accept_client_flags(get_u32(flags.data()))) co_return false;
  std::vector<uint8_t> data;
  for (;;) {
    std::array<uint8_t, kOptionHeaderSize> raw{};
    co_await asio::async_read(socket_, asio::buffer(raw), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return false;
    const OptionHeader header = parse_option_header(raw);
    if (!handshake_.accept_option_header(header)) {
      log_warning(describe() + ": malformed option header; disconnecting");
      co_return false;
    }
    data.resize(header.length);
    co_await asio::async_read(socket_, asio::buffer(data), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return false;
    log_debug(describe() + ": option " + option_name(header.option));
    Handshake::Step step = handshake_.handle_option(header.option, data);
    if (!step.reply.empty()) {
      co_await asio::async_write(socket_, asio::buffer(step.reply), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return false;
    }
    if (step.next == Handshake::Next::close) co_return false;
    if (step.next == Handshake::Next::transmission) break;
  }
  NegotiatedSession session = handshake_.take_session();
  export_name_ = session.target->name();
  registry_.set_export(id_, export_name_);
  log_debug(describe() + ": transmission, structured replies " + (session.structured_replies ? "on" : "off") +
            ", " + std::to_string(session.contexts.size()) + " metadata contexts");
  executor_ = std::make_shared<const RequestExecutor>(std::move(session));
  co_return true;
}

asio::awaitable<void> Connection::transmit() {
  std::array<uint8_t, kRequestHeaderSize> raw{};
  while (!stopping_ && !broken_) {
    asio::error_code ec;
    co_await asio::async_read(socket_, asio::buffer(raw), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
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
          log_warning(describe() + ": oversized WRITE of " + std::to_string(request.length) + " bytes; disconnecting");
          break;
        }
        const bool discarded = co_await discard_payload(request.length);
        if (!discarded) break;
      }
      co_await wait_until_idle(true, 0);
      ++in_flight_;
      send(executor_->error_reply(request, error, why), 0);
      continue;
    }
    const uint64_t accounted = (request.type == kCmdRead || request.type == kCmdWrite) ? request.length : 0;
    co_await wait_until_idle(true, accounted);
    if (broken_) break;
    std::vector<uint8_t> payload;
    if (request.type == kCmdWrite) {
      payload.resize(request.length);
      co_await asio::async_read(socket_, asio::buffer(payload), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    dispatch(request, std::move(payload), accounted);
  }
}

asio::awaitable<bool> Connection::discard_payload(uint64_t bytes) {
  std::vector<uint8_t> scratch(std::min<uint64_t>(bytes, 1u << 20));
  while (bytes > 0) {
    const size_t chunk = size_t(std::min<uint64_t>(bytes, scratch.size()));
    asio::error_code ec;
    co_await asio::async_read(socket_, asio::buffer(scratch.data(), chunk), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return false;
    bytes -= chunk;
  }
  co_return true;
}

// for_slot: wait until one more request of `bytes` fits the limits; otherwise wait until nothing is in flight.
asio::awaitable<void> Connection::wait_until_idle(bool for_slot, uint64_t bytes) {
  auto busy = [&] {
    if (!for_slot) return in_flight_ > 0 || writing_;
    if (broken_) return false;
    return in_flight_ >= limits_.max_in_flight ||
           (in_flight_ > 0 && in_flight_bytes_ + bytes > limits_.max_in_flight_bytes);
  };
  while (busy()) {
    wakeup_.expires_at(asio::steady_timer::time_point::max());
    asio::error_code ignored;
    co_await wakeup_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  if (for_slot) in_flight_bytes_ += bytes;  // the caller takes the slot
  co_return;
}

void Connection::dispatch(const RequestHeader& request, std::vector<uint8_t> payload, uint64_t accounted) {
  ++in_flight_;
  auto self = shared_from_this();
  asio::post(workers_, [self, request, payload = std::move(payload), accounted,
                        work = asio::make_work_guard(socket_.get_executor())]() mutable {
    std::vector<uint8_t> reply;
    try {
      reply = self->executor_->execute(request, payload);
    } catch (const std::exception& e) {
      reply = self->executor_->error_reply(request, kEio, e.what());
    }
    payload = {};
    asio::post(work.get_executor(), [self, reply = std::move(reply), accounted]() mutable {
      self->send(std::move(reply), accounted);
    });
  });
}

// Queues a reply; the request it answers stays counted in flight until the reply is written.
void Connection::send(std::vector<uint8_t> reply, uint64_t accounted) {
  outbox_.push_back({std::move(reply), accounted});
  if (!writing_) write_next();
}

void Connection::write_next() {
  while (broken_ && !outbox_.empty()) {  // nobody will read them: just release their slots
    --in_flight_;
    in_flight_bytes_ -= outbox_.front().accounted;
    outbox_.pop_front();
  }
  if (outbox_.empty()) {
    writing_ = false;
    wakeup_.cancel();
    return;
  }
  writing_ = true;
  asio::async_write(socket_, asio::buffer(outbox_.front().bytes),
                    [self = shared_from_this()](asio::error_code ec, size_t) {
                      --self->in_flight_;
                      self->in_flight_bytes_ -= self->outbox_.front().accounted;
                      self->outbox_.pop_front();
                      if (ec) {
                        self->broken_ = true;
                        self->close_socket();
                      }
                      self->wakeup_.cancel();
                      self->write_next();
                    });
}

}  // namespace nbdsnap
