// SPDX-License-Identifier: BSD-3-Clause
// uuid.h — random (version 4) UUIDs: the CBT generation id.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace nbdsnap {

struct Uuid {
  std::array<uint8_t, 16> bytes{};
  static Uuid random();
  static std::optional<Uuid> parse(const std::string& text);
  std::string to_string() const;  // 8-4-4-4-12 lowercase hex
  bool operator==(const Uuid&) const = default;
};

}  // namespace nbdsnap
