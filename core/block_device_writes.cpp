// SPDX-License-Identifier: BSD-3-Clause
// block_device_writes.cpp — a block device's content fingerprint from the kernel's count of its writes.
#include "block_device_writes.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <sys/sysmacros.h>

#include "uuid.h"

namespace nbdsnap {

namespace {

std::string first_line(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

// The boot id of a fingerprint of block_device_fingerprint()'s counted form, else "".
std::string boot_of(const std::vector<std::string>& fingerprint) {
  return fingerprint.size() > 3 && fingerprint[0] == "block" && fingerprint[2] == "boot" ? fingerprint[3]
                                                                                         : "";
}

// What an uncounted fingerprint says in its parentheses, else "".
std::string uncounted_why(const std::string& fingerprint) {
  const auto open = fingerprint.find(" uncounted (");
  const auto close = fingerprint.rfind(") ");
  if (fingerprint.rfind("block ", 0) != 0 || open == std::string::npos || close == std::string::npos ||
      close < open) {
    return "";
  }
  return fingerprint.substr(open + 12, close - open - 12);
}

}  // namespace

std::string uncounted_block_device_fingerprint(dev_t rdev, const std::string& why) {
  return "block " + std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev)) + " uncounted (" + why +
         ") " + Uuid::random().to_string();
}

std::string block_device_fingerprint(dev_t rdev) {
  namespace fs = std::filesystem;
  const std::string number = std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev));
  const std::string name = "block " + number;
  const auto uncounted = [&](const std::string& why) {
    return uncounted_block_device_fingerprint(rdev, why);
  };
  const std::string boot = first_line("/proc/sys/kernel/random/boot_id");
  if (boot.empty() || boot.find(' ') != std::string::npos) return uncounted("no boot id in /proc");
  const fs::path sys = "/sys/dev/block/" + number;
  std::error_code error;
  // A partition has no queue of its own: its disk's (the directory above the partition's) counts for it.
  fs::path queue = sys / "queue";
  if (!fs::exists(queue, error) && fs::exists(sys / "partition", error)) {
    queue = fs::canonical(sys, error).parent_path() / "queue";
  }
  const std::string iostats = first_line(queue / "iostats");
  if (iostats == "0") return uncounted("the kernel's I/O statistics are off for it: queue/iostats is 0");
  const std::vector<std::string> fields = words(first_line(sys / "stat"));
  if (fields.size() < 7) return uncounted("no write counts in " + (sys / "stat").string());
  for (const std::string& field : fields) {
    if (field.find_first_not_of("0123456789") != std::string::npos) {
      return uncounted("no write counts in " + (sys / "stat").string());
    }
  }
  // Kernels before 4.18 have no discard fields: discards are not counted there.
  const std::string discarded = fields.size() >= 14 ? fields[13] : "-";
  return name + " boot " + boot + " sectors written " + fields[6] + " discarded " + discarded;
}

std::string fingerprint_change_reason(const std::string& saved, const std::string& now) {
  std::string generic = "the origin was changed while nothing tracked it";
  if (saved.rfind("block ", 0) != 0 && now.rfind("block ", 0) != 0) return generic;
  if (const std::string why = uncounted_why(now); !why.empty()) {
    return "the writes to its block device cannot be counted (" + why + "), so changes made while nothing " +
           "tracked it cannot be ruled out";
  }
  if (const std::string why = uncounted_why(saved); !why.empty()) {
    return "the writes to its block device could not be counted at its clean stop (" + why + ")";
  }
  const std::string saved_boot = boot_of(words(saved));
  const std::string now_boot = boot_of(words(now));
  if (!saved_boot.empty() && !now_boot.empty() && saved_boot != now_boot) {
    return "the machine restarted since its clean stop: writes to its block device meanwhile cannot be known";
  }
  return generic + " (the kernel counted writes to its block device since the clean stop)";
}

}  // namespace nbdsnap
