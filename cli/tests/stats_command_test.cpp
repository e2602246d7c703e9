// SPDX-License-Identifier: BSD-3-Clause
// stats_command_test.cpp — `nbdsnap stats` output: the Prometheus text (families, HELP/TYPE order, _total
// counters, seconds as floats, escaped labels) and the tables.
#include <doctest/doctest.h>

#include "prometheus_text.h"
#include "stats_command.h"

using namespace nbdsnap::cli;

namespace {

nlohmann::json sample_stats(const std::string& snapshot) {
  return {{"origins",
           {{{"name", "disk0"},
             {"writes", 3},
             {"bytes_written", 12288},
             {"reads", 1},
             {"bytes_read", 4096},
             {"chunks_copied", 2},
             {"bytes_copied", 524288},
             {"copy_on_write_ns", 1000000250},
             {"cbt_blocks_marked", 3},
             {"clients", 1}}}},
          {"snapshots",
           {{{"name", snapshot},
             {"state", "corrupted"},
             {"storage_total", 1 << 20},
             {"storage_used", 524288},
             {"storage_free", 524288},
             {"storage_limit", 0},
             {"images",
              {{{"origin", "disk0"},
                {"export", "disk0@" + snapshot},
                {"reads", 5},
                {"bytes_read", 20480},
                {"clients", 0}}}}}}}};
}

}  // namespace

TEST_CASE("label values escape backslash, double quote and line feed, nothing else") {
  CHECK(escape_label_value("plain name") == "plain name");
  CHECK(escape_label_value("a\\b") == "a\\\\b");
  CHECK(escape_label_value("say \"hi\"") == "say \\\"hi\\\"");
  CHECK(escape_label_value("two\nlines") == "two\\nlines");
}

TEST_CASE("prometheus text has HELP and TYPE before the samples of each family") {
  const std::string text = format_prometheus(sample_stats("s1"));
  const auto help = text.find("# HELP nbdsnap_origin_writes_total ");
  const auto type = text.find("# TYPE nbdsnap_origin_writes_total counter\n");
  const auto sample = text.find("nbdsnap_origin_writes_total{origin=\"disk0\"} 3\n");
  REQUIRE(help != std::string::npos);
  REQUIRE(type != std::string::npos);
  REQUIRE(sample != std::string::npos);
  CHECK(help < type);
  CHECK(type < sample);
  CHECK(text.back() == '\n');
}

TEST_CASE("prometheus text gives copy-on-write time in seconds with every digit") {
  const std::string text = format_prometheus(sample_stats("s1"));
  CHECK(text.find("nbdsnap_origin_copy_on_write_seconds_total{origin=\"disk0\"} 1.000000250\n") !=
        std::string::npos);
  CHECK(text.find("nbdsnap_origin_copied_bytes_total{origin=\"disk0\"} 524288\n") != std::string::npos);
  CHECK(text.find("nbdsnap_snapshot_corrupted{snapshot=\"s1\"} 1\n") != std::string::npos);
}

TEST_CASE("prometheus text escapes a snapshot name with a quote, a backslash and a line feed") {
  const std::string text = format_prometheus(sample_stats("q\"b\\s\nl"));
  CHECK(text.find("nbdsnap_image_read_bytes_total{origin=\"disk0\",snapshot=\"q\\\"b\\\\s\\nl\"} 20480\n") !=
        std::string::npos);
  CHECK(text.find("s\nl") == std::string::npos);  // no raw line feed inside a sample
}

TEST_CASE("every counter family ends in _total and every byte family names bytes") {
  const std::string text = format_prometheus(sample_stats("s1"));
  size_t at = 0;
  while ((at = text.find("# TYPE ", at)) != std::string::npos) {
    const auto end = text.find('\n', at);
    const std::string line = text.substr(at, end - at);
    if (line.ends_with(" counter")) CHECK_MESSAGE(line.find("_total ") != std::string::npos, line);
    at = end;
  }
}

TEST_CASE("prometheus text of a server without origins or snapshots still declares every family") {
  const std::string text = format_prometheus(nlohmann::json::object());
  CHECK(text.find("# TYPE nbdsnap_origin_writes_total counter") != std::string::npos);
  CHECK(text.find("{") == std::string::npos);
}

TEST_CASE("stats tables list origins, snapshots and images") {
  const std::string text = format_stats_tables(sample_stats("s1"));
  CHECK(text.find("ORIGIN") != std::string::npos);
  CHECK(text.find("disk0@s1") != std::string::npos);
  CHECK(text.find("1.000 s") != std::string::npos);
  CHECK(text.find("corrupted") != std::string::npos);
}
