// SPDX-License-Identifier: BSD-3-Clause
// doctest_batch_listener.cpp — a doctest listener linked into every unit test executable
// (nbdsnap_test_framework). When ctest runs a batch of cases in one process (cmake/DoctestBatches.cmake sets
// NBDSNAP_DOCTEST_BATCH_CASES to the number of cases in the batch), it names each case on stderr as it
// starts, so that a sanitizer report that ends the process is followed back to its case, prints how many
// passed and failed ("[batch] test cases: P passed, F failed", which scripts/test counts), and reports a
// batch that ran another number of cases than it was made for (the ctest test fails on "nbdsnap-batch: ran").
// Without that variable (a run by hand) it prints nothing.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>

namespace {

struct BatchListener : doctest::IReporter {
  explicit BatchListener(const doctest::ContextOptions&) {
    const char* cases = std::getenv("NBDSNAP_DOCTEST_BATCH_CASES");
    expected_ = cases != nullptr ? std::atoi(cases) : -1;
  }

  void test_case_start(const doctest::TestCaseData& tc) override {
    if (expected_ < 0) return;
    ++ran_;
    std::fflush(stdout);  // doctest's own output first, so that lines are not mixed
    std::fprintf(stderr, "[case] %s\n", tc.m_name);
  }

  void test_case_end(const doctest::CurrentTestCaseStats& stats) override {
    if (expected_ >= 0 && !stats.testCaseSuccess) ++failed_;
  }

  void test_run_end(const doctest::TestRunStats&) override {
    if (expected_ < 0) return;
    // Read by scripts/test, which counts the cases of the batches in its summary.
    std::fflush(stdout);
    std::fprintf(stderr, "[batch] test cases: %d passed, %d failed\n", ran_ - failed_, failed_);
    if (ran_ != expected_)
      std::fprintf(stderr, "nbdsnap-batch: ran %d test cases, expected %d\n", ran_, expected_);
  }

  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}

 private:
  int expected_;  // cases in this batch, or -1 outside a batch
  int ran_ = 0;   // cases started (test_case_reenter is a subcase's next pass, not another case)
  int failed_ = 0;
};

}  // namespace

REGISTER_LISTENER("nbdsnap-batch", 1, BatchListener);
