// SPDX-License-Identifier: BSD-3-Clause
// log_test.cpp — the journald prefix choice (log.h), a stderr nobody reads (log.cpp's writer thread), and the
// lines the engine's events are logged with (engine_event_log.h).
#include <doctest/doctest.h>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>
#include <sstream>
#include <string>

#include "engine_event_log.h"
#include "log.h"

using namespace nbdsnap;

TEST_CASE("journal_stream_matches_only_stderr's_own_device_and_inode") {
  CHECK(journal_stream_matches("8:12345", 8, 12345));
  CHECK_FALSE(
      journal_stream_matches("8:12345", 8, 12346));  // stderr redirected: a child's inherited variable
  CHECK_FALSE(journal_stream_matches("9:12345", 8, 12345));
  CHECK_FALSE(journal_stream_matches(nullptr, 8, 12345));  // not started by systemd
  CHECK_FALSE(journal_stream_matches("", 8, 12345));
  CHECK_FALSE(journal_stream_matches("8:12345x", 8, 12345));
  CHECK_FALSE(journal_stream_matches("8", 8, 12345));
}

TEST_CASE("journal_priority_prefixes_are_sd_daemon's_syslog_levels") {
  CHECK(std::string(journal_priority_prefix(LogLevel::error)) == "<3>");
  CHECK(std::string(journal_priority_prefix(LogLevel::warning)) == "<4>");
  CHECK(std::string(journal_priority_prefix(LogLevel::info)) == "<6>");
  CHECK(std::string(journal_priority_prefix(LogLevel::debug)) == "<7>");
}

TEST_CASE("a_fresh_origin's_first_generation_is_info_and_a_lost_one_a_warning") {
  Event event;
  event.type = EventType::generation_renewed;
  event.origin = "disk0";
  event.reason = "new CBT generation 1234: no saved state";
  CHECK(describe_event(event).level == LogLevel::info);
  CHECK(describe_event(event).text.find("incremental backups must start again") == std::string::npos);
  event.reason = "new CBT generation 1234: the last stop was not clean";
  CHECK(describe_event(event).level == LogLevel::warning);
  CHECK(describe_event(event).text.find("incremental backups must start again") != std::string::npos);
}

TEST_CASE("snapshot_events_are_logged_at_info_and_corruption_as_an_error") {
  Event event;
  event.snapshot = "s1";
  event.origin = "disk0";
  event.type = EventType::snapshot_created;
  CHECK(describe_event(event).level == LogLevel::info);
  CHECK(describe_event(event).text == "snapshot s1 created for origins disk0");
  event.type = EventType::snapshot_taken;
  CHECK(describe_event(event).text == "snapshot s1 taken");
  event.type = EventType::snapshot_destroyed;
  CHECK(describe_event(event).text == "snapshot s1 destroyed");
  event.type = EventType::corrupted;
  event.reason = "difference storage is full";
  CHECK(describe_event(event).level == LogLevel::error);
  event.type = EventType::storage_appended;
  event.bytes = 1048576;
  event.reason = "/var/tmp/s1.more";
  CHECK(describe_event(event).level == LogLevel::info);
  CHECK(describe_event(event).text.find("1048576 bytes (/var/tmp/s1.more)") != std::string::npos);
}

TEST_CASE("log_lines_escape_control_characters_so_a_client_cannot_forge_a_line") {
  CHECK(log_safe_text("disk0@s1") == "disk0@s1");
  CHECK(log_safe_text("a\n2026-11-30T00:00:00.000Z nbdsnapd error: FORGED") ==
        "a\\x0a2026-11-30T00:00:00.000Z nbdsnapd error: FORGED");
  CHECK(log_safe_text(std::string("\x1b[31mred\x7f\r", 10)) == "\\x1b[31mred\\x7f\\x0d");
  CHECK(log_safe_text("caf\xc3\xa9") == "caf\xc3\xa9");  // UTF-8 passes
}

TEST_CASE("checkpoints_dropped_at_attach_are_logged_at_info_and_a_plain_attach_at_debug") {
  Event event;
  event.type = EventType::origin_attached;
  event.origin = "disk0";
  event.reason = "generation 1234";
  CHECK(describe_event(event).level == LogLevel::debug);
  event.reason =
      "generation 1234; checkpoints dropped: mon, tue (checkpoints-kept is 2, fewer than were saved)";
  CHECK(describe_event(event).level == LogLevel::info);
  CHECK(describe_event(event).text ==
        "origin disk0 attached, generation 1234; checkpoints dropped: mon, tue (checkpoints-kept is 2, fewer "
        "than "
        "were saved)");
}

// A reader of stderr that stops (a stalled journal, a paused pipe) must not block the threads that log:
// they serve NBD requests and may hold engine locks. In a child whose stderr is a pipe nobody reads yet,
// 20,000 lines (about 5 MiB, the pipe holds 64 KiB) are logged and every call returns. Once this process
// reads, the lines come whole, a note says how many were dropped and where, and the line logged after the
// flood comes last (log_flush).
TEST_CASE("a_stderr_nobody_reads_never_blocks_the_threads_that_log") {
  int err_pipe[2];
  int done_pipe[2];
  REQUIRE(::pipe(err_pipe) == 0);
  REQUIRE(::pipe(done_pipe) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::dup2(err_pipe[1], STDERR_FILENO);
    ::close(err_pipe[0]);
    ::close(done_pipe[0]);
    const std::string filler(200, 'x');
    for (int i = 0; i < 20000; ++i) log_message(LogLevel::info, "line " + std::to_string(i) + " " + filler);
    (void)!::write(done_pipe[1], "d", 1);
    log_message(LogLevel::info, "the last line");
    ::_exit(log_flush(std::chrono::seconds(30)) ? 0 : 3);
  }
  ::close(err_pipe[1]);
  ::close(done_pipe[1]);
  pollfd done{done_pipe[0], POLLIN, 0};
  const bool returned = ::poll(&done, 1, 60000) == 1;  // stderr unread meanwhile
  if (!returned) ::kill(child, SIGKILL);
  CHECK_MESSAGE(returned, "log_message blocked on a stderr nobody read");
  std::string text;
  char buffer[65536];
  for (ssize_t n; (n = ::read(err_pipe[0], buffer, sizeof buffer)) > 0;) text.append(buffer, size_t(n));
  int status = 0;
  ::waitpid(child, &status, 0);
  ::close(err_pipe[0]);
  ::close(done_pipe[0]);
  REQUIRE(returned);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);  // log_flush wrote everything once this process read
  CHECK(text.find(" nbdsnapd info: line 0 x") != std::string::npos);
  CHECK(text.find("log line(s) dropped here: stderr took none for a while") != std::string::npos);
  const std::string last = "the last line\n";
  REQUIRE(text.size() >= last.size());
  CHECK(text.substr(text.size() - last.size()) == last);
  const std::regex whole(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z nbdsnapd (info|warning): .*)");
  std::istringstream lines(text);
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) {
    if (!std::regex_match(line, whole)) {
      FAIL_CHECK("a line was cut or mixed: " << line.substr(0, 120));
      break;
    }
  }
  CHECK(count > 300);
}
