// SPDX-License-Identifier: BSD-3-Clause
// qemu_tools.cpp — the qemu-img commands and the qemu-nbd helper (qemu_tools.h).
#include "qemu_tools.h"

#include <cstring>
#include <filesystem>
#include <thread>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "child_process.h"
#include "exit_codes.h"
#include "json_fields.h"
#include "private_files.h"

namespace nbdsnap::cli {

namespace {

constexpr std::chrono::milliseconds kQemuNbdStopBound{std::chrono::seconds(60)};

nlohmann::json json_output(const std::vector<std::string>& argv, std::chrono::milliseconds bound,
                           const std::string& what) {
  const std::string text = run_program_checked(argv, bound, what);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded())
    throw CliError(ExitCode::io_error,
                   what + ": unexpected output of " + argv[0] + ": " + text.substr(0, 200));
  return value;
}

// Whether something accepts connections on the Unix socket at path.
bool accepts(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) return false;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool connected = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return connected;
}

}  // namespace

void qemu_img_create_qcow2(const std::string& path, uint64_t size, const std::string& backing_file,
                           mode_t mode) {
  // The file exists with its mode before qemu-img writes a byte; qemu-img keeps an existing file's mode.
  create_private_file(path, mode);
  std::vector<std::string> argv = {"qemu-img", "create", "-q", "-f", "qcow2"};
  if (!backing_file.empty()) argv.insert(argv.end(), {"-b", backing_file, "-F", "qcow2"});
  argv.push_back(path);
  argv.push_back(std::to_string(size));
  try {
    run_program_checked(argv, kToolBound, "creating " + path);
  } catch (...) {
    remove_file(path);
    throw;
  }
}

bool qcow2_holds_disk_of(uint64_t qcow2_size, uint64_t disk_size) {
  constexpr uint64_t kSector = 512;
  return qcow2_size == disk_size ||
         (disk_size % kSector != 0 && qcow2_size == (disk_size / kSector + 1) * kSector);
}

QemuImageInfo qemu_img_info(const std::string& path) {
  nlohmann::json info = json_output({"qemu-img", "info", "-U", "--output=json", path}, kToolBound,
                                    "reading the header of " + path);
  QemuImageInfo result;
  result.format = field_text(info, "format");
  result.virtual_size = field_uint(info, "virtual-size");
  result.actual_size = field_uint(info, "actual-size");
  result.backing_filename = field_text(info, "backing-filename");
  return result;
}

std::string qemu_img_check(const std::string& path) {
  ProgramResult result = run_program({"qemu-img", "check", "-f", "qcow2", path}, kDataToolBound);
  // 0: consistent; 3: only leaked clusters; 1 (cannot check), 2 (corruptions), 63 (not supported): not fine.
  if (result.status == 0 || result.status == 3) return {};
  std::string output = result.output;
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  return "qemu-img check exited with status " + std::to_string(result.status) +
         (output.empty() ? "" : ": " + output);
}

void qemu_img_commit(const std::string& top, const std::string& base) {
  // qemu-img looks BASE up in TOP's backing chain, whose relative names it resolves against TOP's directory,
  // not the working directory: a relative BASE such as "dir/0001.qcow2" is "not found". An absolute one is.
  const std::string absolute_base = std::filesystem::absolute(base).string();
  run_program_checked(
      {"qemu-img", "commit", "-q", "-f", "qcow2", "-t", "writeback", "-b", absolute_base, top},
      kDataToolBound, "merging " + top + " into " + base);
}

uint64_t qemu_img_stored_bytes(const std::string& path) {
  nlohmann::json map = json_output({"qemu-img", "map", "-U", "-f", "qcow2", "--output=json", path},
                                   kDataToolBound, "mapping " + path);
  uint64_t bytes = 0;
  for (const auto& extent : map) {
    if (field_uint(extent, "depth") == 0 && field_bool(extent, "data") && !field_bool(extent, "zero")) {
      bytes += field_uint(extent, "length");
    }
  }
  return bytes;
}

QemuNbdServer::QemuNbdServer(const std::string& path, bool writable)
    : path_(path),
      directory_("qemu-nbd"),
      socket_(directory_.path() + "/qemu-nbd.sock"),
      uri_("nbd+unix:///?socket=" + socket_) {
  // A point being written is not part of the chain until the manifest says "complete", which happens only
  // after the caller's fsync of the whole file (chain_backup.cpp): a crash before that leaves a point the
  // next backup discards. So qemu-nbd need not honour flushes while it writes (--cache=unsafe, as qemu-img
  // convert writes its target): with writeback, the qcow2 driver's flushes that order its metadata updates
  // became fdatasyncs of a half-written file in the middle of the copy. qemu-nbd still writes its cached
  // metadata to the file when it stops.
  std::vector<std::string> argv = {"qemu-nbd",       "--socket=" + socket_,
                                   "--format=qcow2", "--shared=32",
                                   "--persistent",   writable ? "--cache=unsafe" : "--cache=writeback",
                                   "--aio=threads"};
  if (!writable) argv.push_back("--read-only");
  argv.push_back(path);
  try {
    process_ = std::make_unique<ChildProcess>(argv, directory_.path() + "/qemu-nbd.log");
    directory_.set_helper(process_->pid());
    const auto deadline = std::chrono::steady_clock::now() + kToolBound;
    while (!accepts(socket_)) {
      if (!process_->running()) {
        throw CliError(ExitCode::io_error, "qemu-nbd could not serve " + path + ": " + process_->log_tail());
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        throw CliError(ExitCode::io_error, "qemu-nbd did not serve " + path + " within " +
                                               std::to_string(kToolBound.count() / 1000) + " s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  } catch (...) {
    directory_.set_helper(0);  // reaped next: its pid may be reused
    process_.reset();
    directory_.remove();
    throw;
  }
}

QemuNbdServer::~QemuNbdServer() {
  try {
    stop();
  } catch (const CliError&) {  // an error is being reported already
  }
}

void QemuNbdServer::stop() {
  if (!process_) return;
  directory_.set_helper(0);  // reaped next: its pid may be reused
  const bool was_running = process_->running();
  const int status = process_->stop(kQemuNbdStopBound);
  const std::string log = process_->log_tail();
  process_.reset();
  directory_.remove();
  // qemu-nbd ends with status 0 on SIGTERM after flushing the image.
  if (!was_running || status != 0) {
    throw CliError(ExitCode::io_error, "qemu-nbd serving " + path_ +
                                           (was_running ? " failed when stopped" : " died") + " (status " +
                                           std::to_string(status) + ")" + (log.empty() ? "" : ": " + log));
  }
}

}  // namespace nbdsnap::cli
