// SPDX-License-Identifier: BSD-3-Clause
// handshake.h — the fixed newstyle option haggling of one NBD connection, as a pure state machine.
//
// The connection feeds it the client flags and each option (header, then data) and sends back the bytes it
// returns; no sockets are involved, so tests and fuzzers drive it with byte buffers. The outcome is a
// NegotiatedSession: the export chosen, structured replies on or off, and the metadata contexts selected.
//
// TLS (NBD proto.md, "TLS support"): with TlsMode::off, STARTTLS gets NBD_REP_ERR_UNSUP (NOTLS mode). With
// `on` a client may upgrade or not (SELECTIVETLS with no TLS-only export); with `require` (FORCEDTLS) every
// option but STARTTLS and ABORT gets NBD_REP_ERR_TLS_REQD until TLS is up, EXPORT_NAME closes, and nothing
// about exports is revealed. STARTTLS answers ACK and Next::start_tls: the connection runs the TLS handshake
// and calls tls_started(); what was negotiated in clear (structured replies, contexts) is forgotten then, so
// a man in the middle cannot have set it. A second STARTTLS, or one with data, gets NBD_REP_ERR_INVALID.
// Access: every export name a client names or lists passes the ExportAccess given (NBD_REP_ERR_POLICY).
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

// Decides which exports one client may see and open (nbdsnapd: access rules and the client's identity,
// access_policy.h).
class ExportAccess {
 public:
  virtual ~ExportAccess() = default;
  // Empty when the client may open `export_name`; else why not, naming the client (sent to it with
  // NBD_REP_ERR_POLICY and logged).
  virtual std::string refusal(const std::string& export_name) const = 0;
};

enum class TlsMode { off, on, require };

// The transmission flags an export gets (DF only with structured replies).
uint16_t transmission_flags(const ExportFeatures& features, bool structured_replies);

class Handshake {
 public:
  // start_tls: send the reply in clear, then run the TLS handshake and call tls_started() (or close).
  enum class Next { read_option, close, transmission, start_tls };
  struct Step {
    std::vector<uint8_t> reply;  // bytes to send (may be empty)
    Next next = Next::read_option;
    std::string refused;  // a client refused (access rules, TLS required): the reason, for the log
  };

  explicit Handshake(const ExportCatalog& catalog, TlsMode tls = TlsMode::off)
      : catalog_(catalog), tls_(tls) {}

  // Who decides which exports this client may open (null: every export). Set again after TLS, when the
  // client's identity is known. The object must outlive the handshake.
  void set_access(std::shared_ptr<const ExportAccess> access) { access_ = std::move(access); }
  // After the TLS handshake that followed Next::start_tls succeeded.
  void tls_started();
  bool tls_active() const { return tls_active_; }

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
  Step handle_starttls(std::span<const uint8_t> data);
  Step refuse(uint32_t option, uint32_t reply_type, const std::string& message) const;
  // The access refusal for `name` (empty: allowed).
  std::string access_refusal(const std::string& name) const;
  // Opens `name` if the client may, else a refusal Step (ERR_POLICY, or what open() failed with).
  bool open_allowed(uint32_t option, const std::string& name, std::shared_ptr<ServedExport>& target,
                    Step& refusal);
  // Keeps the selected contexts only if they were chosen for the export entering transmission.
  void finish_session(std::shared_ptr<ServedExport> target);

  const ExportCatalog& catalog_;
  const TlsMode tls_;
  bool tls_active_ = false;
  std::shared_ptr<const ExportAccess> access_;
  bool no_zeroes_ = false;
  uint32_t refusal_ = 0;  // non-zero: refuse_all_options() was called
  std::string refusal_message_;
  AfterRefusal after_refusal_ = AfterRefusal::keep_negotiating;
  NegotiatedSession session_;
  std::string contexts_export_;  // export name the last SET_META_CONTEXT was for
  std::vector<MetaContext> selected_contexts_;
};

}  // namespace nbdsnap
