// SPDX-License-Identifier: BSD-3-Clause
// child_process.h — running QEMU's tools (qemu-img, qemu-nbd) from the CLI: with the umask 077 (so any file
// they create is private until we set its mode), stdin from /dev/null, their output kept for messages, and
// every wait bounded: a tool that does not finish in time is killed and named in the error.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <sys/types.h>

namespace nbdsnap::cli {

struct ProgramResult {
  int status = 0;      // the exit status, or 128 + the signal that ended it
  std::string output;  // stdout and stderr together (the last 64 KiB)
};

// Runs argv[0] (looked up in PATH) and waits for it at most `bound`. Throws CliError (io_error) when it
// cannot be started (a missing program names its Debian package, `package`) or did not end in time.
ProgramResult run_program(const std::vector<std::string>& argv, std::chrono::milliseconds bound,
                          const std::string& package = "qemu-utils");

// As run_program(), but a non-zero status throws CliError (io_error) with `what` and the tool's output.
std::string run_program_checked(const std::vector<std::string>& argv, std::chrono::milliseconds bound,
                                const std::string& what);

// A helper program running beside the command (qemu-nbd), its output going to `log_path`. Stopped (SIGTERM,
// then SIGKILL after a bound) when destroyed, unless stop() was called.
class ChildProcess {
 public:
  // Throws CliError (io_error) when it cannot be started.
  ChildProcess(const std::vector<std::string>& argv, const std::string& log_path,
               const std::string& package = "qemu-utils");
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Whether it still runs (reaps it when it has ended; exit_status() then tells how).
  bool running();
  int exit_status() const { return exit_status_; }
  // Its process id (until stop() or running() reaped it, when the id may belong to another process).
  pid_t pid() const { return pid_; }
  // SIGTERM, then waits up to `bound` for it to end (SIGKILL after that). Returns its exit status.
  int stop(std::chrono::milliseconds bound);
  // The last lines it wrote, for messages.
  std::string log_tail() const;
  const std::string& program() const { return program_; }

 private:
  pid_t pid_ = -1;
  int exit_status_ = -1;
  std::string program_;
  std::string log_path_;
};

}  // namespace nbdsnap::cli
