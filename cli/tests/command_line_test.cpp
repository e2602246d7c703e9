// SPDX-License-Identifier: BSD-3-Clause
// command_line_test.cpp — global options, per-command arguments, requests built from the command line.
#include <doctest/doctest.h>

#include <filesystem>
#include <sstream>

#include "cbt_commands.h"
#include "command_line.h"
#include "command_registry.h"
#include "exit_codes.h"
#include "server_path.h"
#include "snapshot_commands.h"

using namespace nbdsnap::cli;

namespace {
ExitCode code_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const CliError& error) {
    return error.code();
  }
  return ExitCode::ok;
}
}  // namespace

TEST_CASE("global_options_may_appear_before_or_after_the_command") {
  Invocation a = split_command_line({"--control", "/s", "--json", "snapshot", "info", "s1"}, nullptr);
  CHECK(a.global.control == "/s");
  CHECK(a.global.json);
  CHECK(a.words == std::vector<std::string>{"snapshot", "info", "s1"});
  Invocation b =
      split_command_line({"snapshot", "create", "s1", "--origin", "a", "--json", "--control=/t"}, nullptr);
  CHECK(b.global.control == "/t");
  CHECK(b.global.json);
  CHECK(b.words == std::vector<std::string>{"snapshot", "create", "s1", "--origin", "a"});
}

TEST_CASE("timeout_defaults_to_30_seconds_takes_fractions_and_refuses_zero_negative_and_words") {
  CHECK(split_command_line({"origins"}, nullptr).global.timeout == std::chrono::seconds(30));
  CHECK(split_command_line({"origins", "--timeout", "2.5"}, nullptr).global.timeout ==
        std::chrono::milliseconds(2500));
  CHECK(split_command_line({"--timeout=1", "origins"}, nullptr).global.timeout == std::chrono::seconds(1));
  for (const char* bad : {"0", "-1", "abc", "1x", "", "nan", "inf", "86401"}) {
    CAPTURE(bad);
    CHECK(code_of([&] { split_command_line({"--timeout", bad, "origins"}, nullptr); }) == ExitCode::usage);
  }
}

TEST_CASE("control_path_comes_from_the_option_then_the_environment_then_the_default") {
  CHECK(split_command_line({"origins"}, "/env.sock").global.control == "/env.sock");
  CHECK(split_command_line({"--control", "/opt.sock", "origins"}, "/env.sock").global.control == "/opt.sock");
  CHECK(split_command_line({"origins"}, nullptr).global.control == kDefaultControlPath);
  CHECK(split_command_line({"origins"}, "").global.control == kDefaultControlPath);
}

TEST_CASE("command_args_reads_positionals_options_and_repeated_options") {
  CommandArgs args("snapshot create NAME --origin ORIGIN...");
  args.options()("origin", boost::program_options::value<std::vector<std::string>>(), "")("writable", "");
  args.positional("NAME", 1);
  args.parse({"s1", "--origin", "a", "--origin", "b", "--writable"});
  CHECK(args.text("NAME") == "s1");
  CHECK(args.list("origin") == std::vector<std::string>{"a", "b"});
  CHECK(args.flag("writable"));
}

TEST_CASE("command_args_reports_missing_and_unknown_arguments_as_usage_errors") {
  auto parse = [](std::vector<std::string> words) {
    CommandArgs args("cbt info ORIGIN");
    args.positional("ORIGIN", 1);
    args.parse(words);
  };
  CHECK(code_of([&] { parse({}); }) == ExitCode::usage);
  CHECK(code_of([&] { parse({"a", "b"}); }) == ExitCode::usage);
  CHECK(code_of([&] { parse({"a", "--bogus"}); }) == ExitCode::usage);
  CHECK(code_of([&] { parse({"a"}); }) == ExitCode::ok);
}

TEST_CASE("snapshot_create_request_parses_storage_specs_and_limit") {
  nlohmann::json request =
      snapshot_create_request("s1", {"a", "b"}, {"/diff/one:1G", "/dev/sdz"}, 512 << 20, true);
  CHECK(request["name"] == "s1");
  CHECK(request["origins"] == nlohmann::json::array({"a", "b"}));
  CHECK(request["storage"][0]["path"] == "/diff/one");
  CHECK(request["storage"][0]["size"] == 1ull << 30);
  CHECK(request["storage"][1]["path"] == "/dev/sdz");
  CHECK(request["storage"][1]["size"] == 0);
  CHECK(request["limit"] == 512 << 20);
  CHECK(request["writable"] == true);
  CHECK_FALSE(snapshot_create_request("s", {"a"}, {"/x"}, 0, false).contains("limit"));
}

TEST_CASE("snapshot_create_request_needs_an_origin_and_valid_storage_specs") {
  CHECK(code_of([] { snapshot_create_request("s", {}, {"/x"}, 0, false); }) == ExitCode::usage);
  CHECK_FALSE(snapshot_create_request("s", {"a"}, {}, 0, false).contains("storage"));
  CHECK(code_of([] { snapshot_create_request("s", {"a"}, {"/x:12Q"}, 0, false); }) == ExitCode::usage);
}

TEST_CASE("append_storage_request_carries_path_and_size") {
  nlohmann::json request = snapshot_append_storage_request("s1", "/diff/more:256M");
  CHECK(request == nlohmann::json({{"name", "s1"}, {"path", "/diff/more"}, {"size", 256ull << 20}}));
}

TEST_CASE("storage_ranges_are_sent_as_offset_and_length") {
  nlohmann::json request = snapshot_append_storage_request("s1", "/dev/sdz:10G+2G");
  CHECK(request ==
        nlohmann::json(
            {{"name", "s1"}, {"path", "/dev/sdz"}, {"offset", 10ull << 30}, {"length", 2ull << 30}}));
  request = snapshot_create_request("s1", {"a"}, {"/dev/sdz:0+1G", "/dev/sdz:1G+1G", "/dev/a:b:"}, 0, false);
  CHECK(request["storage"][0] ==
        nlohmann::json({{"path", "/dev/sdz"}, {"offset", 0}, {"length", 1ull << 30}}));
  CHECK(request["storage"][1] ==
        nlohmann::json({{"path", "/dev/sdz"}, {"offset", 1ull << 30}, {"length", 1ull << 30}}));
  CHECK(request["storage"][2] == nlohmann::json({{"path", "/dev/a:b"}, {"size", 0}}));
}

TEST_CASE("storage_specs_that_are_not_sizes_are_usage_errors_in_words_never_file_names") {
  for (const char* spec : {"/x:-5M", "/x:1.5G", "/x:1G+", "/x:abc"}) {
    CAPTURE(spec);
    std::string message;
    try {
      snapshot_append_storage_request("s1", spec);
    } catch (const CliError& error) {
      CHECK(error.code() == ExitCode::usage);
      message = error.what();
    }
    CHECK(message.find(std::string("storage '") + spec + "'") != std::string::npos);
    CHECK(message.find("end the spec with ':'") != std::string::npos);
  }
}

TEST_CASE("storage_paths_are_sent_absolute_because_the_server_has_another_working_directory") {
  const std::string cwd = std::filesystem::current_path().string();
  nlohmann::json request = snapshot_append_storage_request("s1", "diff/../more.img:1M");
  CHECK(request["path"] == cwd + "/more.img");
  CHECK(server_path("/srv/./a.raw") == "/srv/a.raw");
  CHECK(server_path("") == "");
}

TEST_CASE("cbt_mark_dirty_requests_list_the_ranges_merged") {
  std::vector<nlohmann::json> requests = cbt_mark_dirty_requests(
      "disk", {parse_byte_range("1M+4096"), parse_byte_range("0+64K"), parse_byte_range("32K+64K")});
  REQUIRE(requests.size() == 1);
  CHECK(requests[0]["origin"] == "disk");
  CHECK(requests[0]["ranges"] ==
        nlohmann::json::parse(R"([{"offset":0,"length":98304},{"offset":1048576,"length":4096}])"));
  CHECK(code_of([] { cbt_mark_dirty_requests("disk", {}); }) == ExitCode::usage);
}

TEST_CASE("cbt_mark_dirty_requests_split_long_lists_below_the_control_line_limit") {
  std::vector<ByteRange> ranges;
  for (uint64_t i = 0; i < 40000; ++i) ranges.push_back({i * 2 * 4096, 4096});
  std::vector<nlohmann::json> requests = cbt_mark_dirty_requests("disk", ranges);
  REQUIRE(requests.size() == 3);
  size_t total = 0;
  for (const nlohmann::json& request : requests) {
    CHECK(request["ranges"].size() <= kMarkDirtyRangesPerRequest);
    CHECK(request.dump().size() + 1 < (1u << 20));  // the control protocol's line limit (docs/control.md)
    total += request["ranges"].size();
  }
  CHECK(total == 40000);
  CHECK(requests[2]["ranges"].back()["offset"] == 39999u * 2 * 4096);
}

TEST_CASE("range_lists_skip_blanks_and_comments_and_name_the_bad_line") {
  std::istringstream good("# changed by the guest agent\n0+4K\n\n  1M+64K  \r\n");
  std::vector<ByteRange> ranges = read_byte_range_lines(good, "list.txt");
  REQUIRE(ranges.size() == 2);
  CHECK(ranges[1] == ByteRange{1u << 20, 64u << 10});
  std::istringstream bad("0+4K\n12\n");
  try {
    read_byte_range_lines(bad, "list.txt");
    FAIL("a malformed line was accepted");
  } catch (const CliError& error) {
    CHECK(error.code() == ExitCode::usage);
    CHECK(std::string(error.what()).find("list.txt:2: range '12' is not OFFSET+LENGTH") != std::string::npos);
  }
}

TEST_CASE("find_command_picks_the_longest_matching_command_words") {
  std::vector<CommandSpec> specs = all_command_specs();
  const CommandSpec* take = find_command(specs, {"snapshot", "take", "s1"});
  REQUIRE(take != nullptr);
  CHECK(take->words == std::vector<std::string>{"snapshot", "take"});
  CHECK(find_command(specs, {"snapshot"}) == nullptr);
  CHECK(find_command(specs, {"frobnicate"}) == nullptr);
  REQUIRE(find_command(specs, {"checkpoints", "disk"}) != nullptr);
}

TEST_CASE("every_command_of_issue_5_is_registered") {
  std::vector<CommandSpec> specs = all_command_specs();
  for (std::vector<std::string> words : std::vector<std::vector<std::string>>{{"version"},
                                                                              {"origins"},
                                                                              {"origin", "attach"},
                                                                              {"origin", "detach"},
                                                                              {"cbt", "info"},
                                                                              {"cbt", "map"},
                                                                              {"cbt", "mark-dirty"},
                                                                              {"cbt", "reset"},
                                                                              {"checkpoints"},
                                                                              {"snapshot", "create"},
                                                                              {"snapshot", "add"},
                                                                              {"snapshot", "remove"},
                                                                              {"snapshot", "take"},
                                                                              {"snapshot", "append-storage"},
                                                                              {"snapshot", "info"},
                                                                              {"snapshot", "list"},
                                                                              {"snapshot", "destroy"},
                                                                              {"events"},
                                                                              {"watch-storage"},
                                                                              {"backup"},
                                                                              {"checkpoint", "delete"}}) {
    CAPTURE(words.front());
    const CommandSpec* spec = find_command(specs, words);
    REQUIRE(spec != nullptr);
    CHECK(spec->words == words);
  }
}

TEST_CASE("parse_size_argument_names_the_option_on_errors") {
  CHECK(parse_size_argument("--step", "64M") == 64ull << 20);
  try {
    parse_size_argument("--step", "lots");
    FAIL("accepted");
  } catch (const CliError& error) {
    CHECK(error.code() == ExitCode::usage);
    CHECK(std::string(error.what()).find("--step") == 0);
  }
}
