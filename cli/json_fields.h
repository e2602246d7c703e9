// SPDX-License-Identifier: BSD-3-Clause
// json_fields.h — tolerant readers of reply fields: a missing or mistyped field reads as empty/0/false,
// so a newer server with extra or renamed fields still gets a table instead of an exception.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace nbdsnap::cli {

inline std::string field_text(const nlohmann::json& object, const char* key) {
  if (!object.is_object() || !object.contains(key)) return {};
  const auto& value = object[key];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return {};
  return value.dump();
}

inline uint64_t field_uint(const nlohmann::json& object, const char* key) {
  if (!object.is_object() || !object.contains(key)) return 0;
  const auto& value = object[key];
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0)
    return static_cast<uint64_t>(value.get<int64_t>());
  return 0;
}

inline int64_t field_int(const nlohmann::json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_number_integer()) return 0;
  return object[key].get<int64_t>();
}

inline bool field_bool(const nlohmann::json& object, const char* key) {
  return object.is_object() && object.contains(key) && object[key].is_boolean() && object[key].get<bool>();
}

// The array at `key`, or an empty array when the field is missing or not an array.
inline const nlohmann::json& field_list(const nlohmann::json& object, const char* key) {
  static const nlohmann::json empty = nlohmann::json::array();
  if (!object.is_object()) return empty;
  auto it = object.find(key);
  return it != object.end() && it->is_array() ? *it : empty;
}

}  // namespace nbdsnap::cli
