// SPDX-License-Identifier: BSD-3-Clause
// output_format_test.cpp — the human-readable forms of control replies, progress lines and copy pieces.
#include <doctest/doctest.h>

#include "cbt_commands.h"
#include "events_commands.h"
#include "image_copier.h"
#include "origin_commands.h"
#include "progress_bar.h"
#include "snapshot_commands.h"
#include "table.h"

using namespace nbdsnap::cli;

TEST_CASE("origin_table_shows_one_row_per_origin") {
  auto origins = nlohmann::json::parse(R"([
    {"name":"disk","size":268435456,"read_only":false,"generation":"g-1",
     "change_number":3,"snapshot":"s1","clients":2},
    {"name":"db","size":1024,"read_only":true,"generation":"g-2",
     "change_number":1,"snapshot":"","clients":0}])");
  std::string table = format_origin_table(origins);
  CHECK(table.rfind("NAME", 0) == 0);
  CHECK(table.find("disk  256.0 MiB  no   g-1") != std::string::npos);
  CHECK(table.find("s1") != std::string::npos);
  CHECK(std::count(table.begin(), table.end(), '\n') == 3);
}

TEST_CASE("cbt_map_lists_ranges_and_a_total") {
  auto reply = nlohmann::json::parse(
      R"({"generation":"g","change_number":4,"block_size":65536,"ranges":[{"offset":0,"length":65536},{"offset":131072,"length":131072}]})");
  std::string text = format_cbt_map(reply);
  CHECK(text.find("131072  131072  262144") != std::string::npos);
  CHECK(text.find("2 range(s), 192.0 KiB changed (generation g, change number 4") != std::string::npos);
}

TEST_CASE("cbt_info_and_checkpoints") {
  auto cbt = nlohmann::json::parse(
      R"({"origin":"disk","generation":"g","change_number":2,"block_size":65536,"block_count":16,"device_size":1048576,"checkpoints":{"s1":1}})");
  CHECK(format_cbt_info(cbt).find("checkpoints:    s1=1") != std::string::npos);
  auto checkpoints = nlohmann::json::parse(
      R"({"generation":"g","checkpoints":[{"name":"s1","number":1,"taken_unix_ms":0},{"name":"s2","number":2}]})");
  CHECK(format_checkpoints(checkpoints) ==
        "NAME  NUMBER  TAKEN  GENERATION\ns1         1  -      g\ns2         2  -      g\n");
  checkpoints["checkpoints"][1]["taken_unix_ms"] = 1764160000000;
  CHECK(format_checkpoints(checkpoints).find("s2         2  " + time_cell(1764160000000) + "  g\n") !=
        std::string::npos);
}

TEST_CASE("cbt_raw_map_lists_runs_with_offsets_and_what_the_numbers_mean") {
  auto reply = nlohmann::json::parse(R"({"origin":"disk","snapshot":"","generation":"g","change_number":3,
    "block_size":65536,"device_size":300000,"offset":0,"length":300000,"runs":[[0,2],[2,1],[0,2]],
    "checkpoints":[{"name":"s1","number":1},{"name":"s2","number":2}],"next_offset":300000,"more":false})");
  const std::string text = format_cbt_raw_map(reply);
  CHECK(text.find("OFFSET  LENGTH  BLOCKS  NUMBER\n") == 0);
  CHECK(text.find("     0  131072       2       0\n") != std::string::npos);
  CHECK(text.find("131072   65536       1       2\n") != std::string::npos);
  CHECK(text.find("196608  103392       2       0\n") != std::string::npos);  // the last block is partial
  CHECK(text.find("5 block(s) of 64.0 KiB in 3 run(s), live map (generation g, change number 3)") !=
        std::string::npos);
  CHECK(text.find("(s1=1, s2=2)") != std::string::npos);
}

TEST_CASE("cbt_raw_map_offsets_never_wrap_for_huge_run_counts") {
  // 2^48 blocks of 64 KiB are 2^64 bytes: the product wrapped to 0 and the next run's offset went back.
  auto reply = nlohmann::json::parse(R"({"origin":"disk","snapshot":"","generation":"g","change_number":1,
    "block_size":65536,"device_size":9223372036854775807,"offset":0,"length":9223372036854775807,
    "runs":[[1,281474976710656],[0,1]],"checkpoints":[],"next_offset":9223372036854775807,"more":false})");
  const std::string text = format_cbt_raw_map(reply);
  CHECK(text.find("                  0  9223372036854775807  281474976710656       1\n") !=
        std::string::npos);
  CHECK(text.find("9223372036854775807                    0                1       0\n") !=
        std::string::npos);
}

TEST_CASE("snapshot_info_shows_state_images_and_storage") {
  auto snapshot = nlohmann::json::parse(R"({"name":"s1","state":"taken","writable":false,"origins":["a","b"],
    "images":[{"origin":"a","export":"a@s1","uri":"nbd+unix:///a@s1?socket=/x","clients":2}],
    "storage":[{"path":"/d/s1","offset":0,"size":1048576,"created":true},
               {"path":"/dev/sdz","offset":1073741824,"size":2097152,"created":false}],
    "storage_total":3145728,"storage_used":65536,"storage_limit":0,"chunks_copied":1,"memory_bytes":10,
    "corruption_reason":"","taken_unix_ms":1764160000000})");
  std::string text = format_snapshot(snapshot);
  CHECK(text.find("state:          taken") != std::string::npos);
  CHECK(text.find("origins:        a,b") != std::string::npos);
  CHECK(text.find("storage used:   64.0 KiB / 3.0 MiB") != std::string::npos);
  CHECK(text.find("EXPORT  CLIENTS  URI") != std::string::npos);
  CHECK(text.find("a@s1          2  nbd+unix:///a@s1?socket=/x") != std::string::npos);
  CHECK(text.find("/d/s1              0  1.0 MiB  yes") != std::string::npos);
  CHECK(text.find("/dev/sdz  1073741824  2.0 MiB  no") != std::string::npos);
  std::string table = format_snapshot_table(nlohmann::json::array({snapshot}));
  CHECK(table.find("s1    taken  a,b") != std::string::npos);
}

TEST_CASE("event_lines_show_type_specific_details") {
  auto low = nlohmann::json::parse(
      R"({"sequence":7,"time_unix_ms":0,"type":"low_free_space","snapshot":"s1","origin":"","requested_bytes":67108864})");
  std::string line = format_event_line(low);
  CHECK(line.rfind("7 ", 0) == 0);
  CHECK(line.find("low_free_space") != std::string::npos);
  CHECK(line.find("requested 64.0 MiB\n") != std::string::npos);
  auto appended =
      nlohmann::json::parse(R"({"sequence":8,"type":"storage_appended","snapshot":"s1","bytes":1048576})");
  CHECK(format_event_line(appended).find("+1.0 MiB") != std::string::npos);
  CHECK(format_event_header().rfind("SEQ", 0) == 0);
}

TEST_CASE("a corrupted snapshot shows each failed origin's errno with its text, and so does the event") {
  auto snapshot = nlohmann::json::parse(R"({"name":"s1","state":"corrupted","origins":["a","b"],
    "corruption_reason":"difference storage is full: 1.0 MiB of 1.0 MiB in 1 area(s) hold copied chunks",
    "origin_errors":[{"origin":"a","errno":28,"error":"No space left on device",
                      "reason":"difference storage is full: 1.0 MiB of 1.0 MiB in 1 area(s) hold copied chunks"}]})");
  const std::string text = format_snapshot(snapshot);
  const auto line = text.find("error of a:");
  REQUIRE(line != std::string::npos);
  CHECK(text.find("errno 28 (No space left on device): difference storage is full", line) !=
        std::string::npos);
  CHECK(text.find("error of b") == std::string::npos);
  auto event =
      nlohmann::json::parse(R"({"sequence":9,"type":"corrupted","snapshot":"s1","origin":"a","errno":5,
    "error":"Input/output error","reason":"copy-on-write read of the origin failed: read: Input/output error"})");
  CHECK(format_event_line(event).find(
            "errno 5 (Input/output error): copy-on-write read of the origin failed") != std::string::npos);
}

TEST_CASE("progress_line_has_percent_sizes_rate_and_eta") {
  std::string line = render_progress_line("full backup", 50 << 20, 100 << 20, 1.0, 120);
  CHECK(line.find(" 50%") != std::string::npos);
  CHECK(line.find("50.0 MiB / 100.0 MiB") != std::string::npos);
  CHECK(line.find("50.0 MiB/s") != std::string::npos);
  CHECK(line.find("ETA 0:01") != std::string::npos);
  CHECK(line.find("[####") != std::string::npos);
  CHECK(render_progress_line("x", 0, 0, 0, 120).find("100%") != std::string::npos);
  CHECK(format_duration(3725) == "1:02:05");
}

TEST_CASE("split_into_pieces_cuts_ranges_at_the_request_size") {
  std::vector<CopyPiece> pieces = split_into_pieces({{0, 10}, {100, 4}}, 4);
  REQUIRE(pieces.size() == 4);
  CHECK(pieces[0].offset == 0);
  CHECK(pieces[2].offset == 8);
  CHECK(pieces[2].length == 2);
  CHECK(pieces[3].offset == 100);
  CHECK(pieces[3].length == 4);
}
