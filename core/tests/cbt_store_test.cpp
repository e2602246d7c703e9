// SPDX-License-Identifier: BSD-3-Clause
// cbt_store_test.cpp — saving and loading CBT state: only a clean state of the same device size is loaded.
#include "cbt_store.h"

#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <set>

#include <nlohmann/json.hpp>

#include "object_file_name.h"
#include "test_support.h"

using namespace nbdsnap;
using nbdsnap::test::TempDir;

namespace {

constexpr uint64_t kCbtBlock = 64 << 10;
constexpr uint64_t kDevice = 20 * kCbtBlock + 4096;

CbtState sample_state() {
  Cbt cbt(kDevice, kCbtBlock);
  cbt.mark_dirty(0, 1);
  cbt.freeze("monday");
  cbt.mark_dirty(3 * kCbtBlock, 2 * kCbtBlock);
  cbt.freeze("tuesday");
  cbt.mark_dirty(20 * kCbtBlock, 1);
  CbtState state = cbt.state();
  state.device_fingerprint = "file 2049:12 size 1314816 mtime 1764160000.5";
  return state;
}

void check_same(const CbtState& a, const CbtState& b) {
  CHECK(a.generation == b.generation);
  CHECK(a.number == b.number);
  CHECK(a.block_size == b.block_size);
  CHECK(a.device_size == b.device_size);
  CHECK(a.map == b.map);
  CHECK(a.checkpoints == b.checkpoints);
  CHECK(a.dropped == b.dropped);
  CHECK(a.device_fingerprint == b.device_fingerprint);
}

// The one file a store wrote in `dir` (whatever it is named).
std::filesystem::path only_file(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) files.push_back(entry.path());
  REQUIRE(files.size() == 1);
  return files[0];
}

}  // namespace

TEST_CASE("a cleanly saved cbt state loads back identical") {
  TempDir dir;
  CbtStore store(dir.path().string());
  CHECK(store.enabled());
  const CbtState saved = sample_state();
  REQUIRE_OK(store.save("disk0", saved, true));
  CHECK(std::filesystem::exists(dir.file("disk0.cbt")));
  CbtState loaded;
  REQUIRE(store.load("disk0", kDevice, loaded) == CbtLoadResult::loaded);
  check_same(saved, loaded);
}

TEST_CASE("saving again replaces the previous state") {
  TempDir dir;
  CbtStore store(dir.path().string());
  CbtState first = sample_state();
  REQUIRE_OK(store.save("disk0", first, true));
  Cbt cbt(first);
  cbt.mark_dirty(10 * kCbtBlock, 1);
  cbt.freeze("wednesday");
  const CbtState second = cbt.state();
  REQUIRE_OK(store.save("disk0", second, true));
  CbtState loaded;
  REQUIRE(store.load("disk0", kDevice, loaded) == CbtLoadResult::loaded);
  check_same(second, loaded);
  // No temporary files are left beside the state.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    (void)entry;
    ++files;
  }
  CHECK(files == 1);
}

TEST_CASE("a state saved while in use loads as unclean") {
  TempDir dir;
  CbtStore store(dir.path().string());
  REQUIRE_OK(store.save("disk0", sample_state(), false));
  CbtState loaded;
  CHECK(store.load("disk0", kDevice, loaded) == CbtLoadResult::unclean);
}

TEST_CASE("a state saved for another device size loads as mismatch") {
  TempDir dir;
  CbtStore store(dir.path().string());
  REQUIRE_OK(store.save("disk0", sample_state(), true));
  CbtState loaded;
  CHECK(store.load("disk0", kDevice + 512, loaded) == CbtLoadResult::mismatch);
  CHECK(store.load("disk0", kDevice - 4096, loaded) == CbtLoadResult::mismatch);
}

TEST_CASE("a garbage state file loads as damaged") {
  TempDir dir;
  CbtStore store(dir.path().string());
  {
    std::ofstream out(dir.file("disk0.cbt"), std::ios::binary);
    out << "this is not a cbt state file\n" << std::string(1000, '\x7f');
  }
  CbtState loaded;
  CHECK(store.load("disk0", kDevice, loaded) == CbtLoadResult::damaged);
}

TEST_CASE("an empty state file loads as damaged") {
  TempDir dir;
  CbtStore store(dir.path().string());
  { std::ofstream out(dir.file("disk0.cbt"), std::ios::binary); }
  CbtState loaded;
  CHECK(store.load("disk0", kDevice, loaded) == CbtLoadResult::damaged);
}

TEST_CASE("a truncated state file loads as damaged") {
  TempDir dir;
  CbtStore store(dir.path().string());
  REQUIRE_OK(store.save("disk0", sample_state(), true));
  const auto path = dir.file("disk0.cbt");
  const auto full = std::filesystem::file_size(path);
  REQUIRE(full > 8);
  std::filesystem::resize_file(path, full - 5);
  CbtState loaded;
  CHECK(store.load("disk0", kDevice, loaded) == CbtLoadResult::damaged);
}

TEST_CASE("a missing state file loads as missing, also after remove") {
  TempDir dir;
  CbtStore store(dir.path().string());
  CbtState loaded;
  CHECK(store.load("disk0", kDevice, loaded) == CbtLoadResult::missing);
  REQUIRE_OK(store.save("disk0", sample_state(), true));
  REQUIRE_OK(store.remove("disk0"));
  CHECK(store.load("disk0", kDevice, loaded) == CbtLoadResult::missing);
}

TEST_CASE("origins have separate state files") {
  TempDir dir;
  CbtStore store(dir.path().string());
  const CbtState a = sample_state();
  const CbtState b = sample_state();
  REQUIRE_OK(store.save("a", a, true));
  REQUIRE_OK(store.save("b", b, false));
  CbtState loaded;
  REQUIRE(store.load("a", kDevice, loaded) == CbtLoadResult::loaded);
  check_same(a, loaded);
  CHECK(store.load("b", kDevice, loaded) == CbtLoadResult::unclean);
}

TEST_CASE("a store without a directory is disabled") {
  CbtStore store("");
  CHECK_FALSE(store.enabled());
}

TEST_CASE("load results have distinct names") {
  std::set<std::string> names;
  for (auto result : {CbtLoadResult::loaded, CbtLoadResult::missing, CbtLoadResult::unclean,
                      CbtLoadResult::mismatch, CbtLoadResult::damaged}) {
    const char* name = cbt_load_result_name(result);
    REQUIRE(name != nullptr);
    CHECK(std::string(name) != "");
    names.insert(name);
  }
  CHECK(names.size() == 5);
}

namespace {

// Rewrites the JSON header line of a state file with `edit` applied (the map bytes after it are kept).
template <typename Edit>
void edit_header(const std::string& path, Edit edit) {
  std::ifstream in(path, std::ios::binary);
  std::string header_line;
  REQUIRE(std::getline(in, header_line));
  const std::string map((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  auto header = nlohmann::json::parse(header_line);
  edit(header);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << header.dump() << '\n' << map;
}

}  // namespace

TEST_CASE("origins with names of every length up to 255 bytes save and load their state") {
  TempDir dir;
  CbtStore store(dir.path().string());
  const CbtState saved = sample_state();
  for (size_t length = 240; length <= 255; ++length) {
    const std::string name(length, 'o');
    INFO("origin name of " << length << " bytes");
    REQUIRE_OK(store.save(name, saved, true));
    CbtState loaded;
    REQUIRE(store.load(name, kDevice, loaded) == CbtLoadResult::loaded);
    check_same(saved, loaded);
  }
  // Names that fit keep their file name; longer ones have their own, shortened one each.
  CHECK(std::filesystem::exists(dir.file(std::string(247, 'o') + ".cbt")));
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    CHECK(entry.path().filename().string().size() <= 251);
    ++files;
  }
  CHECK(files == 16);
}

TEST_CASE("a state file holding another origin's name is not loaded") {
  TempDir dir;
  CbtStore store(dir.path().string());
  REQUIRE_OK(store.save("a", sample_state(), true));
  // As if two long names shared a hashed file name: the file found for "b" holds "a".
  std::filesystem::rename(dir.file("a.cbt"), dir.file("b.cbt"));
  CbtState loaded;
  CHECK(store.load("b", kDevice, loaded) == CbtLoadResult::missing);
  const std::string long_a(255, 'a'), long_b(255, 'b');
  REQUIRE_OK(store.save(long_a, sample_state(), true));
  std::filesystem::rename(dir.file(object_file_name(long_a, ".cbt")),
                          dir.file(object_file_name(long_b, ".cbt")));
  CHECK(store.load(long_b, kDevice, loaded) == CbtLoadResult::missing);
}

TEST_CASE("a state file of an earlier version, without the origin's name, still loads under its plain name") {
  TempDir dir;
  CbtStore store(dir.path().string());
  const CbtState saved = sample_state();
  REQUIRE_OK(store.save("disk0", saved, true));
  edit_header(dir.file("disk0.cbt"), [](nlohmann::json& header) { header.erase("origin"); });
  CbtState loaded;
  REQUIRE(store.load("disk0", kDevice, loaded) == CbtLoadResult::loaded);
  check_same(saved, loaded);
  // Earlier versions never wrote a hashed file name: such a file without a name is nobody's.
  const std::string long_name(255, 'l');
  REQUIRE_OK(store.save(long_name, saved, true));
  edit_header(dir.file(object_file_name(long_name, ".cbt")),
              [](nlohmann::json& header) { header.erase("origin"); });
  CHECK(store.load(long_name, kDevice, loaded) == CbtLoadResult::missing);
}

TEST_CASE("origin names that are not UTF-8 are kept apart in their state files") {
  TempDir dir;
  CbtStore store(dir.path().string());
  const std::string latin1 = "disk\xe9", other = std::string(250, 'x') + "\xff\xfe";
  REQUIRE_OK(store.save(latin1, sample_state(), true));
  REQUIRE_OK(store.save(other, sample_state(), true));
  CbtState loaded;
  CHECK(store.load(latin1, kDevice, loaded) == CbtLoadResult::loaded);
  CHECK(store.load(other, kDevice, loaded) == CbtLoadResult::loaded);
}

TEST_CASE("a state directory path that is too long fails as name_too_long, not as an I/O error") {
  TempDir dir;
  CbtStore store(dir.file(std::string(300, 'd')));
  CHECK_ERRC(store.save("disk0", sample_state(), false), Errc::name_too_long);
}

TEST_CASE("checkpoint take times and dropped checkpoints survive a save and load") {
  TempDir dir;
  CbtStore store(dir.path().string());
  Cbt cbt(kDevice, kCbtBlock, 2);
  cbt.freeze("monday", 1764000000000);
  cbt.freeze("tuesday", 1764086400000);
  cbt.freeze("wednesday", 1764172800000);  // monday is dropped: 2 kept
  const CbtState saved = cbt.state();
  REQUIRE(saved.dropped.size() == 1);
  REQUIRE_OK(store.save("disk0", saved, true));
  CbtState loaded;
  REQUIRE(store.load("disk0", kDevice, loaded) == CbtLoadResult::loaded);
  check_same(saved, loaded);
  CHECK(loaded.checkpoints.at("tuesday").taken_unix_ms == 1764086400000);
}

TEST_CASE("a format 1 state file (checkpoint numbers only) loads with unknown take times") {
  TempDir dir;
  CbtStore store(dir.path().string());
  const CbtState saved = sample_state();
  REQUIRE_OK(store.save("disk0", saved, true));
  // Rewrite the header as format 1 wrote it: version 1, checkpoints as name -> number, no dropped list.
  const auto path = only_file(dir.path());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t newline = bytes.find('\n');
  auto header = nlohmann::json::parse(bytes.substr(0, newline));
  header["version"] = 1;
  header["checkpoints"] = {{"monday", 1}, {"tuesday", 2}};
  header.erase("dropped_checkpoints");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << header.dump() << bytes.substr(newline);
  }
  CbtState loaded;
  REQUIRE(store.load("disk0", kDevice, loaded) == CbtLoadResult::loaded);
  CHECK(loaded.checkpoints == Checkpoints{{"monday", {1, 0}}, {"tuesday", {2, 0}}});
  CHECK(loaded.map == saved.map);
}
