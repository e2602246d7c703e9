// progress_bar.cpp — drawing of the progress line.
#include "progress_bar.h"

#include <algorithm>
#include <cmath>

#include <sys/ioctl.h>
#include <unistd.h>

#include "units.h"

namespace nbdsnap::cli {

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 359999) return "--:--";
  auto total = static_cast<uint64_t>(std::llround(seconds));
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof(text), "%llu:%02llu:%02llu", static_cast<unsigned long long>(total / 3600),
                  static_cast<unsigned long long>(total / 60 % 60), static_cast<unsigned long long>(total % 60));
  } else {
    std::snprintf(text, sizeof(text), "%llu:%02llu", static_cast<unsigned long long>(total / 60),
                  static_cast<unsigned long long>(total % 60));
  }
  return text;
}

std::string render_progress_line(const std::string& label, uint64_t done, uint64_t total, double elapsed_seconds,
                                 unsigned width) {
  done = std::min(done, total);
  double fraction = total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  double rate = elapsed_seconds > 0 ? static_cast<double>(done) / elapsed_seconds : 0;
  std::string eta = rate > 0 ? format_duration(static_cast<double>(total - done) / rate) : "--:--";
  char percent[8];
  std::snprintf(percent, sizeof(percent), "%3d%%", static_cast<int>(fraction * 100));
  std::string tail = std::string("  ") + percent + "  " + format_size(done) + " / " + format_size(total) + "  " +
                     format_size(static_cast<uint64_t>(rate)) + "/s  ETA " + eta;
  std::string head = label + " ";
  int bar_width = static_cast<int>(width) - static_cast<int>(head.size() + tail.size()) - 2;
  if (bar_width < 10) return head + tail.substr(2);
  bar_width = std::min(bar_width, 40);
  int filled = static_cast<int>(fraction * bar_width);
  return head + "[" + std::string(filled, '#') + std::string(bar_width - filled, '.') + "]" + tail;
}

ProgressBar::ProgressBar(std::string label, uint64_t total, bool enabled, std::FILE* stream)
    : label_(std::move(label)), total_(total), enabled_(enabled), stream_(stream) {}

void ProgressBar::add(uint64_t bytes) {
  done_ += bytes;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw();
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (!enabled_) return;
  draw();
  std::fputc('\n', stream_);
  std::fflush(stream_);
}

void ProgressBar::draw() {
  unsigned width = 80;
  winsize size{};
  if (::ioctl(fileno(stream_), TIOCGWINSZ, &size) == 0 && size.ws_col > 20) width = size.ws_col - 1;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string line = render_progress_line(label_, done_, total_, elapsed, width);
  std::fprintf(stream_, "\r%s\033[K", line.c_str());
  std::fflush(stream_);
}

}  // namespace nbdsnap::cli
