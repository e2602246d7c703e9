// SPDX-License-Identifier: BSD-3-Clause
// table.h — the human-readable output of the CLI: aligned tables and "key: value" blocks.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nbdsnap::cli {

enum class Align { left, right };

struct Column {
  std::string title;
  Align align = Align::left;
};

// A table with a header line; columns are as wide as their widest cell, separated by two spaces.
class Table {
 public:
  explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}
  // REQUIRES: cells.size() == number of columns.
  void add_row(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  // Header and rows, each line ending in '\n', no trailing spaces.
  std::string render() const;

 private:
  std::vector<Column> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// "key:   value" lines with the values aligned, in insertion order.
class KeyValueList {
 public:
  void add(std::string key, std::string value) { items_.emplace_back(std::move(key), std::move(value)); }
  std::string render() const;

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

// Cell helpers: "yes"/"no", "-" for an empty string, sizes as "1.5 GiB (1610612736)" or plain bytes.
std::string yes_no(bool value);
std::string or_dash(const std::string& text);
std::string size_cell(uint64_t bytes);
// Local time "2026-11-26 12:34:56" for milliseconds since the epoch ("-" for 0).
std::string time_cell(int64_t unix_ms);

}  // namespace nbdsnap::cli
