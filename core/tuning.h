// SPDX-License-Identifier: BSD-3-Clause
// tuning.h — the engine's tuning options (sizing, buffers, low space, copy reads, CBT checkpoints kept, the
// drain limit of takes and CBT resets),
// named, bounded and checked in one place for both front ends: the sanitize step.
//
// LevelDB's SanitizeOptions is the model: every option is checked once, before the engine starts, and a bad
// value is refused with a message that names the option the way the user wrote it and gives its bounds. Both
// front ends list exactly these options with exactly these bounds: nbdsnapd as `--NAME VALUE` (`NAME = VALUE`
// in its config file), the nbdkit filter as `nbdsnap-NAME=VALUE`. The defaults are EngineConfig's, which are
// blksnap v4's module parameters where v4 has one (sizing.h; chunk_maximum_in_queue and
// free_diff_buffer_pool_size become one byte budget here, chunk-buffer-budget).
//
// Nothing is clamped silently: a value out of bounds, or a maximum below its minimum, is an error. What the
// engine still adapts per device (a chunk never below the device's minimum I/O size, a copy read never larger
// than a chunk) is part of the sizing rule, not a correction of the user's value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "options.h"
#include "status.h"

namespace nbdsnap {

// How a front end spells an option: "--chunk-min-shift 40" or "nbdsnap-chunk-min-shift=40".
struct OptionSpelling {
  std::string prefix;     // "--" or "nbdsnap-"
  std::string separator;  // " " or "="
  std::string name(std::string_view option) const { return prefix + std::string(option); }
  std::string with_value(std::string_view option, std::string_view value) const {
    return name(option) + separator + std::string(value);
  }
};

enum class TuningUnit {
  shift,  // a power-of-two exponent, a whole number
  count,  // a whole number
  size,   // bytes, as parse_size() reads them ("64M")
};

struct TuningOption {
  std::string_view name;        // "chunk-min-shift"
  std::string_view value_name;  // "N", "COUNT", "SIZE"
  std::string_view help;        // one line, without default or bounds (help_text() adds them)
  TuningUnit unit;
  uint64_t minimum;
  uint64_t maximum;
  bool power_of_two;  // sizes only: the value must be a power of two
  uint64_t (*get)(const EngineConfig&);
  void (*set)(EngineConfig&, uint64_t);

  // "smallest copy-on-write chunk is 2^N bytes (default 18; 12..30)".
  std::string help_text() const;
  // "12..30", "0 B..64 GiB".
  std::string bounds_text() const;
};

// Every tuning option, in the order the front ends list them. Thread-safe (immutable).
const std::vector<TuningOption>& tuning_options();
// The option named `name` (without prefix), or null.
const TuningOption* find_tuning_option(std::string_view name);

// Reads `text` as the value of `option` into config: a whole number for shifts and counts, a size such as
// "64M" for sizes. Bounds are sanitize_tuning()'s to check. Returns invalid_argument (overflow for a number
// too large to hold) naming the option as `spelling` writes it and saying what a value looks like.
Status parse_tuning_option(const TuningOption& option, const std::string& text, EngineConfig& config,
                           const OptionSpelling& spelling);

// Reads `text` as a whole number of the option `name` and checks it against minimum..maximum: the rule of
// every numeric option a front end has beside the tuning options (nbdsnapd's --threads, the CLI's --keep...),
// so every option error says the same words, with the option, the value and the bounds. Returns
// invalid_argument (not a whole number, out of bounds) or overflow (too large to hold); out is then
// unchanged.
Status parse_bounded_number(std::string_view name, const std::string& text, uint64_t minimum,
                            uint64_t maximum, const OptionSpelling& spelling, uint64_t& out);

// The sanitize step: checks every tuning option of config against its bounds, and the options that depend on
// each other (a maximum shift not below its minimum shift). Returns ok, or invalid_argument for the first
// option in tuning_options() order that is wrong, naming it as `spelling` writes it, with its value and its
// bounds. Front ends call it once, after reading all their options and before starting the engine. When
// `wrong` is not null it is set to the name of the option the error is about (to say where it was given).
Status sanitize_tuning(const EngineConfig& config, const OptionSpelling& spelling,
                       std::string_view* wrong = nullptr);

}  // namespace nbdsnap
