// handshake.h — the fixed newstyle option haggling of one NBD connection, as a pure state machine.
//
// The connection feeds it the client flags and each option (header, then data) and sends back the bytes it
// returns; no sockets are involved, so tests and fuzzers drive it with byte buffers. The outcome is a
// NegotiatedSession: the export chosen, structured replies on or off, and the metadata contexts selected.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "meta_context.h"
#include "nbd_protocol.h"
#include "served_export.h"

namespace nbdsnap {

struct NegotiatedSession {
  std::shared_ptr<ServedExport> target;
  bool structured_replies = false;
  uint16_t transmission_flags = 0;
  std::vector<MetaContext> contexts;  // selected for `target`; empty unless SET_META_CONTEXT named it
};

// The transmission flags an export gets (DF only with structured replies).
uint16_t transmission_flags(const ExportFeatures& features, bool structured_replies);

class Handshake {
 public:
  enum class Next { read_option, close, transmission };
  struct Step {
    std::vector<uint8_t> reply;  // bytes to send (may be empty)
    Next next = Next::read_option;
  };

  explicit Handshake(const ExportCatalog& catalog) : catalog_(catalog) {}

  std::vector<uint8_t> greeting() const;
  // False for flags the server did not offer: the connection must be dropped.
  bool accept_client_flags(uint32_t flags);
  // False when the header is not an option (bad magic) or its data is too long to read: drop the connection.
  bool accept_option_header(const nbd::OptionHeader& header) const;
  // Answers one option whose data has been read in full.
  Step handle_option(uint32_t option, std::span<const uint8_t> data);
  // What a refused option leads to: more options (the client may ask again or send ABORT), or the end.
  enum class AfterRefusal { keep_negotiating, close };
  // From now on options other than ABORT are refused with `reply_type` and `message` (NBD_OPT_EXPORT_NAME,
  // which has no error reply, closes): for a server shutting down (NBD_REP_ERR_SHUTDOWN, then close), or a
  // connection over the limit (keep negotiating, so the client can report the error and abort).
  void refuse_all_options(uint32_t reply_type, std::string message,
                          AfterRefusal after = AfterRefusal::keep_negotiating);

  const NegotiatedSession& session() const { return session_; }
  NegotiatedSession take_session() { return std::move(session_); }

 private:
  Step handle_export_name(std::span<const uint8_t> data);
  Step handle_list(std::span<const uint8_t> data);
  Step handle_info_or_go(uint32_t option, std::span<const uint8_t> data);
  Step handle_structured_reply(std::span<const uint8_t> data);
  Step handle_meta_context(uint32_t option, std::span<const uint8_t> data);
  Step refuse(uint32_t option, uint32_t reply_type, const std::string& message) const;
  // Keeps the selected contexts only if they were chosen for the export entering transmission.
  void finish_session(std::shared_ptr<ServedExport> target);

  const ExportCatalog& catalog_;
  bool no_zeroes_ = false;
  uint32_t refusal_ = 0;  // non-zero: refuse_all_options() was called
  std::string refusal_message_;
  AfterRefusal after_refusal_ = AfterRefusal::keep_negotiating;
  NegotiatedSession session_;
  std::string contexts_export_;  // export name the last SET_META_CONTEXT was for
  std::vector<MetaContext> selected_contexts_;
};

}  // namespace nbdsnap
