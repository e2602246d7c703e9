# SPDX-License-Identifier: BSD-3-Clause
# nbdsnap_doctest_batches(TARGET PREFIX "core: " LABELS unit core [CASES_PER_BATCH N] [TIMEOUT S]):
# registers a doctest executable's test cases with ctest, a few cases per ctest test ("batch").
#
# Why batches: a test process of the sanitizer builds costs ~0.2-0.4 CPU s before and after its test (ASan's
# and TSan's start-up, their shadow memory's page faults, LeakSanitizer's scan at exit) on a 2-core CI machine,
# and the unit tests had one process per TEST_CASE (doctest_discover_tests): ~1,100 of them in the ASan and
# TSan stages. A batch runs up to CASES_PER_BATCH cases of one source file in one process, in the file's
# order: `TARGET --source-file=FILE`, and `--test-case=NAME,NAME,...` when the file needs several batches.
#
# Names: PREFIX + the source file's name, and [K/N] when the file has more cases than one batch takes
# ("core:engine_test.cpp [2/3]"; CMake drops the space at the end of PREFIX, as it did
# for doctest_discover_tests). `ctest -R core:engine_test` runs one file's cases; one case alone:
# `build/asan/core/tests/core_tests -tc='NAME'`, or configure with -DNBDSNAP_TEST_EACH_CASE=ON to get one
# ctest test per case, named PREFIX + NAME as before (doctest_discover_tests).
#
# Checks: the batches are made after each build from the executable's own list of cases, so every case is in
# exactly one batch. Each batch prints the name of each case as it starts (a case whose sanitizer ends the
# process is the last one named) and fails unless it ran exactly the cases it was made for (a filter that
# matched nothing would otherwise pass): cmake/doctest_batch_listener.cpp, through NBDSNAP_DOCTEST_BATCH_CASES.
option(NBDSNAP_TEST_EACH_CASE "One ctest test per doctest TEST_CASE instead of batches of cases" OFF)
set(_nbdsnap_doctest_batches_script ${CMAKE_CURRENT_LIST_DIR}/DoctestBatchesAdd.cmake)

function(nbdsnap_doctest_batches target)
  cmake_parse_arguments(arg "" "PREFIX;CASES_PER_BATCH;TIMEOUT" "LABELS" ${ARGN})
  if(NOT arg_CASES_PER_BATCH)
    set(arg_CASES_PER_BATCH 10)
  endif()
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 900)
  endif()
  if(NBDSNAP_TEST_EACH_CASE)
    # (doctest's discovery script splits a label list at ';' only if given one label at a time: join with ;.)
    list(JOIN arg_LABELS ";" labels)
    doctest_discover_tests(${target} TEST_PREFIX "${arg_PREFIX}" PROPERTIES LABELS "${labels}")
    return()
  endif()
  set(include_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_batches_include.cmake")
  set(tests_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_batches.cmake")
  list(JOIN arg_LABELS "," labels)  # passed through -D as one word; the script splits it again
  add_custom_command(TARGET ${target} POST_BUILD
    BYPRODUCTS "${tests_file}"
    COMMAND "${CMAKE_COMMAND}" -D "TEST_EXECUTABLE=$<TARGET_FILE:${target}>"
            -D "TEST_PREFIX=${arg_PREFIX}" -D "TEST_LABELS=${labels}" -D "TEST_TIMEOUT=${arg_TIMEOUT}"
            -D "CASES_PER_BATCH=${arg_CASES_PER_BATCH}" -D "TEST_WORKING_DIR=${CMAKE_CURRENT_BINARY_DIR}"
            -D "CTEST_FILE=${tests_file}" -P "${_nbdsnap_doctest_batches_script}"
    VERBATIM)
  file(WRITE "${include_file}"
    "if(EXISTS \"${tests_file}\")\n"
    "  include(\"${tests_file}\")\n"
    "else()\n"
    "  add_test(${target}_NOT_BUILT ${target}_NOT_BUILT)\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${include_file}")
endfunction()
