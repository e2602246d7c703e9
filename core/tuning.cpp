// SPDX-License-Identifier: BSD-3-Clause
// tuning.cpp — the table of tuning options, their parsing and the sanitize step (see tuning.h).
#include "tuning.h"

#include <cerrno>
#include <cstdlib>

#include "cbt.h"
#include "units.h"

namespace nbdsnap {

namespace {

// A value as a user would type it back: "18", "2097152", "64M".
std::string value_text(TuningUnit unit, uint64_t value) {
  if (unit != TuningUnit::size || value == 0) return std::to_string(value);
  static const char* const kSuffixes[] = {"", "K", "M", "G", "T", "P"};
  unsigned i = 0;
  while (i < 5 && value % 1024 == 0) value /= 1024, ++i;
  return std::to_string(value) + kSuffixes[i];
}

// The options. Adding one is one entry here (and a field in EngineConfig): both front ends list this table.
const std::vector<TuningOption>& make_options() {
  static const std::vector<TuningOption> options = {
      {"chunk-min-shift", "N", "smallest copy-on-write chunk is 2^N bytes", TuningUnit::shift, 12, 30, false,
       [](const EngineConfig& c) -> uint64_t { return c.sizing.chunk_minimum_shift; },
       [](EngineConfig& c, uint64_t v) { c.sizing.chunk_minimum_shift = static_cast<unsigned>(v); }},
      {"chunk-max-shift", "N",
       "largest chunk is 2^N bytes (a large device may then have more than 2^chunk-max-count-shift chunks)",
       TuningUnit::shift, 12, 30, false,
       [](const EngineConfig& c) -> uint64_t { return c.sizing.chunk_maximum_shift; },
       [](EngineConfig& c, uint64_t v) { c.sizing.chunk_maximum_shift = static_cast<unsigned>(v); }},
      {"chunk-max-count-shift", "N", "chunks double in size while a device would have more than 2^N of them",
       TuningUnit::shift, 1, 63, false,
       [](const EngineConfig& c) -> uint64_t { return c.sizing.chunk_maximum_count_shift; },
       [](EngineConfig& c, uint64_t v) { c.sizing.chunk_maximum_count_shift = static_cast<unsigned>(v); }},
      {"tracking-block-min-shift", "N", "smallest change tracking (CBT) block is 2^N bytes",
       TuningUnit::shift, 9, 30, false,
       [](const EngineConfig& c) -> uint64_t { return c.sizing.tracking_block_minimum_shift; },
       [](EngineConfig& c, uint64_t v) { c.sizing.tracking_block_minimum_shift = static_cast<unsigned>(v); }},
      {"tracking-block-max-shift", "N", "largest CBT block is 2^N bytes", TuningUnit::shift, 9, 30, false,
       [](const EngineConfig& c) -> uint64_t { return c.sizing.tracking_block_maximum_shift; },
       [](EngineConfig& c, uint64_t v) { c.sizing.tracking_block_maximum_shift = static_cast<unsigned>(v); }},
      {"tracking-block-max-count", "COUNT",
       "CBT blocks double in size while a device would have more than COUNT of them (one byte of memory "
       "each)",
       TuningUnit::count, 1, uint64_t{1} << 32, false,
       [](const EngineConfig& c) -> uint64_t { return c.sizing.tracking_block_maximum_count; },
       [](EngineConfig& c, uint64_t v) { c.sizing.tracking_block_maximum_count = v; }},
      {"chunk-buffer-budget", "SIZE",
       "memory for old chunks awaiting writeback to difference storage, all snapshots together (0: writers "
       "store each chunk themselves)",
       TuningUnit::size, 0, 64 * GiB, false, [](const EngineConfig& c) { return c.chunk_buffer_budget; },
       [](EngineConfig& c, uint64_t v) { c.chunk_buffer_budget = v; }},
      {"low-space-threshold", "SIZE", "free difference storage below which a low_free_space event is posted",
       TuningUnit::size, 0, PiB, false, [](const EngineConfig& c) { return c.low_space_threshold; },
       [](EngineConfig& c, uint64_t v) { c.low_space_threshold = v; }},
      {"copy-io-size", "SIZE", "largest read that copies a chunk from the origin, a power of two",
       TuningUnit::size, 4 * KiB, 64 * MiB, true, [](const EngineConfig& c) { return c.copy_io_size; },
       [](EngineConfig& c, uint64_t v) { c.copy_io_size = v; }},
      // Not a blksnap parameter: blksnap keeps no history past its 255 change numbers (core/cbt.h).
      {"checkpoints-kept", "N",
       "CBT checkpoints kept per origin; older ones are dropped when change numbers wrap", TuningUnit::count,
       kMinCheckpointsKept, kMaxCheckpointsKept, false,
       [](const EngineConfig& c) -> uint64_t { return c.checkpoints_kept; },
       [](EngineConfig& c, uint64_t v) { c.checkpoints_kept = static_cast<unsigned>(v); }},
      // Not a blksnap parameter: blksnap's take and CBT reset run in the kernel's block layer. One option for
      // both waits (EngineConfig::take_drain_limit and cbt_reset_drain_limit).
      {"drain-limit-ms", "MS",
       "milliseconds snapshot-take and cbt-reset wait for an origin's writes in flight (a disk not "
       "answering) before they give up with busy",
       TuningUnit::count, 100, 3600000, false,
       [](const EngineConfig& c) -> uint64_t { return static_cast<uint64_t>(c.take_drain_limit.count()); },
       [](EngineConfig& c, uint64_t v) {
         c.take_drain_limit = c.cbt_reset_drain_limit = std::chrono::milliseconds(v);
       }},
  };
  return options;
}

Status out_of_bounds(const TuningOption& option, uint64_t value, const OptionSpelling& spelling) {
  const bool in_range = value >= option.minimum && value <= option.maximum;
  return {Errc::invalid_argument, spelling.with_value(option.name, value_text(option.unit, value)) +
                                      (in_range ? " is not a power of two" : " is out of range") +
                                      ": it must be " + option.bounds_text()};
}

// A maximum shift below its minimum shift would make the minimum meaningless: refused, naming both.
Status check_shift_order(const EngineConfig& config, std::string_view minimum_name,
                         std::string_view maximum_name, const OptionSpelling& spelling) {
  const TuningOption* minimum = find_tuning_option(minimum_name);
  const TuningOption* maximum = find_tuning_option(maximum_name);
  const uint64_t low = minimum->get(config), high = maximum->get(config);
  if (high >= low) return Status::ok();
  return {Errc::invalid_argument, spelling.with_value(maximum_name, std::to_string(high)) + " is below " +
                                      spelling.with_value(minimum_name, std::to_string(low)) + ": raise " +
                                      spelling.name(maximum_name) + " to at least " + std::to_string(low) +
                                      " or lower " + spelling.name(minimum_name)};
}

}  // namespace

std::string TuningOption::bounds_text() const {
  return value_text(unit, minimum) + ".." + value_text(unit, maximum) +
         (power_of_two ? ", a power of two" : "");
}

std::string TuningOption::help_text() const {
  return std::string(help) + " (default " + value_text(unit, get(EngineConfig{})) + "; " + bounds_text() +
         ")";
}

const std::vector<TuningOption>& tuning_options() {
  return make_options();
}

const TuningOption* find_tuning_option(std::string_view name) {
  for (const TuningOption& option : tuning_options()) {
    if (option.name == name) return &option;
  }
  return nullptr;
}

namespace {

// A whole number of digits only: "-1", "+3", " 4" and "0x10" are not (strtoull would take them).
Status parse_whole_number(std::string_view name, const std::string& text, const std::string& bounds,
                          const OptionSpelling& spelling, uint64_t& value) {
  const bool digits_only = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
  if (!digits_only) {
    return {Errc::invalid_argument, spelling.with_value(name, text) + ": expected a whole number " + bounds};
  }
  errno = 0;
  value = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE) {
    return {Errc::overflow, spelling.with_value(name, text) + " is too large: it must be " + bounds};
  }
  return Status::ok();
}

}  // namespace

Status parse_bounded_number(std::string_view name, const std::string& text, uint64_t minimum,
                            uint64_t maximum, const OptionSpelling& spelling, uint64_t& out) {
  const std::string bounds = std::to_string(minimum) + ".." + std::to_string(maximum);
  uint64_t value = 0;
  if (Status s = parse_whole_number(name, text, bounds, spelling, value); !s) return s;
  if (value < minimum || value > maximum) {
    return {Errc::invalid_argument,
            spelling.with_value(name, text) + " is out of range: it must be " + bounds};
  }
  out = value;
  return Status::ok();
}

Status parse_tuning_option(const TuningOption& option, const std::string& text, EngineConfig& config,
                           const OptionSpelling& spelling) {
  uint64_t value = 0;
  if (option.unit == TuningUnit::size) {
    if (Status s = parse_size(text, value); !s) {
      return {s.code(), spelling.with_value(option.name, text) + ": " + s.message()};
    }
  } else if (Status s = parse_whole_number(option.name, text, option.bounds_text(), spelling, value); !s) {
    return s;
  }
  option.set(config, value);
  if (option.get(config) != value) return out_of_bounds(option, value, spelling);  // did not fit the field
  return Status::ok();
}

Status sanitize_tuning(const EngineConfig& config, const OptionSpelling& spelling, std::string_view* wrong) {
  std::string_view ignored;
  std::string_view& name = wrong != nullptr ? *wrong : ignored;
  for (const TuningOption& option : tuning_options()) {
    const uint64_t value = option.get(config);
    if (value < option.minimum || value > option.maximum ||
        (option.power_of_two && (value & (value - 1)) != 0)) {
      name = option.name;
      return out_of_bounds(option, value, spelling);
    }
  }
  name = "chunk-max-shift";
  if (Status s = check_shift_order(config, "chunk-min-shift", name, spelling); !s) return s;
  name = "tracking-block-max-shift";
  return check_shift_order(config, "tracking-block-min-shift", name, spelling);
}

}  // namespace nbdsnap
