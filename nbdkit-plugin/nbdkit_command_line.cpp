// SPDX-License-Identifier: BSD-3-Clause
// nbdkit_command_line.cpp — reading nbdkit's own options (see nbdkit_command_line.h).
#include "nbdkit_command_line.h"

#include <fstream>
#include <iterator>
#include <set>

namespace nbdsnap {
namespace {

// nbdkit 1.32's short options that take an argument (the next characters, or the next word): -D -e -g -i -P
// -p -t -U -u (nbdkit --help).
bool short_takes_argument(char option) {
  return std::string("DegiPptUu").find(option) != std::string::npos;
}

// Its long options that take an argument, which may be the next word when not given with '='.
bool long_takes_argument(const std::string& name) {
  static const std::set<std::string> kWithArgument = {"debug",
                                                      "exportname",
                                                      "export-name",
                                                      "filter",
                                                      "group",
                                                      "ipaddr",
                                                      "log",
                                                      "mask-handshake",
                                                      "pidfile",
                                                      "port",
                                                      "run",
                                                      "selinux-label",
                                                      "threads",
                                                      "tls",
                                                      "tls-certificates",
                                                      "tls-psk",
                                                      "unix",
                                                      "user"};
  return kWithArgument.count(name) != 0;
}

}  // namespace

bool nbdkit_arguments_ask_oldstyle(const std::vector<std::string>& argv) {
  bool oldstyle = false;
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& word = argv[i];
    if (word == "--") break;                          // the rest is the plugin's
    if (word.size() < 2 || word[0] != '-') continue;  // the plugin, its KEY=VALUE or bare value
    if (word[1] == '-') {
      const size_t equals = word.find('=');
      const std::string name = word.substr(2, equals == std::string::npos ? std::string::npos : equals - 2);
      if (name == "oldstyle" || name == "old-style") oldstyle = true;
      if (name == "newstyle" || name == "new-style") oldstyle = false;
      if (equals == std::string::npos && long_takes_argument(name)) ++i;
      continue;
    }
    for (size_t at = 1; at < word.size(); ++at) {
      const char option = word[at];
      if (option == 'o') oldstyle = true;
      if (option == 'n') oldstyle = false;
      if (short_takes_argument(option)) {
        if (at + 1 == word.size()) ++i;  // "-U" "sock"; "-Usock" holds its own
        break;
      }
    }
  }
  return oldstyle;
}

bool nbdkit_runs_oldstyle() {
  std::ifstream file("/proc/self/cmdline", std::ios::binary);
  if (!file) return false;
  const std::string all((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::vector<std::string> argv;
  size_t start = 0;
  for (size_t at = 0; at < all.size(); ++at) {
    if (all[at] != '\0') continue;
    argv.push_back(all.substr(start, at - start));
    start = at + 1;
  }
  if (start < all.size()) argv.push_back(all.substr(start));
  return nbdkit_arguments_ask_oldstyle(argv);
}

}  // namespace nbdsnap
