// SPDX-License-Identifier: BSD-3-Clause
// object_file_name_test.cpp — file names made from origin and snapshot names: plain when they fit, hashed
// (and still fitting with the temporary suffix) when they do not, the same in every run.
#include "object_file_name.h"

#include <doctest/doctest.h>

#include <set>
#include <string>

#include "export_name.h"

using namespace nbdsnap;

namespace {

const char* const kSuffixes[] = {".cbt", ".nbdsnap-diff", ""};

// What every file name made by object_file_name must be, whatever the name.
void check_usable(const std::string& name, const std::string& suffix) {
  const std::string file = object_file_name(name, suffix);
  INFO("name of " << name.size() << " bytes, suffix '" << suffix << "': " << file);
  CHECK(file.size() + kTemporaryFileSuffix.size() <= kMaxFileNameBytes);
  CHECK(file.size() > suffix.size());
  CHECK(file.compare(file.size() - suffix.size(), suffix.size(), suffix) == 0);
  CHECK(file.find('/') == std::string::npos);
  CHECK(file.find('\0') == std::string::npos);
  CHECK(file != "." + suffix);
  CHECK(file[0] != '.');
  CHECK(file[0] != '-');
  CHECK(file == object_file_name(name, suffix));
}

}  // namespace

TEST_CASE("names that fit keep the file name earlier versions used") {
  CHECK(object_file_name("disk0", ".cbt") == "disk0.cbt");
  CHECK(object_file_name("nightly", ".nbdsnap-diff") == "nightly.nbdsnap-diff");
  CHECK(object_file_name("a b+c:d~é", ".cbt") == "a b+c:d~é.cbt");
  // 247 + ".cbt" + ".tmp" is exactly 255 bytes: the longest origin name whose CBT state earlier versions
  // saved.
  const std::string longest(247, 'x');
  CHECK(object_file_name(longest, ".cbt") == longest + ".cbt");
  CHECK(object_file_name_is_plain(longest, ".cbt"));
  CHECK_FALSE(object_file_name_is_plain(longest + "x", ".cbt"));
}

TEST_CASE("every name length from 1 to 255 bytes gives a file name that fits with the temporary suffix") {
  for (const std::string suffix : kSuffixes) {
    for (size_t length = 1; length <= 255; ++length) check_usable(std::string(length, 'n'), suffix);
  }
}

TEST_CASE("names too long for a plain file name are a readable prefix, '@' and a hash of the whole name") {
  const std::string name(255, 'x');
  const std::string file = object_file_name(name, ".cbt");
  CHECK(file.size() == kMaxFileNameBytes - kTemporaryFileSuffix.size());
  // The hash is FNV-1a 64 of the name: fixed here so a change of the rule cannot go unnoticed (a changed rule
  // loses every saved CBT state of a long-named origin).
  CHECK(file == std::string(230, 'x') + "@dff658324c99c7bf.cbt");
  // Names that differ only in their last byte, beyond the prefix, still get different files.
  std::set<std::string> files;
  for (char last = 'a'; last <= 'z'; ++last)
    files.insert(object_file_name(std::string(254, 'x') + last, ".cbt"));
  CHECK(files.size() == 26);
}

TEST_CASE("a hashed file name never equals a plain one") {
  // A valid object name cannot hold '@', so a plain file name never looks like a hashed one.
  const std::string hashed = object_file_name(std::string(255, 'x'), ".cbt");
  const std::string stem = hashed.substr(0, hashed.size() - 4);
  CHECK_FALSE(check_object_name("origin", stem).is_ok());
  CHECK(object_file_name(stem, ".cbt") != hashed);
}

TEST_CASE("every byte value, in and out of valid names, gives a usable file name") {
  for (int byte = 1; byte < 256; ++byte) {
    const char c = static_cast<char>(byte);
    for (const std::string suffix : kSuffixes) {
      check_usable(std::string(1, c), suffix);
      check_usable("disk" + std::string(1, c) + "0", suffix);
      check_usable(std::string(255, c), suffix);
      check_usable(std::string(100, 'a') + std::string(155, c), suffix);
    }
  }
  // Names an object may not have are never used as they are, even when short.
  CHECK(object_file_name("../etc", ".cbt").find('/') == std::string::npos);
  CHECK(object_file_name("a@b", ".cbt").substr(0, 4) == "a_b@");
  CHECK(object_file_name(".hidden", ".cbt").substr(0, 8) == "_hidden@");
  CHECK(object_file_name("-x", ".cbt").substr(0, 3) == "_x@");
  CHECK(object_file_name(std::string("a\nb"), ".cbt").substr(0, 4) == "a_b@");
}

TEST_CASE("the readable prefix never ends inside a UTF-8 character") {
  // 127 two-byte characters and one byte: 255 bytes; the prefix room (230 bytes for ".cbt") falls on a
  // character boundary, and one byte further it would not.
  std::string name;
  for (int i = 0; i < 127; ++i) name += "é";
  name += "a";
  CHECK(object_file_name(name, ".cbt") == name.substr(0, 230) + "@2bb1b407fcce52e8.cbt");
  const std::string odd_room =
      object_file_name(name, ".cbtx");  // room 229: the 115th character would be split
  CHECK(odd_room.substr(0, odd_room.find('@')) == name.substr(0, 228));
}
