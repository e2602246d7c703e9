// SPDX-License-Identifier: BSD-3-Clause
// child_process.cpp — fork/exec with a close-on-exec pipe that reports a failed exec, and bounded waits.
#include "child_process.h"

#include <cerrno>
#include <csignal>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exit_codes.h"

namespace nbdsnap::cli {

namespace {

constexpr size_t kOutputKept = 64 << 10;
constexpr std::chrono::milliseconds kKillWait{5000};

int status_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 255;
}

std::string command_text(const std::vector<std::string>& argv) {
  std::string text;
  for (const std::string& word : argv) text += (text.empty() ? "" : " ") + word;
  return text;
}

// Forks and execs argv with stdout and stderr on `output_fd`. Returns the pid; throws if the exec failed
// (the child reports its errno through a close-on-exec pipe, which a successful exec closes).
pid_t spawn(const std::vector<std::string>& argv, int output_fd, const std::string& package) {
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) local_io_error("pipe", errno);
  std::vector<char*> args;
  for (const std::string& word : argv) args.push_back(const_cast<char*>(word.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(report[0]);
    ::close(report[1]);
    local_io_error("cannot start " + argv[0], err);
  }
  if (pid == 0) {
    ::close(report[0]);
    ::umask(077);
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, STDIN_FILENO);
    ::dup2(output_fd, STDOUT_FILENO);
    ::dup2(output_fd, STDERR_FILENO);
    // A helper must not outlive the command (a killed or ^C'd backup would leave qemu-nbd holding the chain
    // file), so it stays in the CLI's process group and gets SIGTERM when its parent dies. The signal follows
    // the forking *thread*: spawn only from the thread that outlives the helper (the CLI's main thread).
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    ::execvp(args[0], args.data());
    const int err = errno;
    (void)!::write(report[1], &err, sizeof(err));
    ::_exit(127);
  }
  ::close(report[1]);
  int err = 0;
  ssize_t n = 0;
  do {
    n = ::read(report[0], &err, sizeof(err));
  } while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n == sizeof(err)) {
    int ignored = 0;
    ::waitpid(pid, &ignored, 0);
    if (err == ENOENT) {
      throw CliError(ExitCode::io_error,
                     argv[0] + " not found: install " + package + " (it is in PATH nowhere)");
    }
    local_io_error("cannot run " + argv[0], err);
  }
  return pid;
}

}  // namespace

ProgramResult run_program(const std::vector<std::string>& argv, std::chrono::milliseconds bound,
                          const std::string& package) {
  int output[2];
  if (::pipe2(output, O_CLOEXEC) != 0) local_io_error("pipe", errno);
  pid_t pid = -1;
  try {
    pid = spawn(argv, output[1], package);
  } catch (...) {
    ::close(output[0]);
    ::close(output[1]);
    throw;
  }
  ::close(output[1]);
  ProgramResult result;
  const auto deadline = std::chrono::steady_clock::now() + bound;
  bool timed_out = false;
  for (;;) {  // read until the child closes its output (it ended) or the bound passes
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd entry{output[0], POLLIN, 0};
    const int ready = ::poll(&entry, 1, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::read(output[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buffer, static_cast<size_t>(n));
    if (result.output.size() > kOutputKept) result.output.erase(0, result.output.size() - kOutputKept);
  }
  ::close(output[0]);
  int wait_status = 0;
  // Closing its output usually means it ended; a program that closed it and runs on meets the bound too.
  while (!timed_out && ::waitpid(pid, &wait_status, WNOHANG) == 0) {
    timed_out = std::chrono::steady_clock::now() >= deadline;
    if (!timed_out) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (timed_out) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
    }
  }
  if (timed_out) {
    throw CliError(ExitCode::io_error, command_text(argv) + ": did not finish within " +
                                           std::to_string(bound.count() / 1000) + " s (killed)");
  }
  result.status = status_of(wait_status);
  return result;
}

std::string run_program_checked(const std::vector<std::string>& argv, std::chrono::milliseconds bound,
                                const std::string& what) {
  ProgramResult result = run_program(argv, bound);
  if (result.status != 0) {
    std::string output = result.output;
    while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
    throw CliError(ExitCode::io_error, what + ": " + argv[0] + " exited with status " +
                                           std::to_string(result.status) +
                                           (output.empty() ? "" : ": " + output));
  }
  return result.output;
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const std::string& log_path,
                           const std::string& package)
    : program_(argv.at(0)), log_path_(log_path) {
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log < 0) local_io_error(log_path, errno);
  try {
    pid_ = spawn(argv, log, package);
  } catch (...) {
    ::close(log);
    throw;
  }
  ::close(log);
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && exit_status_ < 0) stop(kKillWait);
}

bool ChildProcess::running() {
  if (exit_status_ >= 0) return false;
  int wait_status = 0;
  const pid_t done = ::waitpid(pid_, &wait_status, WNOHANG);
  if (done == pid_) {
    exit_status_ = status_of(wait_status);
    return false;
  }
  return true;
}

int ChildProcess::stop(std::chrono::milliseconds bound) {
  if (!running()) return exit_status_;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      int wait_status = 0;
      while (::waitpid(pid_, &wait_status, 0) < 0 && errno == EINTR) {
      }
      exit_status_ = status_of(wait_status);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exit_status_;
}

std::string ChildProcess::log_tail() const {
  const int fd = ::open(log_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char buffer[2048];
  const off_t size = ::lseek(fd, 0, SEEK_END);
  const off_t start =
      size > static_cast<off_t>(sizeof(buffer)) ? size - static_cast<off_t>(sizeof(buffer)) : 0;
  const ssize_t n = ::pread(fd, buffer, sizeof(buffer), start);
  ::close(fd);
  std::string text = n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace nbdsnap::cli
