# SPDX-License-Identifier: BSD-3-Clause
# TestTimeouts.cmake — nbdsnap_pass_test_timeouts(): every test of the calling directory that has a TIMEOUT gets
# it in its environment as NBDSNAP_TEST_TIMEOUT (seconds). client-tests/watchdog.py, under which every shell
# integration test runs, ends a test that hangs shortly before ctest would, and says where it hung; ctest
# itself only kills and reports "Timeout". A test property can be set only in the directory that added the
# test, so each directory of client-tests defers a call to the end of its CMakeLists.txt:
#   cmake_language(DEFER CALL nbdsnap_pass_test_timeouts)
function(nbdsnap_pass_test_timeouts)
  get_directory_property(tests TESTS)
  foreach(test IN LISTS tests)
    get_test_property(${test} TIMEOUT timeout)
    if(timeout)
      set_property(TEST ${test} APPEND PROPERTY ENVIRONMENT "NBDSNAP_TEST_TIMEOUT=${timeout}")
    endif()
  endforeach()
endfunction()
