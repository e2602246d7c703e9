// SPDX-License-Identifier: BSD-3-Clause
// nbdkit_command_line_test.cpp — telling nbdkit -o from its arguments, as its getopt_long reads them.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "nbdkit_command_line.h"

using namespace nbdsnap;

namespace {
bool oldstyle(std::vector<std::string> words) {
  words.insert(words.begin(), "nbdkit");
  return nbdkit_arguments_ask_oldstyle(words);
}
}  // namespace

TEST_CASE("nbdkit_is_newstyle_unless_told_otherwise") {
  CHECK_FALSE(oldstyle({}));
  CHECK_FALSE(oldstyle({"-f", "-U", "/run/nbd.sock", "--filter=nbdsnap", "file", "disk.img"}));
  CHECK_FALSE(oldstyle({"-n", "file", "disk.img"}));
}

TEST_CASE("dash_o_anywhere_before_a_double_dash_asks_for_oldstyle") {
  CHECK(oldstyle({"-o", "file", "disk.img"}));
  CHECK(oldstyle({"--oldstyle", "file", "disk.img"}));
  CHECK(oldstyle({"--old-style", "file", "disk.img"}));
  CHECK(oldstyle({"-fvo", "file", "disk.img"}));            // a cluster of short options
  CHECK(oldstyle({"-f", "file", "disk.img", "-o"}));        // after the plugin: getopt permutes
  CHECK_FALSE(oldstyle({"file", "--", "-o"}));              // the plugin's own words
  CHECK_FALSE(oldstyle({"-o", "-n", "file", "disk.img"}));  // the last one wins
  CHECK(oldstyle({"--newstyle", "--oldstyle", "memory", "1M"}));
}

TEST_CASE("the_arguments_of_options_are_not_options") {
  CHECK_FALSE(oldstyle({"-U", "-o", "file", "disk.img"}));  // a socket named "-o"
  CHECK_FALSE(oldstyle({"-e", "-o", "file", "disk.img"}));  // an export named "-o"
  CHECK_FALSE(oldstyle({"--pidfile", "-o", "memory", "1M"}));
  CHECK_FALSE(oldstyle({"-Uo", "memory", "1M"}));  // -U with the argument "o"
  CHECK_FALSE(oldstyle({"-po", "memory", "1M"}));  // -p with the argument "o"
  CHECK(oldstyle({"--unix=-x", "-o", "memory", "1M"}));
  CHECK(oldstyle({"--run", "nbdinfo -o", "-o", "memory", "1M"}));
  CHECK_FALSE(oldstyle({"--run", "-o", "memory", "1M"}));
  CHECK(oldstyle({"-fU", "sock", "-o", "memory", "1M"}));
}
