// SPDX-License-Identifier: BSD-3-Clause
// handshake.cpp — option haggling (see handshake.h). Each handler parses its option data defensively:
// anything malformed gets NBD_REP_ERR_INVALID and the connection goes on.
#include "handshake.h"

#include "status.h"

namespace nbdsnap {

using namespace nbd;

namespace {

// Reads "u32 name length, name" as used by INFO, GO and the meta context options.
bool read_export_name(FieldReader& reader, std::string& name) {
  uint32_t length = 0;
  return reader.u32(length) && length <= kMaxStringLength && reader.string(length, name);
}

// Reads "u32 count, count x (u32 length, string)".
bool read_queries(FieldReader& reader, std::vector<std::string>& queries) {
  uint32_t count = 0;
  if (!reader.u32(count)) return false;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t length = 0;
    std::string query;
    if (!reader.u32(length) || length > kMaxStringLength || !reader.string(length, query)) return false;
    queries.push_back(std::move(query));
  }
  return reader.remaining() == 0;
}

std::string status_message(const Status& status) {
  return status.message().empty() ? status.to_string() : status.message();
}

uint32_t open_failure_reply(const Status& status) {
  return status.code() == Errc::invalid_argument ? kRepErrInvalid : kRepErrUnknown;
}

}  // namespace

uint16_t transmission_flags(const ExportFeatures& features, bool structured_replies) {
  uint16_t flags = kFlagHasFlags;
  if (features.read_only) flags |= kFlagReadOnly;
  if (features.can_flush) flags |= kFlagSendFlush | kFlagSendFua;
  if (!features.read_only && features.can_trim) flags |= kFlagSendTrim;
  if (!features.read_only && features.can_zero) flags |= kFlagSendWriteZeroes | kFlagSendFastZero;
  if (structured_replies) flags |= kFlagSendDf;
  if (features.can_multi_conn) flags |= kFlagCanMultiConn;
  if (features.can_cache) flags |= kFlagSendCache;
  return flags;
}

std::vector<uint8_t> Handshake::greeting() const {
  return encode_greeting(kFlagFixedNewstyle | kFlagNoZeroes);
}

bool Handshake::accept_client_flags(uint32_t flags) {
  if (flags & ~(kClientFlagFixedNewstyle | kClientFlagNoZeroes)) return false;
  no_zeroes_ = (flags & kClientFlagNoZeroes) != 0;
  return true;
}

bool Handshake::accept_option_header(const OptionHeader& header) const {
  return header.magic == kOptionMagic && header.length <= kMaxOptionLength;
}

Handshake::Step Handshake::refuse(uint32_t option, uint32_t reply_type, const std::string& message) const {
  Step step;
  append_option_error(step.reply, option, reply_type, message);
  return step;
}

void Handshake::refuse_all_options(uint32_t reply_type, std::string message, AfterRefusal after) {
  refusal_ = reply_type;
  refusal_message_ = std::move(message);
  after_refusal_ = after;
}

Handshake::Step Handshake::handle_option(uint32_t option, std::span<const uint8_t> data) {
  if (option == kOptAbort) {
    Step step;
    append_option_reply(step.reply, option, kRepAck);
    step.next = Next::close;
    return step;
  }
  if (refusal_ != 0) {
    if (option == kOptExportName) return {{}, Next::close, {}};
    Step step = refuse(option, refusal_, refusal_message_);
    if (after_refusal_ == AfterRefusal::close) step.next = Next::close;
    return step;
  }
  if (option == kOptStartTls) return handle_starttls(data);
  if (tls_ == TlsMode::require && !tls_active_) {
    // FORCEDTLS: EXPORT_NAME cannot be refused with an error, so the connection ends.
    const std::string why =
        std::string("TLS is required and the client did not start it (") + option_name(option) + ")";
    if (option == kOptExportName) return {{}, Next::close, why};
    Step step =
        refuse(option, kRepErrTlsReqd, "this server requires TLS: use NBD_OPT_STARTTLS (nbds:// URIs)");
    step.refused = why;
    return step;
  }
  switch (option) {
    case kOptExportName:
      return handle_export_name(data);
    case kOptList:
      return handle_list(data);
    case kOptInfo:
    case kOptGo:
      return handle_info_or_go(option, data);
    case kOptStructuredReply:
      return handle_structured_reply(data);
    case kOptListMetaContext:
    case kOptSetMetaContext:
      return handle_meta_context(option, data);
    default:
      return refuse(option, kRepErrUnsup, "option " + std::to_string(option) + " is not supported");
  }
}

Handshake::Step Handshake::handle_starttls(std::span<const uint8_t> data) {
  if (tls_ == TlsMode::off)
    return refuse(kOptStartTls, kRepErrUnsup, "TLS is not enabled on this server (nbdsnapd --tls)");
  if (!data.empty()) return refuse(kOptStartTls, kRepErrInvalid, "OPT_STARTTLS takes no data");
  if (tls_active_) return refuse(kOptStartTls, kRepErrInvalid, "TLS is already active");
  Step step;
  append_option_reply(step.reply, kOptStartTls, kRepAck);
  step.next = Next::start_tls;
  return step;
}

void Handshake::tls_started() {
  tls_active_ = true;
  session_ = {};
  contexts_export_.clear();
  selected_contexts_.clear();
}

std::string Handshake::access_refusal(const std::string& name) const {
  return access_ ? access_->refusal(name) : std::string();
}

bool Handshake::open_allowed(uint32_t option, const std::string& name, std::shared_ptr<ServedExport>& target,
                             Step& refusal) {
  // The name asked for is checked before it is looked up, so a refused client cannot tell which exports
  // exist.
  std::string why = name.empty() ? std::string() : access_refusal(name);
  if (why.empty()) {
    Status opened = catalog_.open(name, target);
    if (!opened.is_ok()) {
      refusal = refuse(option, open_failure_reply(opened), status_message(opened));
      return false;
    }
    if (target->name() != name) why = access_refusal(target->name());  // the default export
  }
  if (why.empty()) return true;
  target.reset();
  refusal = refuse(option, kRepErrPolicy, why);
  refusal.refused = why;
  return false;
}

void Handshake::finish_session(std::shared_ptr<ServedExport> target) {
  session_.transmission_flags = transmission_flags(target->features(), session_.structured_replies);
  if (contexts_export_ == target->name() && session_.structured_replies)
    session_.contexts = selected_contexts_;
  session_.target = std::move(target);
}

Handshake::Step Handshake::handle_export_name(std::span<const uint8_t> data) {
  if (data.size() > kMaxStringLength) return {{}, Next::close, {}};
  std::string name(reinterpret_cast<const char*>(data.data()), data.size());
  std::shared_ptr<ServedExport> target;
  Step refused;
  if (!open_allowed(kOptExportName, name, target, refused)) {  // this option cannot report errors: close
    return {{}, Next::close, refused.refused};
  }
  finish_session(target);
  Step step;
  step.reply = encode_export_name_reply(target->size(), session_.transmission_flags, no_zeroes_);
  step.next = Next::transmission;
  return step;
}

Handshake::Step Handshake::handle_list(std::span<const uint8_t> data) {
  if (!data.empty()) return refuse(kOptList, kRepErrInvalid, "OPT_LIST takes no data");
  Step step;
  for (const auto& name : catalog_.export_names()) {
    if (!access_refusal(name).empty()) continue;  // only what this client may open
    std::shared_ptr<ServedExport> target;
    if (!catalog_.open(name, target).is_ok()) continue;  // vanished meanwhile
    std::vector<uint8_t> payload;
    put_u32(payload, uint32_t(name.size()));
    put_bytes(payload, name);
    put_bytes(payload, target->description());
    append_option_reply(step.reply, kOptList, kRepServer, payload);
  }
  append_option_reply(step.reply, kOptList, kRepAck);
  return step;
}

Handshake::Step Handshake::handle_info_or_go(uint32_t option, std::span<const uint8_t> data) {
  FieldReader reader(data);
  std::string name;
  uint16_t count = 0;
  std::vector<uint16_t> requests;
  bool valid = read_export_name(reader, name) && reader.u16(count);
  for (uint16_t i = 0; valid && i < count; ++i) {
    uint16_t request = 0;
    valid = reader.u16(request);
    requests.push_back(request);
  }
  if (!valid || reader.remaining() != 0) return refuse(option, kRepErrInvalid, "malformed INFO/GO request");

  std::shared_ptr<ServedExport> target;
  Step refused;
  if (!open_allowed(option, name, target, refused)) return refused;

  const uint16_t flags = transmission_flags(target->features(), session_.structured_replies);
  Step step;
  std::vector<uint8_t> info;
  put_u16(info, kInfoExport);
  put_u64(info, target->size());
  put_u16(info, flags);
  append_option_reply(step.reply, option, kRepInfo, info);
  for (uint16_t request : requests) {
    info.clear();
    if (request == kInfoName) {
      put_u16(info, kInfoName);
      put_bytes(info, target->name());
    } else if (request == kInfoDescription) {
      put_u16(info, kInfoDescription);
      put_bytes(info, target->description().substr(0, kMaxStringLength));
    } else {
      continue;  // BLOCK_SIZE is always sent below; unknown requests are ignored
    }
    append_option_reply(step.reply, option, kRepInfo, info);
  }
  info.clear();
  put_u16(info, kInfoBlockSize);
  put_u32(info, kMinimumBlockSize);
  put_u32(info, kPreferredBlockSize);
  put_u32(info, kMaxRequestLength);
  append_option_reply(step.reply, option, kRepInfo, info);
  append_option_reply(step.reply, option, kRepAck);
  if (option == kOptGo) {
    finish_session(target);
    step.next = Next::transmission;
  }
  return step;
}

Handshake::Step Handshake::handle_structured_reply(std::span<const uint8_t> data) {
  if (!data.empty()) return refuse(kOptStructuredReply, kRepErrInvalid, "OPT_STRUCTURED_REPLY takes no data");
  if (session_.structured_replies) {
    return refuse(kOptStructuredReply, kRepErrInvalid, "structured replies are already negotiated");
  }
  session_.structured_replies = true;
  Step step;
  append_option_reply(step.reply, kOptStructuredReply, kRepAck);
  return step;
}

Handshake::Step Handshake::handle_meta_context(uint32_t option, std::span<const uint8_t> data) {
  const bool set = option == kOptSetMetaContext;
  if (set) {  // SET replaces the selection even when it fails
    selected_contexts_.clear();
    contexts_export_.clear();
  }
  if (!session_.structured_replies) {
    return refuse(option, kRepErrInvalid, "negotiate structured replies before metadata contexts");
  }
  FieldReader reader(data);
  std::string name;
  std::vector<std::string> queries;
  if (!read_export_name(reader, name) || !read_queries(reader, queries)) {
    return refuse(option, kRepErrInvalid, "malformed metadata context request");
  }
  std::shared_ptr<ServedExport> target;
  Step refused;
  if (!open_allowed(option, name, target, refused)) return refused;
  const auto available = available_meta_contexts(target->dirty_bitmap_checkpoints());

  Step step;
  auto announce = [&](uint32_t id, const std::string& context_name) {
    std::vector<uint8_t> payload;
    put_u32(payload, id);
    put_bytes(payload, context_name);
    append_option_reply(step.reply, option, kRepMetaContext, payload);
  };
  if (!set) {
    std::vector<std::string> names = queries.empty() ? available : std::vector<std::string>{};
    for (const auto& query : queries) {
      for (auto& match : list_meta_context_matches(query, available)) names.push_back(std::move(match));
    }
    for (const auto& context_name : names) announce(0, context_name);
  } else {
    for (const auto& query : queries) {
      auto context = select_meta_context(query, available);
      if (!context) continue;
      bool duplicate = false;
      for (const auto& chosen : selected_contexts_) duplicate |= chosen.name == context->name;
      if (duplicate) continue;
      context->id = uint32_t(selected_contexts_.size() + 1);
      announce(context->id, context->name);
      selected_contexts_.push_back(std::move(*context));
    }
    contexts_export_ = target->name();
  }
  append_option_reply(step.reply, option, kRepAck);
  return step;
}

}  // namespace nbdsnap
