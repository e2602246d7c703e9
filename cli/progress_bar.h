// progress_bar.h — a one-line progress bar on a terminal (bytes, rate, ETA); silent when disabled.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace nbdsnap::cli {

// "LABEL [#####.....]  45%  115 MiB / 256 MiB  85.3 MiB/s  ETA 0:02" fitting in `width` columns (pure).
std::string render_progress_line(const std::string& label, uint64_t done, uint64_t total, double elapsed_seconds,
                                 unsigned width);
// "1:02:03" / "2:03" for a number of seconds.
std::string format_duration(double seconds);

class ProgressBar {
 public:
  // enabled: usually isatty(fileno(stream)). Redraws at most ten times a second.
  ProgressBar(std::string label, uint64_t total, bool enabled, std::FILE* stream = stderr);
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
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace nbdsnap::cli
