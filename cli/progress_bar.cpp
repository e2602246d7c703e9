// SPDX-License-Identifier: BSD-3-Clause
// progress_bar.cpp — drawing of the progress line.
#include "progress_bar.h"

#include <algorithm>
#include <cmath>

#include <cerrno>
#include <csignal>

#include <fcntl.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "exit_codes.h"
#include "units.h"

namespace nbdsnap::cli {

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 359999) return "--:--";
  auto total = static_cast<uint64_t>(std::llround(seconds));
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof(text), "%llu:%02llu:%02llu", static_cast<unsigned long long>(total / 3600),
                  static_cast<unsigned long long>(total / 60 % 60),
                  static_cast<unsigned long long>(total % 60));
  } else {
    std::snprintf(text, sizeof(text), "%llu:%02llu", static_cast<unsigned long long>(total / 60),
                  static_cast<unsigned long long>(total % 60));
  }
  return text;
}

std::string render_progress_line(const std::string& label, uint64_t done, uint64_t total,
                                 double elapsed_seconds, unsigned width) {
  done = std::min(done, total);
  double fraction = total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  double rate = elapsed_seconds > 0 ? static_cast<double>(done) / elapsed_seconds : 0;
  std::string eta = rate > 0 ? format_duration(static_cast<double>(total - done) / rate) : "--:--";
  char percent[8];
  std::snprintf(percent, sizeof(percent), "%3d%%", static_cast<int>(fraction * 100));
  std::string tail = std::string("  ") + percent + "  " + format_size(done) + " / " + format_size(total) +
                     "  " + format_size(static_cast<uint64_t>(rate)) + "/s  ETA " + eta;
  std::string head = label + " ";
  int bar_width = static_cast<int>(width) - static_cast<int>(head.size() + tail.size()) - 2;
  if (bar_width < 10) return head + tail.substr(2);
  bar_width = std::min(bar_width, 40);
  int filled = static_cast<int>(fraction * bar_width);
  return head + "[" + std::string(filled, '#') + std::string(bar_width - filled, '.') + "]" + tail;
}

int progress_percent(uint64_t done, uint64_t total) {
  if (total == 0 || done >= total) return 100;
  return static_cast<int>(static_cast<double>(done) * 100 / static_cast<double>(total));
}

void MachineProgress::add(uint64_t bytes) {
  if (fd_ < 0) return;
  done_ += bytes;
  const int percent = std::min(progress_percent(done_, total_), 99);  // 100 only from finish()
  if (percent > last_) write_line(percent);
}

void MachineProgress::finish() {
  if (fd_ >= 0 && last_ < 100) write_line(100);
}

void MachineProgress::write_line(int percent) {
  last_ = percent;
  const std::string line = std::to_string(percent) + "/100\n";
  // A reader that went away must not kill the command with SIGPIPE: block it on this thread for the write
  // and consume one it raised.
  sigset_t pipe_signal, previous;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, &previous);
  ssize_t written = 0;
  do {
    written = ::write(fd_, line.data(), line.size());
  } while (written < 0 && errno == EINTR);
  if (written < 0 && errno == EPIPE) {
    const timespec no_wait{0, 0};
    sigtimedwait(&pipe_signal, nullptr, &no_wait);
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (written != static_cast<ssize_t>(line.size())) fd_ = -1;
}

int parse_progress_fd(const std::string& text) {
  int fd = -1;
  size_t used = 0;
  try {
    fd = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || fd < 0 || ::fcntl(fd, F_GETFD) == -1) {
    usage_error("--progress '" + text +
                "': give the number of a file descriptor open for writing (e.g. 3 with 3>FILE)");
  }
  return fd;
}

ProgressBar::ProgressBar(std::string label, uint64_t total, bool enabled, std::FILE* stream,
                         MachineProgress* machine)
    : label_(std::move(label)), total_(total), enabled_(enabled), stream_(stream), machine_(machine) {}

void ProgressBar::add(uint64_t bytes) {
  done_ += bytes;
  if (machine_ != nullptr) machine_->add(bytes);
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
