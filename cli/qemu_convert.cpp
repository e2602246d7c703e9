// SPDX-License-Identifier: BSD-3-Clause
// qemu_convert.cpp — qemu-img convert and compare with progress and a stall bound (qemu_convert.h).
#include "qemu_convert.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child_process.h"
#include "control_client.h"
#include "exit_codes.h"
#include "helper_directory.h"
#include "private_files.h"
#include "progress_bar.h"
#include "stop_aware_deadline.h"

namespace nbdsnap::cli {

namespace {

constexpr std::chrono::milliseconds kPollInterval{100};
constexpr std::chrono::milliseconds kStalledConvertStopBound{std::chrono::seconds(10)};
constexpr size_t kLogWindow = 512;  // bytes of the log read per poll: the last progress lines

// Signs that a tool works: CPU time (clock ticks, utime + stime from /proc/PID/stat) and bytes it wrote
// (wchar from /proc/PID/io). Reading from a socket counts nowhere in /proc but costs CPU time.
struct Activity {
  uint64_t cpu_ticks = 0;
  uint64_t bytes_written = 0;
  bool operator==(const Activity&) const = default;
};

Activity activity_of(pid_t pid) {
  Activity activity;
  const std::string proc = "/proc/" + std::to_string(pid);
  std::ifstream stat_file(proc + "/stat");
  std::string stat_text;
  std::getline(stat_file, stat_text);
  // Fields after the command name (which may hold spaces) start after its closing parenthesis: utime and
  // stime are fields 14 and 15, the 12th and 13th after it.
  if (const size_t close = stat_text.rfind(')'); close != std::string::npos) {
    std::istringstream fields(stat_text.substr(close + 1));
    std::string field;
    for (int i = 1; i <= 13 && fields >> field; ++i) {
      if (i >= 12) activity.cpu_ticks += std::strtoull(field.c_str(), nullptr, 10);
    }
  }
  std::ifstream io_file(proc + "/io");
  for (std::string key; io_file >> key;) {
    uint64_t value = 0;
    io_file >> value;
    if (key == "wchar:") activity.bytes_written = value;
  }
  return activity;
}

std::string log_window(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char buffer[kLogWindow];
  const off_t size = ::lseek(fd, 0, SEEK_END);
  const off_t start =
      size > static_cast<off_t>(sizeof(buffer)) ? size - static_cast<off_t>(sizeof(buffer)) : 0;
  const ssize_t n = ::pread(fd, buffer, sizeof(buffer), start);
  ::close(fd);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string();
}

// Runs a qemu-img command that prints -p progress, advancing `progress` and stopping the tool when it stalls
// (see the header). Returns its exit status and its output without the progress lines.
ProgramResult run_with_progress(const std::vector<std::string>& argv, const std::string& what,
                                std::chrono::milliseconds stall_bound, ProgressBar& progress,
                                uint64_t progress_total) {
  HelperDirectory directory("qemu-img");
  const std::string log = directory.path() + "/qemu-img.log";
  ChildProcess child(argv, log);
  directory.set_helper(child.pid());
  uint64_t shown = 0;
  Activity last = activity_of(child.pid());
  // Silence since the last sign of work; a stop of nbdsnap (and of qemu-img with it, ^Z) does not count.
  StopAwareDeadline stall(stall_bound);
  while (child.running()) {
    std::this_thread::sleep_for(kPollInterval);
    const double percent = qemu_progress_percent(log_window(log));
    const auto done = percent > 0 ? static_cast<uint64_t>(static_cast<double>(progress_total) * percent / 100)
                                  : uint64_t{0};
    const Activity current = activity_of(child.pid());
    if (done > shown || !(current == last)) stall.restart();
    if (done > shown) {
      progress.add(done - shown);
      shown = done;
    }
    last = current;
    if (stall.expired() && child.running()) {
      directory.set_helper(0);  // reaped by stop(): its pid may be reused
      child.stop(kStalledConvertStopBound);
      throw CliError(
          ExitCode::io_error,
          what + ": qemu-img showed no sign of work within " + format_timeout(stall_bound) +
              " (--timeout): no progress, no byte written, no CPU time; is the NBD server answering?",
          no_reply_detail());
    }
  }
  directory.set_helper(0);
  if (child.exit_status() == 0 && shown < progress_total) progress.add(progress_total - shown);
  std::ifstream whole(log);
  std::stringstream text;
  text << whole.rdbuf();
  return {child.exit_status(), without_qemu_progress(text.str())};
}

// Hands what qemu-img has written so far to the disk, every 50 ms on a thread of its own, while qemu-img goes
// on: qemu-img writes with cache=unsafe into the page cache, and the final fsync of 1 GiB took 0.6 s after
// the 0.64 s copy; started behind the copy, the durable point took 0.84 s in all (side by side, 6 runs each).
// A thread, because sync_file_range blocks while it submits the writeback. Only a hint: errors are left to
// the caller's fsync.
class WriteBehind {
 public:
  explicit WriteBehind(const std::string& path)
      : thread_([path](const std::stop_token& stop) {
          const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
          if (fd < 0) return;
          while (!stop.stop_requested()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
          }
          ::close(fd);
        }) {}

 private:
  std::jthread thread_;  // asked to stop and joined when destroyed
};

}  // namespace

bool qemu_can_read_uri(const std::string& uri) {
  // QEMU's rules (block/nbd.c, nbd_parse_uri, QEMU 7.2), stricter than libnbd's: a URI QEMU refuses would
  // fail the backup ("No valid URL specified") where the copier reads it. libnbd takes the last of several
  // socket= parameters, ignores a host in nbd+unix:// and connects to localhost for nbd:///; QEMU refuses
  // each, and splits the query at ';' as well as '&'.
  const size_t scheme_end = uri.find("://");
  if (scheme_end == std::string::npos) return false;
  const std::string scheme = uri.substr(0, scheme_end);
  const bool unix_socket = scheme == "nbd+unix";
  if (scheme != "nbd" && scheme != "nbd+tcp" && !unix_socket) return false;
  const size_t authority_start = scheme_end + 3;
  const size_t authority_end = std::min(uri.find_first_of("/?#", authority_start), uri.size());
  std::string host = uri.substr(authority_start, authority_end - authority_start);
  if (const size_t user = host.rfind('@'); user != std::string::npos) host.erase(0, user + 1);
  const size_t query = uri.find('?', authority_end);
  if (uri.find('#', authority_end) != std::string::npos) return false;
  if (!unix_socket) return !host.empty() && host[0] != ':' && query == std::string::npos;
  // nbd+unix: no host or port, exactly one parameter, socket=.
  if (!host.empty() || query == std::string::npos) return false;
  const std::string parameters = uri.substr(query + 1);
  return parameters.rfind("socket=", 0) == 0 && parameters.size() > 7 &&
         parameters.find_first_of("&;") == std::string::npos;
}

void qemu_img_convert_to_qcow2(const std::string& uri, const std::string& path, mode_t mode,
                               std::chrono::milliseconds stall_bound, ProgressBar& progress,
                               uint64_t progress_total) {
  // The file exists with its mode before qemu-img writes a byte; qemu-img keeps an existing file's mode.
  create_private_file(path, mode);
  // -W: writes in any order, as they complete (a fresh file has nothing to keep in order); -t unsafe: no
  // flushes during the copy (the caller syncs the whole file before the point counts, chain_backup.cpp).
  const std::vector<std::string> argv = {"qemu-img", "convert", "-p", "-W",    "-t", "unsafe",
                                         "-f",       "raw",     "-O", "qcow2", uri,  path};
  try {
    WriteBehind write_behind(path);  // the file exists: qemu-img recreates it in place (same inode)
    ProgramResult result = run_with_progress(argv, "writing " + path, stall_bound, progress, progress_total);
    if (result.status != 0) {
      throw CliError(ExitCode::io_error,
                     "writing " + path + " from " + uri + ": qemu-img convert exited with status " +
                         std::to_string(result.status) + (result.output.empty() ? "" : ": " + result.output));
    }
  } catch (...) {
    remove_file(path);
    throw;
  }
}

std::string qemu_img_compare_with_image(const std::string& uri, const std::string& path,
                                        std::chrono::milliseconds stall_bound, ProgressBar& progress,
                                        uint64_t progress_total) {
  const std::vector<std::string> argv = {"qemu-img", "compare", "-p", "-f", "raw", "-F", "qcow2", uri, path};
  ProgramResult result = run_with_progress(argv, "verifying " + path, stall_bound, progress, progress_total);
  // 0: the same; 1: they differ (the output names the first offset); anything else: it could not compare.
  if (result.status == 0) return {};
  if (result.status == 1) return result.output.empty() ? "the contents differ" : result.output;
  throw CliError(ExitCode::io_error,
                 "verifying " + path + " against " + uri + ": qemu-img compare exited with status " +
                     std::to_string(result.status) + (result.output.empty() ? "" : ": " + result.output));
}

double qemu_progress_percent(const std::string& output) {
  const size_t mark = output.rfind("/100%)");
  if (mark == std::string::npos) return -1;
  const size_t open = output.rfind('(', mark);
  if (open == std::string::npos) return -1;
  const std::string number = output.substr(open + 1, mark - open - 1);
  char* end = nullptr;
  const double value = std::strtod(number.c_str(), &end);
  if (end == number.c_str() || *end != '\0' || !(value >= 0) || value > 100) return -1;
  return value;
}

std::string without_qemu_progress(const std::string& output) {
  // qemu-img -p redraws "    (P/100%)" with carriage returns; messages end in newlines.
  std::string kept;
  std::string line;
  auto flush = [&] {
    const bool is_progress = line.find("/100%)") != std::string::npos &&
                             line.find('(') != std::string::npos &&
                             line.find_first_not_of(" (0123456789./%)") == std::string::npos;
    if (!is_progress && line.find_first_not_of(' ') != std::string::npos) {
      if (!kept.empty()) kept += '\n';
      kept += line;
    }
    line.clear();
  };
  for (char c : output) {
    if (c == '\r' || c == '\n') {
      flush();
    } else {
      line += c;
    }
  }
  flush();
  return kept;
}

}  // namespace nbdsnap::cli
