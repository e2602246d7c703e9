// SPDX-License-Identifier: BSD-3-Clause
// progress_bar.h — progress for people and programs: a one-line bar on a terminal (bytes, rate, ETA),
// silent when disabled, and --progress=FD lines for agents ("N/100\n", nbdcopy's --progress=FD convention).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace nbdsnap::cli {

// "LABEL [#####.....]  45%  115 MiB / 256 MiB  85.3 MiB/s  ETA 0:02" fitting in `width` columns (pure).
std::string render_progress_line(const std::string& label, uint64_t done, uint64_t total,
                                 double elapsed_seconds, unsigned width);
// "1:02:03" / "2:03" for a number of seconds.
std::string format_duration(double seconds);

// The percentage of done in total, 0..100 (100 when total is 0; pure).
int progress_percent(uint64_t done, uint64_t total);

// The whole command's progress as lines "N/100\n" written to a descriptor the caller opened (nbdcopy's
// --progress=FD): a line whenever the percentage grows, and "100/100" at the end. A descriptor that stops
// taking lines (closed pipe) is given up silently: progress never fails the command. fd < 0: off.
class MachineProgress {
 public:
  MachineProgress(int fd, uint64_t total) : fd_(fd), total_(total) {}
  MachineProgress(const MachineProgress&) = delete;
  MachineProgress& operator=(const MachineProgress&) = delete;
  void add(uint64_t bytes);
  // Writes "100/100" (once), whatever the bytes counted.
  void finish();

 private:
  void write_line(int percent);
  int fd_;
  uint64_t total_;
  uint64_t done_ = 0;
  int last_ = -1;
};

// Checks --progress FD: a number naming an open descriptor; else a usage error.
int parse_progress_fd(const std::string& text);

class ProgressBar {
 public:
  // enabled: usually isatty(fileno(stream)). Redraws at most ten times a second. Bytes added are also
  // counted by `machine` if given.
  ProgressBar(std::string label, uint64_t total, bool enabled, std::FILE* stream = stderr,
              MachineProgress* machine = nullptr);
  ~ProgressBar() { finish(); }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void add(uint64_t bytes);
  // Draws the final state and ends the line (once).
  void finish();

 private:
  void draw();
  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  bool enabled_;
  bool finished_ = false;
  std::FILE* stream_;
  MachineProgress* machine_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace nbdsnap::cli
