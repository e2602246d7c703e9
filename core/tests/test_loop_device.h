// SPDX-License-Identifier: BSD-3-Clause
// test_loop_device.h — a loop device over a file for the unit tests that need a real block device (root and
// losetup(8); without them path() is empty and the test skips).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace nbdsnap::test {

// A loop device over a file (losetup -f --show), detached when this goes out of scope. path() is empty when
// none could be set up (not root, no loop driver, no free device): the test then skips.
class LoopDevice {
 public:
  explicit LoopDevice(const std::string& file, uint64_t offset = 0) {
    if (::geteuid() != 0) return;
    const std::string command = "losetup -f --show" +
                                (offset ? " -o " + std::to_string(offset) : std::string()) + " '" + file +
                                "' 2>/dev/null";
    FILE* out = ::popen(command.c_str(), "r");
    if (out == nullptr) return;
    char line[256] = {};
    const bool read = std::fgets(line, sizeof line, out) != nullptr;
    const int status = ::pclose(out);
    if (!read || status != 0) return;
    path_ = line;
    while (!path_.empty() && (path_.back() == '\n' || path_.back() == ' ')) path_.pop_back();
  }
  ~LoopDevice() {
    if (!path_.empty()) (void)std::system(("losetup -d '" + path_ + "' 2>/dev/null").c_str());
  }
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace nbdsnap::test
