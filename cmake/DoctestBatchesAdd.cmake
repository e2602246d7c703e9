# SPDX-License-Identifier: BSD-3-Clause
# Run after each build of a doctest executable (DoctestBatches.cmake): lists its test cases with their source
# files and writes CTEST_FILE, which adds one ctest test per batch of up to CASES_PER_BATCH cases of a file.
cmake_policy(VERSION 3.25)
execute_process(
  COMMAND "${TEST_EXECUTABLE}" --list-test-cases --reporters=xml
  OUTPUT_VARIABLE output RESULT_VARIABLE result WORKING_DIRECTORY "${TEST_WORKING_DIR}")
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${TEST_EXECUTABLE} --list-test-cases failed (${result}):\n${output}")
endif()
string(REPLACE "," ";" labels "${TEST_LABELS}")

# <TestCase name="..." filename="/abs/x_test.cpp" line="57" skipped="false"/>, in doctest's run order (by file,
# then line): the names of each file's cases that run by default (skipped="true" ones never do).
string(REGEX MATCHALL "<TestCase [^>]*>" cases "${output}")
set(files)
foreach(case IN LISTS cases)
  if(case MATCHES "skipped=\"true\"")
    continue()
  endif()
  if(NOT case MATCHES "filename=\"([^\"]*)\"")
    message(FATAL_ERROR "no filename in ${case}")
  endif()
  set(file "${CMAKE_MATCH_1}")
  if(NOT case MATCHES "name=\"([^\"]*)\"")
    message(FATAL_ERROR "no name in ${case}")
  endif()
  set(name "${CMAKE_MATCH_1}")
  string(REPLACE "&quot;" "\"" name "${name}")  # XML's entities, &amp; last
  string(REPLACE "&apos;" "'" name "${name}")
  string(REPLACE "&lt;" "<" name "${name}")
  string(REPLACE "&gt;" ">" name "${name}")
  string(REPLACE "&amp;" "&" name "${name}")
  string(REPLACE "," "\\," name "${name}")  # doctest's filters are lists separated by ','
  string(MAKE_C_IDENTIFIER "${file}" key)
  if(NOT DEFINED count_${key})
    set(count_${key} 0)
    list(APPEND files "${file}")
  endif()
  # (a case's name holds no ';', which scripts/lint checks, so it is one list element)
  list(APPEND names_${key} "${name}")
  math(EXPR count_${key} "${count_${key}} + 1")
endforeach()

set(script "")
set(total 0)
foreach(file IN LISTS files)
  string(MAKE_C_IDENTIFIER "${file}" key)
  set(n ${count_${key}})
  math(EXPR total "${total} + ${n}")
  get_filename_component(base "${file}" NAME)
  # As many batches as needed, of near-equal size; a file that needs more than one names its cases in each.
  math(EXPR nbatches "(${n} + ${CASES_PER_BATCH} - 1) / ${CASES_PER_BATCH}")
  foreach(b RANGE 1 ${nbatches})
    math(EXPR first "(${b} - 1) * ${n} / ${nbatches}")
    math(EXPR size "${b} * ${n} / ${nbatches} - ${first}")
    set(name "${TEST_PREFIX}${base}")
    set(filter "")
    if(nbatches GREATER 1)
      string(APPEND name " [${b}/${nbatches}]")
      list(SUBLIST names_${key} ${first} ${size} batch_names)
      list(JOIN batch_names "," filter)
      set(filter " [==[--test-case=${filter}]==]")
    endif()
    string(APPEND script
      "add_test([==[${name}]==] [==[${TEST_EXECUTABLE}]==] [==[--source-file=${file}]==]${filter})\n"
      "set_tests_properties([==[${name}]==] PROPERTIES WORKING_DIRECTORY [==[${TEST_WORKING_DIR}]==]"
      " LABELS [==[${labels}]==] TIMEOUT ${TEST_TIMEOUT} ENVIRONMENT NBDSNAP_DOCTEST_BATCH_CASES=${size}"
      " FAIL_REGULAR_EXPRESSION [==[nbdsnap-batch: ran]==])\n")
  endforeach()
endforeach()
if(total EQUAL 0)
  message(FATAL_ERROR "${TEST_EXECUTABLE} lists no test cases")
endif()
file(WRITE "${CTEST_FILE}" "# ${total} test cases\n${script}")
