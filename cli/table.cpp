// SPDX-License-Identifier: BSD-3-Clause
// table.cpp — column width computation and rendering for tables and key/value blocks.
#include "table.h"

#include <algorithm>
#include <ctime>

#include "units.h"

namespace nbdsnap::cli {

void Table::add_row(std::vector<std::string> cells) {
  cells.resize(columns_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::render() const {
  std::vector<size_t> widths;
  for (const Column& column : columns_) widths.push_back(column.title.size());
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  auto render_line = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < cells.size(); ++i) {
      if (i > 0) line += "  ";
      std::string padding(widths[i] - cells[i].size(), ' ');
      line += columns_[i].align == Align::right ? padding + cells[i] : cells[i] + padding;
    }
    line.erase(line.find_last_not_of(' ') + 1);
    return line + "\n";
  };
  std::vector<std::string> header;
  for (const Column& column : columns_) header.push_back(column.title);
  std::string out = render_line(header);
  for (const auto& row : rows_) out += render_line(row);
  return out;
}

std::string KeyValueList::render() const {
  size_t width = 0;
  for (const auto& [key, value] : items_) width = std::max(width, key.size() + 1);
  std::string out;
  for (const auto& [key, value] : items_) {
    std::string label = key + ":";
    out += label + std::string(width - label.size() + 2, ' ') + value;
    out.erase(out.find_last_not_of(' ') + 1);
    out += "\n";
  }
  return out;
}

std::string yes_no(bool value) {
  return value ? "yes" : "no";
}

std::string or_dash(const std::string& text) {
  return text.empty() ? "-" : text;
}

std::string size_cell(uint64_t bytes) {
  return format_size(bytes);
}

std::string time_cell(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm local{};
  localtime_r(&seconds, &local);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", &local);
  return text;
}

}  // namespace nbdsnap::cli
