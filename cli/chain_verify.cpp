// SPDX-License-Identifier: BSD-3-Clause
// chain_verify.cpp — the checks of one chain file, in order of cost, and the chain order they run in.
#include "chain_verify.h"

#include <functional>
#include <map>
#include <optional>

#include <sys/stat.h>

#include "chain_prune.h"
#include "exit_codes.h"
#include "file_digest.h"
#include "progress_bar.h"
#include "qemu_tools.h"

namespace nbdsnap::cli {

std::string checksum_problem(const ChainDirectory& chain, const ChainPoint& point,
                             const std::function<void(uint64_t)>& progress) {
  const std::string path = chain.file_of(point);
  if (!path_exists(path)) return path + " is missing";
  // Every checksum this version knows, in its order of preference (file_digest.h): a manifest recording two
  // that disagree is damaged whichever is wrong (the file or the manifest), not fine because the preferred
  // one matches. Only the first counts towards the progress (the total is one read per file).
  std::map<DigestAlgorithm, std::string> known;
  for (const auto& [key, value] : point.checksums) {
    if (const std::optional<DigestAlgorithm> algorithm = digest_of_key(key)) known[*algorithm] = value;
  }
  if (known.empty()) {
    return "the manifest records no checksum of " + path +
           " that this version of nbdsnap knows (it knows file_xxh3_128 and file_sha256)";
  }
  bool first = true;
  for (const auto& [algorithm, recorded] : known) {
    std::string digest;
    try {
      digest = first ? file_digest(path, algorithm, progress) : file_digest(path, algorithm);
    } catch (const CliError& error) {
      return error.what();
    }
    if (digest != recorded) {
      return path + " is damaged: its " + digest_name(algorithm) + " is " + digest + ", the manifest says " +
             recorded;
    }
    first = false;
  }
  return {};
}

namespace {

uint64_t size_of(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 ? static_cast<uint64_t>(info.st_size) : 0;
}

// What is wrong with one point's own file, or "". With `base_damaged` only its checksum is checked: QEMU's
// checks open the backing chain, and a damaged base may be a FIFO, whose open blocks qemu-img for ever.
std::string check_point(const ChainDirectory& chain, const ChainPoint& point, bool base_damaged,
                        ProgressBar& bar) {
  if (point.state == "writing")
    return "unfinished: a backup that did not complete (the next backup removes it)";
  if (point.state != "complete") return "in an unknown state '" + point.state + "'";
  const std::string path = chain.file_of(point);
  if (std::string problem = checksum_problem(chain, point, [&](uint64_t bytes) { bar.add(bytes); });
      !problem.empty())
    return problem;
  if (base_damaged) return {};
  if (std::string findings = qemu_img_check(path); !findings.empty()) return path + ": " + findings;
  const QemuImageInfo info = qemu_img_info(path);
  std::string expected_backing;
  if (!point.backing.empty()) expected_backing = chain.point(point.backing).file;
  if (info.format != "qcow2") return path + " is not a qcow2 file (" + info.format + ")";
  if (info.backing_filename != expected_backing) {
    return path + " is an overlay of '" + info.backing_filename + "', the manifest says '" +
           expected_backing + "'";
  }
  if (!qcow2_holds_disk_of(info.virtual_size, point.size)) {
    return path + " holds a disk of " + std::to_string(info.virtual_size) + " bytes, the manifest says " +
           std::to_string(point.size);
  }
  return {};
}

// What an interrupted prune left of a point, or "": a point it marks "pruning" (still read by the kept point
// as its base while the merge is unfinished), and the kept point whose file already is the merge (renamed
// over it, standing alone) while the manifest still names its old base and checksum. Neither is damage:
// running the prune again finishes the work.
std::string unfinished_prune_of(const ChainDirectory& chain, const ChainPoint& point) {
  const std::string finish = ": run " + finish_prune_command(chain) + " to finish it";
  if (point.state == "pruning") return "being removed by a prune that did not finish" + finish;
  if (point.state != "complete" || point.backing.empty() || chain.point(point.backing).state != "pruning")
    return {};
  const std::string path = chain.file_of(point);
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) return {};
  if (!qemu_img_info(path).backing_filename.empty()) return {};  // not merged yet: checked as usual
  return "holds the points merged into it by a prune that did not finish" + finish;
}

}  // namespace

std::vector<PointCheck> verify_chain(const ChainDirectory& chain, const std::string& point_name,
                                     bool terminal, MachineProgress* machine) {
  std::vector<const ChainPoint*> points;
  if (point_name.empty()) {
    for (const ChainPoint& point : chain.manifest().points) points.push_back(&point);
  } else {
    points = backing_chain(chain.manifest(), chain.point(point_name));
  }
  uint64_t total = 0;
  for (const ChainPoint* point : points) total += size_of(chain.file_of(*point));
  std::vector<PointCheck> checks;
  std::map<std::string, std::string> damaged;  // point -> why
  ProgressBar bar("verify", total, terminal, stderr, machine);
  for (const ChainPoint* point : points) {  // oldest first: a base is checked before its overlays
    if (std::string unfinished = unfinished_prune_of(chain, *point); !unfinished.empty()) {
      checks.push_back({point->name, chain.file_of(*point), "", std::move(unfinished)});
      continue;
    }
    auto base = damaged.find(point->backing);
    PointCheck check{point->name, chain.file_of(*point),
                     check_point(chain, *point, base != damaged.end(), bar), ""};
    if (check.problem.empty() && base != damaged.end()) {
      check.problem = "built on point " + point->backing + ", which is damaged";
    }
    if (!check.problem.empty()) damaged[point->name] = check.problem;
    checks.push_back(std::move(check));
  }
  return checks;
}

}  // namespace nbdsnap::cli
