// SPDX-License-Identifier: BSD-3-Clause
// handshake_test.cpp — option haggling driven with byte buffers against a fake catalog.
#include <doctest/doctest.h>

#include "fake_export.h"
#include "handshake.h"

using namespace nbdsnap;
using namespace nbdsnap::nbd;
using nbdsnap::testing::FakeCatalog;
using nbdsnap::testing::FakeExport;

namespace {

struct OptionReply {
  uint32_t option, type;
  std::vector<uint8_t> payload;
};

std::vector<OptionReply> split_replies(const std::vector<uint8_t>& bytes) {
  std::vector<OptionReply> out;
  size_t pos = 0;
  while (pos + 20 <= bytes.size()) {
    REQUIRE(get_u64(bytes.data() + pos) == kOptionReplyMagic);
    OptionReply r{get_u32(bytes.data() + pos + 8), get_u32(bytes.data() + pos + 12), {}};
    const uint32_t length = get_u32(bytes.data() + pos + 16);
    r.payload.assign(bytes.begin() + pos + 20, bytes.begin() + pos + 20 + length);
    out.push_back(r);
    pos += 20 + length;
  }
  CHECK(pos == bytes.size());
  return out;
}

std::vector<uint8_t> name_and_infos(const std::string& name, std::vector<uint16_t> infos) {
  std::vector<uint8_t> d;
  put_u32(d, uint32_t(name.size()));
  put_bytes(d, name);
  put_u16(d, uint16_t(infos.size()));
  for (auto i : infos) put_u16(d, i);
  return d;
}

std::vector<uint8_t> meta_request(const std::string& name, std::vector<std::string> queries) {
  std::vector<uint8_t> d;
  put_u32(d, uint32_t(name.size()));
  put_bytes(d, name);
  put_u32(d, uint32_t(queries.size()));
  for (const auto& q : queries) {
    put_u32(d, uint32_t(q.size()));
    put_bytes(d, q);
  }
  return d;
}

struct Fixture {
  FakeCatalog catalog;
  Fixture() {
    catalog.add(std::make_shared<FakeExport>("disk", 1 << 20, testing::writable_features()));
    catalog.add(
        std::make_shared<FakeExport>("disk@s2", 1 << 20, ExportFeatures{}, std::vector<std::string>{"s1"}));
  }
};

}  // namespace

TEST_CASE("client_flags_other_than_fixed_newstyle_and_no_zeroes_close_the_connection") {
  Fixture f;
  Handshake h(f.catalog);
  CHECK(h.accept_client_flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes));
  CHECK_FALSE(h.accept_client_flags(4));
}

TEST_CASE("unknown_option_gets_err_unsup_and_haggling_goes_on") {
  Fixture f;
  Handshake h(f.catalog);
  auto step = h.handle_option(4242, {});
  CHECK(step.next == Handshake::Next::read_option);
  auto replies = split_replies(step.reply);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].option == 4242);
  CHECK(replies[0].type == kRepErrUnsup);
  CHECK(split_replies(h.handle_option(kOptStartTls, {}).reply)[0].type ==
        kRepErrUnsup);  // TLS off by default
}

TEST_CASE("bad_option_magic_or_huge_option_data_is_not_accepted") {
  Fixture f;
  Handshake h(f.catalog);
  CHECK_FALSE(h.accept_option_header({0x1234, kOptList, 0}));
  CHECK_FALSE(h.accept_option_header({kOptionMagic, kOptList, 1u << 30}));
  CHECK(h.accept_option_header({kOptionMagic, kOptList, 0}));
}

TEST_CASE("list_names_every_export_with_its_description") {
  Fixture f;
  Handshake h(f.catalog);
  auto replies = split_replies(h.handle_option(kOptList, {}).reply);
  REQUIRE(replies.size() == 3);
  CHECK(replies[0].type == kRepServer);
  CHECK(get_u32(replies[0].payload.data()) == 4);
  CHECK(std::string(replies[0].payload.begin() + 4, replies[0].payload.end()) == "diskfake disk");
  CHECK(replies[2].type == kRepAck);
  const uint8_t junk[] = {1};
  CHECK(split_replies(h.handle_option(kOptList, junk).reply)[0].type == kRepErrInvalid);
}

TEST_CASE("info_reports_export_name_description_and_block_size") {
  Fixture f;
  Handshake h(f.catalog);
  auto step =
      h.handle_option(kOptInfo, name_and_infos("disk@s2", {kInfoName, kInfoDescription, kInfoBlockSize}));
  CHECK(step.next == Handshake::Next::read_option);
  auto replies = split_replies(step.reply);
  REQUIRE(replies.size() == 5);
  CHECK(get_u16(replies[0].payload.data()) == kInfoExport);
  CHECK(get_u64(replies[0].payload.data() + 2) == 1 << 20);
  CHECK((get_u16(replies[0].payload.data() + 10) & kFlagReadOnly) != 0);
  CHECK(get_u16(replies[1].payload.data()) == kInfoName);
  CHECK(get_u16(replies[2].payload.data()) == kInfoDescription);
  CHECK(get_u16(replies[3].payload.data()) == kInfoBlockSize);
  CHECK(get_u32(replies[3].payload.data() + 10) == kMaxRequestLength);
  CHECK(replies[4].type == kRepAck);
}

TEST_CASE("go_to_an_unknown_export_is_err_unknown_and_haggling_goes_on") {
  Fixture f;
  Handshake h(f.catalog);
  auto step = h.handle_option(kOptGo, name_and_infos("nope", {}));
  CHECK(step.next == Handshake::Next::read_option);
  CHECK(split_replies(step.reply)[0].type == kRepErrUnknown);
  auto truncated = name_and_infos("disk", {});
  truncated.pop_back();
  CHECK(split_replies(h.handle_option(kOptGo, truncated).reply)[0].type == kRepErrInvalid);
}

TEST_CASE("export_name_to_an_unknown_export_closes_without_reply") {
  Fixture f;
  Handshake h(f.catalog);
  const std::string name = "nope";
  auto step = h.handle_option(kOptExportName, {reinterpret_cast<const uint8_t*>(name.data()), name.size()});
  CHECK(step.next == Handshake::Next::close);
  CHECK(step.reply.empty());
}

TEST_CASE("export_name_enters_transmission_with_size_and_flags") {
  Fixture f;
  Handshake h(f.catalog);
  REQUIRE(h.accept_client_flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes));
  const std::string name = "disk";
  auto step = h.handle_option(kOptExportName, {reinterpret_cast<const uint8_t*>(name.data()), name.size()});
  CHECK(step.next == Handshake::Next::transmission);
  REQUIRE(step.reply.size() == 10);
  CHECK(get_u64(step.reply.data()) == 1 << 20);
  const uint16_t flags = get_u16(step.reply.data() + 8);
  CHECK((flags & kFlagReadOnly) == 0);
  CHECK((flags & kFlagSendTrim) != 0);
  CHECK((flags & kFlagSendDf) == 0);  // no structured replies negotiated
}

TEST_CASE("meta_contexts_need_structured_replies_first") {
  Fixture f;
  Handshake h(f.catalog);
  CHECK(split_replies(h.handle_option(kOptSetMetaContext, meta_request("disk", {"base:allocation"})).reply)[0]
            .type == kRepErrInvalid);
  CHECK(split_replies(h.handle_option(kOptStructuredReply, {}).reply)[0].type == kRepAck);
  CHECK(split_replies(h.handle_option(kOptStructuredReply, {}).reply)[0].type == kRepErrInvalid);
}

TEST_CASE("list_meta_context_shows_dirty_bitmaps_of_images") {
  Fixture f;
  Handshake h(f.catalog);
  h.handle_option(kOptStructuredReply, {});
  auto replies = split_replies(h.handle_option(kOptListMetaContext, meta_request("disk@s2", {})).reply);
  REQUIRE(replies.size() == 3);
  CHECK(std::string(replies[1].payload.begin() + 4, replies[1].payload.end()) == "qemu:dirty-bitmap:s1");
  replies = split_replies(h.handle_option(kOptListMetaContext, meta_request("disk", {"qemu:"})).reply);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].type == kRepAck);
}

TEST_CASE("set_meta_context_then_go_on_the_same_export_keeps_the_contexts") {
  Fixture f;
  Handshake h(f.catalog);
  h.handle_option(kOptStructuredReply, {});
  auto replies = split_replies(
      h.handle_option(kOptSetMetaContext, meta_request("disk@s2", {"base:allocation", "qemu:dirty-bitmap:s1",
                                                                   "qemu:dirty-bitmap:zz", "x-a:b"}))
          .reply);
  REQUIRE(replies.size() == 3);
  CHECK(get_u32(replies[0].payload.data()) == 1);
  CHECK(get_u32(replies[1].payload.data()) == 2);
  auto step = h.handle_option(kOptGo, name_and_infos("disk@s2", {}));
  CHECK(step.next == Handshake::Next::transmission);
  REQUIRE(h.session().contexts.size() == 2);
  CHECK(h.session().contexts[1].checkpoint == "s1");
  CHECK((h.session().transmission_flags & kFlagSendDf) != 0);
}

TEST_CASE("go_on_another_export_than_set_meta_context_drops_the_contexts") {
  Fixture f;
  Handshake h(f.catalog);
  h.handle_option(kOptStructuredReply, {});
  h.handle_option(kOptSetMetaContext, meta_request("disk@s2", {"base:allocation"}));
  h.handle_option(kOptGo, name_and_infos("disk", {}));
  CHECK(h.session().contexts.empty());
}

TEST_CASE("abort_is_acknowledged_and_closes") {
  Fixture f;
  Handshake h(f.catalog);
  auto step = h.handle_option(kOptAbort, {});
  CHECK(step.next == Handshake::Next::close);
  CHECK(split_replies(step.reply)[0].type == kRepAck);
}

TEST_CASE("options_during_shutdown_get_err_shutdown") {
  Fixture f;
  Handshake h(f.catalog);
  h.refuse_all_options(kRepErrShutdown, "the server is shutting down");
  CHECK(split_replies(h.handle_option(kOptList, {}).reply)[0].type == kRepErrShutdown);
}

TEST_CASE("a_refusal_that_closes_answers_the_option_then_ends_the_handshake") {
  Fixture f;
  Handshake h(f.catalog);
  h.refuse_all_options(kRepErrShutdown, "the server is shutting down", Handshake::AfterRefusal::close);
  const auto step = h.handle_option(kOptGo, name_and_infos("disk", {}));
  const auto replies = split_replies(step.reply);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].type == kRepErrShutdown);
  CHECK(step.next == Handshake::Next::close);
  CHECK(h.handle_option(kOptAbort, {}).next == Handshake::Next::close);
}

TEST_CASE("a_refused_connection_gets_the_error_for_every_option_and_abort_still_works") {
  Fixture f;
  Handshake h(f.catalog);
  h.refuse_all_options(kRepErrPolicy, "too many connections");
  const auto go = split_replies(h.handle_option(kOptGo, name_and_infos("disk", {})).reply);
  REQUIRE(go.size() == 1);
  CHECK(go[0].type == kRepErrPolicy);
  CHECK(std::string(go[0].payload.begin(), go[0].payload.end()) == "too many connections");
  CHECK(h.handle_option(kOptExportName, {}).next == Handshake::Next::close);
  CHECK(h.handle_option(kOptAbort, {}).next == Handshake::Next::close);
}

namespace {

// Refuses every export whose name does not start with `prefix`.
struct PrefixAccess final : ExportAccess {
  std::string prefix;
  explicit PrefixAccess(std::string p) : prefix(std::move(p)) {}
  std::string refusal(const std::string& name) const override {
    return name.starts_with(prefix) ? std::string() : "psk:agent2 may not open export '" + name + "'";
  }
};

uint32_t first_reply_type(Handshake& h, uint32_t option, const std::vector<uint8_t>& data = {}) {
  auto replies = split_replies(h.handle_option(option, data).reply);
  REQUIRE(!replies.empty());
  return replies[0].type;
}

}  // namespace

TEST_CASE("tls_off_answers_starttls_with_err_unsup_and_never_tls_reqd") {
  Fixture f;
  Handshake h(f.catalog, TlsMode::off);
  CHECK(first_reply_type(h, kOptStartTls) == kRepErrUnsup);
  CHECK(first_reply_type(h, kOptList) == kRepServer);
}

TEST_CASE("tls_require_refuses_every_option_but_starttls_and_abort_and_reveals_no_export") {
  Fixture f;
  Handshake h(f.catalog, TlsMode::require);
  for (uint32_t option : {kOptList, kOptStructuredReply, 4242u}) {
    auto step = h.handle_option(option, {});
    CHECK(step.next == Handshake::Next::read_option);
    auto replies = split_replies(step.reply);
    REQUIRE(replies.size() == 1);
    CHECK(replies[0].type == kRepErrTlsReqd);
  }
  for (uint32_t option : {kOptInfo, kOptGo}) {
    auto replies = split_replies(h.handle_option(option, name_and_infos("disk", {})).reply);
    REQUIRE(replies.size() == 1);
    CHECK(replies[0].type == kRepErrTlsReqd);
  }
  CHECK(first_reply_type(h, kOptListMetaContext, meta_request("disk@s2", {})) == kRepErrTlsReqd);
  const std::string name = "disk";
  auto export_name =
      h.handle_option(kOptExportName, {reinterpret_cast<const uint8_t*>(name.data()), name.size()});
  CHECK(export_name.next == Handshake::Next::close);
  CHECK(export_name.reply.empty());
}

TEST_CASE("starttls_is_acknowledged_then_options_are_served_and_a_second_starttls_is_invalid") {
  Fixture f;
  Handshake h(f.catalog, TlsMode::require);
  const uint8_t junk[] = {1};
  CHECK(first_reply_type(h, kOptStartTls, {junk, junk + 1}) == kRepErrInvalid);
  auto step = h.handle_option(kOptStartTls, {});
  CHECK(step.next == Handshake::Next::start_tls);
  auto replies = split_replies(step.reply);
  REQUIRE(replies.size() == 1);
  CHECK(replies[0].type == kRepAck);
  h.tls_started();
  CHECK(h.tls_active());
  CHECK(first_reply_type(h, kOptList) == kRepServer);
  CHECK(first_reply_type(h, kOptStartTls) == kRepErrInvalid);
  CHECK(h.handle_option(kOptGo, name_and_infos("disk", {})).next == Handshake::Next::transmission);
}

TEST_CASE("tls_on_serves_plain_clients_and_forgets_what_was_negotiated_in_clear") {
  Fixture f;
  Handshake h(f.catalog, TlsMode::on);
  CHECK(first_reply_type(h, kOptStructuredReply) == kRepAck);
  CHECK(first_reply_type(h, kOptSetMetaContext, meta_request("disk@s2", {"base:allocation"})) ==
        kRepMetaContext);
  CHECK(h.handle_option(kOptStartTls, {}).next == Handshake::Next::start_tls);
  h.tls_started();
  // Structured replies negotiated before TLS do not count: meta contexts need them again.
  CHECK(first_reply_type(h, kOptSetMetaContext, meta_request("disk@s2", {"base:allocation"})) ==
        kRepErrInvalid);
  CHECK(first_reply_type(h, kOptStructuredReply) == kRepAck);
  CHECK(h.handle_option(kOptGo, name_and_infos("disk@s2", {})).next == Handshake::Next::transmission);
  CHECK(h.session().contexts.empty());
}

TEST_CASE("access_rules_hide_refused_exports_from_list_and_refuse_them_with_err_policy") {
  Fixture f;
  Handshake h(f.catalog);
  h.set_access(std::make_shared<PrefixAccess>("disk@"));
  auto replies = split_replies(h.handle_option(kOptList, {}).reply);
  REQUIRE(replies.size() == 2);  // disk@s2 and the ACK
  CHECK(std::string(replies[0].payload.begin() + 4, replies[0].payload.begin() + 4 + 7) == "disk@s2");
  auto step = h.handle_option(kOptGo, name_and_infos("disk", {}));
  CHECK(step.next == Handshake::Next::read_option);
  CHECK(split_replies(step.reply)[0].type == kRepErrPolicy);
  CHECK(step.refused == "psk:agent2 may not open export 'disk'");
  // A name that does not exist is refused the same way: the client learns nothing about what exists.
  CHECK(first_reply_type(h, kOptInfo, name_and_infos("secret", {})) == kRepErrPolicy);
  CHECK(first_reply_type(h, kOptStructuredReply) == kRepAck);
  CHECK(first_reply_type(h, kOptListMetaContext, meta_request("disk", {})) == kRepErrPolicy);
  const std::string name = "disk";
  auto export_name =
      h.handle_option(kOptExportName, {reinterpret_cast<const uint8_t*>(name.data()), name.size()});
  CHECK(export_name.next == Handshake::Next::close);
  CHECK_FALSE(export_name.refused.empty());
  CHECK(h.handle_option(kOptGo, name_and_infos("disk@s2", {})).next == Handshake::Next::transmission);
}
