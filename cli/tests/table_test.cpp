// SPDX-License-Identifier: BSD-3-Clause
// table_test.cpp — table and key/value rendering.
#include <doctest/doctest.h>

#include "table.h"

using namespace nbdsnap::cli;

TEST_CASE("table_aligns_columns_to_the_widest_cell_and_right_aligns_numbers") {
  Table table({{"NAME"}, {"SIZE", Align::right}, {"SNAPSHOT"}});
  table.add_row({"disk", "1.0 GiB", "-"});
  table.add_row({"database-volume", "256.0 MiB", "nightly"});
  CHECK(table.render() ==
        "NAME                  SIZE  SNAPSHOT\n"
        "disk               1.0 GiB  -\n"
        "database-volume  256.0 MiB  nightly\n");
}

TEST_CASE("table_pads_by_terminal_columns_not_bytes") {
  Table table({{"NAME"}, {"SIZE", Align::right}});
  table.add_row({"caf\xc3\xa9", "1"});                // "café": 5 bytes, 4 columns
  table.add_row({"\xe6\x97\xa5\xe6\x9c\xac", "22"});  // two wide characters: 6 bytes, 4 columns
  table.add_row({"a\xffz", "3"});                     // not UTF-8: each byte one column
  CHECK(table.render() ==
        "NAME  SIZE\n"
        "caf\xc3\xa9     1\n"
        "\xe6\x97\xa5\xe6\x9c\xac    22\n"
        "a\xffz      3\n");
}

TEST_CASE("table_without_rows_prints_its_header") {
  Table table({{"NAME"}, {"STATE"}});
  CHECK(table.empty());
  CHECK(table.render() == "NAME  STATE\n");
}

TEST_CASE("key_value_list_aligns_values_and_drops_trailing_spaces") {
  KeyValueList list;
  list.add("name", "s1");
  list.add("storage used", "0 B");
  list.add("empty", "");
  CHECK(list.render() == "name:          s1\nstorage used:  0 B\nempty:\n");
}

TEST_CASE("cell_helpers") {
  CHECK(yes_no(true) == "yes");
  CHECK(or_dash("") == "-");
  CHECK(size_cell(1536) == "1.5 KiB");
  CHECK(time_cell(0) == "-");
  CHECK(time_cell(1700000000000).size() == 19);
}
