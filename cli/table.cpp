// SPDX-License-Identifier: BSD-3-Clause
// table.cpp — column width computation and rendering for tables and key/value blocks.
#include "table.h"

#include <algorithm>
#include <clocale>
#include <ctime>
#include <cwchar>

#include <locale.h>

#include "units.h"

namespace nbdsnap::cli {

namespace {

// The terminal columns a UTF-8 cell takes: names of origins and snapshots may hold any UTF-8 (export_name.h),
// and padding by bytes shifted every column after an "é" or a "日". Widths come from wcwidth() under C.UTF-8
// whatever the process locale; a byte that is not valid UTF-8 counts as one column, as terminals show it.
size_t display_width(const std::string& text) {
  static const locale_t utf8 = ::newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
  const locale_t previous = utf8 ? ::uselocale(utf8) : static_cast<locale_t>(nullptr);
  size_t width = 0;
  std::mbstate_t state{};
  for (size_t i = 0; i < text.size();) {
    wchar_t character = 0;
    const size_t n = std::mbrtowc(&character, text.data() + i, text.size() - i, &state);
    if (n == static_cast<size_t>(-1) || n == static_cast<size_t>(-2) || n == 0) {
      state = std::mbstate_t{};
      width += 1;
      i += 1;
      continue;
    }
    const int columns = ::wcwidth(character);
    width += columns < 0 ? 1 : static_cast<size_t>(columns);
    i += n;
  }
  if (utf8) ::uselocale(previous);
  return width;
}

}  // namespace

void Table::add_row(std::vector<std::string> cells) {
  cells.resize(columns_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::render() const {
  std::vector<size_t> widths;
  for (const Column& column : columns_) widths.push_back(display_width(column.title));
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], display_width(row[i]));
  }
  auto render_line = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t i = 0; i < cells.size(); ++i) {
      if (i > 0) line += "  ";
      std::string padding(widths[i] - display_width(cells[i]), ' ');
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
  for (const auto& [key, value] : items_) width = std::max(width, display_width(key) + 1);
  std::string out;
  for (const auto& [key, value] : items_) {
    std::string label = key + ":";
    out += label + std::string(width - display_width(label) + 2, ' ') + value;
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
