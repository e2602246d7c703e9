// SPDX-License-Identifier: BSD-3-Clause
// command_registry.cpp — the command table and the top-level help.
#include "command_registry.h"

#include <algorithm>

#include "backup_command.h"
#include "cbt_commands.h"
#include "chain_commands.h"
#include "events_commands.h"
#include "exit_codes.h"
#include "origin_commands.h"
#include "restore_command.h"
#include "snapshot_commands.h"
#include "stats_command.h"

namespace nbdsnap::cli {

std::vector<CommandSpec> all_command_specs() {
  std::vector<CommandSpec> specs;
  for (auto group : {origin_command_specs, cbt_command_specs, snapshot_command_specs, events_command_specs,
                     backup_command_specs, chain_command_specs, restore_command_specs, stats_command_specs}) {
    for (CommandSpec& spec : group()) specs.push_back(std::move(spec));
  }
  return specs;
}

const CommandSpec* find_command(const std::vector<CommandSpec>& specs,
                                const std::vector<std::string>& words) {
  const CommandSpec* best = nullptr;
  for (const CommandSpec& spec : specs) {
    if (spec.words.size() > words.size()) continue;
    if (!std::equal(spec.words.begin(), spec.words.end(), words.begin())) continue;
    if (best == nullptr || spec.words.size() > best->words.size()) best = &spec;
  }
  return best;
}

std::string general_help(const std::vector<CommandSpec>& specs) {
  std::string out =
      "Usage: nbdsnap [--control PATH] [--timeout SECONDS] [--json] COMMAND [ARGS...]\n"
      "Client of the nbdsnap control socket, and a backup agent reading snapshot images over NBD.\n\n"
      "Commands:\n";
  size_t width = 0;
  for (const CommandSpec& spec : specs) width = std::max(width, spec.synopsis.size());
  for (const CommandSpec& spec : specs) {
    out += "  " + spec.synopsis + "\n      " + spec.summary + "\n";
  }
  out +=
      "\nGlobal options:\n"
      "  --control PATH  control socket (default: $NBDSNAP_CONTROL, else /run/nbdsnap/control.sock)\n"
      "  --connect tls://[USER@]HOST:PORT\n"
      "                  nbdsnapd's remote control listener (also as --control or $NBDSNAP_CONTROL),\n"
      "                  with --tls-certificates DIR (ca-cert.pem, client-cert.pem, client-key.pem)\n"
      "                  or --tls-psk FILE (USER picks the key)\n"
      "  --timeout SECONDS\n"
      "                  give up on a server that does not answer within SECONDS (default 30): when\n"
      "                  connecting, in handshakes, for each control request and each NBD read\n"
      "  --json          print the server's replies as JSON, for scripts\n"
      "  --help, -h      this help; `nbdsnap COMMAND --help` shows a command's options\n"
      "  --version       print the client's version\n"
      "\nExit status: 0 ok, 1 the command failed (server error, hook failure), 2 usage error (also a\n"
      "control socket given for an NBD one or back), 3 not found, 4 I/O or connection error (also a "
      "timeout).\n";
  return out;
}

int dispatch_command(Context& context, const std::vector<std::string>& words,
                     const std::vector<CommandSpec>& specs) {
  if (words.empty()) {
    if (context.global().version) {
      context.out() << "nbdsnap " << NBDSNAP_VERSION << "\n";
      return 0;
    }
    if (context.global().help) {
      context.out() << general_help(specs);
      return 0;
    }
    usage_error("no command given; try nbdsnap --help");
  }
  const CommandSpec* spec = find_command(specs, words);
  if (spec == nullptr) {
    std::string known;
    for (const CommandSpec& candidate : specs) {
      if (candidate.words.front() == words.front()) known += "\n  nbdsnap " + candidate.synopsis;
    }
    if (!known.empty() && context.global().help && words.size() == 1) {
      context.out() << "Commands of nbdsnap " << words.front() << ":" << known << "\n";
      return 0;
    }
    if (!known.empty() && words.size() == 1)
      usage_error("'" + words.front() + "' needs a subcommand, one of:" + known);
    if (!known.empty())
      usage_error("unknown command '" + words.front() + " " + words[1] + "'; one of:" + known);
    usage_error("unknown command '" + words.front() + "'; try nbdsnap --help");
  }
  std::vector<std::string> rest(words.begin() + static_cast<long>(spec->words.size()), words.end());
  return spec->run(context, rest);
}

}  // namespace nbdsnap::cli
