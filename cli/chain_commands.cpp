// SPDX-License-Identifier: BSD-3-Clause
// chain_commands.cpp — backup verify, backup prune and backup list: the command lines, reports and tables
// around chain_verify.cpp, chain_prune.cpp and the manifest.
#include "chain_commands.h"

#include <cstdio>

#include <unistd.h>

#include "chain_directory.h"
#include "chain_prune.h"
#include "chain_verify.h"
#include "exit_codes.h"
#include "private_files.h"
#include "progress_bar.h"
#include "table.h"

namespace po = boost::program_options;

namespace nbdsnap::cli {

namespace {

std::string share_cell(uint64_t bytes, uint64_t size) {
  if (size == 0) return "-";
  char text[16];
  std::snprintf(text, sizeof(text), "%.1f%%", 100.0 * static_cast<double>(bytes) / static_cast<double>(size));
  return text;
}

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += (text.empty() ? "" : ", ") + name;
  return text.empty() ? "none" : text;
}

int run_verify(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("backup verify DIR [--point NAME] [--progress FD]");
  args.options()("point", po::value<std::string>()->value_name("NAME"),
                 "check this point (or checkpoint) and the points it is built on; default: every point")(
      "progress", po::value<std::string>()->value_name("FD"),
      "write progress lines \"N/100\" to file descriptor FD (as nbdcopy)");
  args.positional("DIR", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  const int progress_fd = args.has("progress") ? parse_progress_fd(args.text("progress")) : -1;
  ChainDirectory chain(args.text("DIR"), /*exclusive=*/false, /*create=*/false, /*must_hold_chain=*/true,
                       kPrivateFileMode);
  MachineProgress machine(progress_fd, 0);
  const bool terminal = ::isatty(STDERR_FILENO) == 1 && progress_fd < 0;
  std::vector<PointCheck> checks = verify_chain(chain, args.text("point"), terminal, &machine);
  machine.finish();
  std::vector<std::string> damaged;
  std::vector<std::string> unfinished;
  for (const PointCheck& check : checks) {
    if (!check.problem.empty()) damaged.push_back(check.point);
    if (!check.unfinished.empty()) unfinished.push_back(check.point);
  }
  if (context.json()) {
    nlohmann::json points = nlohmann::json::array();
    for (const PointCheck& check : checks) {
      points.push_back({{"point", check.point},
                        {"file", check.file},
                        {"ok", check.problem.empty()},
                        {"problem", check.problem},
                        {"unfinished_prune", check.unfinished}});
    }
    context.print_json(
        {{"directory", chain.path()}, {"ok", damaged.empty() && unfinished.empty()}, {"points", points}});
  } else {
    Table table({{"POINT"}, {"FILE"}, {"RESULT"}});
    for (const PointCheck& check : checks) {
      table.add_row(
          {check.point, check.file,
           !check.problem.empty() ? check.problem : (check.unfinished.empty() ? "ok" : check.unfinished)});
    }
    context.out() << table.render();
  }
  if (damaged.empty() && unfinished.empty()) return 0;
  context.out().flush();
  if (damaged.empty()) {
    throw CliError(ExitCode::server_error, "backup verify: no damage, but a prune did not finish (points " +
                                               joined(unfinished) + "); run " + finish_prune_command(chain) +
                                               " to finish it");
  }
  throw CliError(ExitCode::server_error, "backup verify: " + std::to_string(damaged.size()) + " of " +
                                             std::to_string(checks.size()) +
                                             " point(s) damaged or unusable: " + joined(damaged));
}

int run_prune(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("backup prune DIR --keep N");
  args.options()("keep", po::value<std::string>()->value_name("N"),
                 "how many of the newest complete points to keep (1..1000000)");
  args.positional("DIR", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  if (!args.has("keep")) usage_error("backup prune needs --keep N, N 1..1000000");
  const auto keep = static_cast<unsigned>(args.number("keep", 1, 1'000'000));
  ChainDirectory chain(args.text("DIR"), /*exclusive=*/true, /*create=*/false, /*must_hold_chain=*/true,
                       kPrivateFileMode);
  PruneResult result = prune_chain(chain, keep);
  if (context.json()) {
    context.print_json({{"directory", chain.path()},
                        {"removed", result.removed},
                        {"merged_into", result.merged_into},
                        {"finished_unfinished_prune", result.finished_unfinished},
                        {"kept", result.kept}});
    return 0;
  }
  KeyValueList list;
  if (result.finished_unfinished) list.add("finished", "a prune that did not finish");
  list.add("removed", joined(result.removed));
  list.add("merged", result.merged_into.empty()
                         ? "nothing (the oldest kept point stands alone)"
                         : "the removed points it was built on into " + result.merged_into);
  list.add("kept", joined(result.kept));
  context.out() << list.render();
  return 0;
}

int run_chain_list(Context& context, const std::vector<std::string>& words) {
  CommandArgs args("backup list DIR");
  args.positional("DIR", 1);
  if (!parse_or_show_help(context, args, words)) return 0;
  ChainDirectory chain(args.text("DIR"), /*exclusive=*/false, /*create=*/false, /*must_hold_chain=*/true,
                       kPrivateFileMode);
  if (context.json()) {
    context.print_json(chain_manifest_to_json(chain.manifest()));
  } else {
    context.out() << format_chain_table(chain.manifest());
  }
  return 0;
}

}  // namespace

std::vector<CommandSpec> chain_command_specs() {
  return {
      {{"backup", "verify"},
       "backup verify DIR [--point NAME] [--progress FD]",
       "check the files of a qcow2 backup chain against its manifest and with qemu-img check",
       run_verify},
      {{"backup", "prune"},
       "backup prune DIR --keep N",
       "remove all but the newest N points of a chain (merging into the oldest kept one)",
       run_prune},
      {{"backup", "list"},
       "backup list DIR",
       "list the restore points of a qcow2 backup chain",
       run_chain_list},
  };
}

std::string format_chain_table(const ChainManifest& manifest) {
  Table table({{"POINT"},
               {"CHECKPOINT"},
               {"TIME"},
               {"BYTES", Align::right},
               {"SHARE", Align::right},
               {"BASE"},
               {"STATE"}});
  for (const ChainPoint& point : manifest.points) {
    const int64_t when = point.completed_unix_ms != 0 ? point.completed_unix_ms : point.started_unix_ms;
    std::string base = point.backing.empty()
                           ? (point.merged.empty() ? "-" : "- (merged " + joined(point.merged) + ")")
                           : point.backing;
    table.add_row({point.name, or_dash(point.checkpoint), time_cell(when), size_cell(point.bytes),
                   share_cell(point.bytes, point.size), base, point.state});
  }
  return table.render();
}

}  // namespace nbdsnap::cli
