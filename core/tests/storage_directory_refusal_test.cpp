// SPDX-License-Identifier: BSD-3-Clause
// storage_directory_refusal_test.cpp — a directory given as difference storage is refused with what to give
// instead (it was an io_error saying "Is a directory"), with or without a size.
#include <doctest/doctest.h>

#include <filesystem>

#include "diff_storage.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

TEST_CASE("a_directory_given_as_difference_storage_is_refused_saying_what_to_give_instead") {
  TempDir dir;
  std::filesystem::create_directory(dir.file("diffs"));
  for (const uint64_t size : {uint64_t{0}, uint64_t{128} * KiB}) {
    CAPTURE(size);
    DiffStorage storage(0, 0, nullptr);
    const Status s = storage.append({dir.file("diffs"), size});
    CHECK(s.code() == Errc::invalid_argument);
    CHECK(s.message() == "difference storage " + dir.file("diffs") + " is a directory: give a file in it (" +
                             dir.file("diffs") +
                             "/NAME.diff:SIZE creates one of SIZE bytes), an existing file " +
                             "or a block device");
    CHECK(storage.areas().empty());
  }
}
