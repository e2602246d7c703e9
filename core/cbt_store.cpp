// SPDX-License-Identifier: BSD-3-Clause
// cbt_store.cpp — CBT state files: one JSON header line, then the raw map bytes.
//
// The header carries a "clean" flag and an FNV-1a hash of the map, so a file left "in use" by a crash, or
// damaged on disk, is recognised and never trusted. It also carries the origin's name: a long name's file
// name is hashed (object_file_name.h), and a file holding another origin's name is not this origin's state.
// Format 2 keeps each checkpoint's take time and the names of recently dropped checkpoints; format 1 files
// (checkpoint name -> number) still load, with unknown take times.
#include "cbt_store.h"

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "durable_file.h"
#include "object_file_name.h"

namespace nbdsnap {

namespace {

constexpr const char* kMagic = "nbdsnap-cbt";
constexpr int kFormatVersion = 2;

uint64_t fnv1a(const std::vector<uint8_t>& bytes) {
  uint64_t hash = 14695981039346656037ull;
  for (const uint8_t b : bytes) hash = (hash ^ b) * 1099511628211ull;
  return hash;
}

// JSON text of a value. Origin names may hold bytes that are not UTF-8, which JSON text cannot: those are
// replaced (U+FFFD), the same way when a header is written and when a name is compared with it.
std::string json_text(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

using json = nlohmann::json;

json checkpoints_json(const Checkpoints& checkpoints) {
  json out = json::object();
  for (const auto& [name, c] : checkpoints)
    out[name] = {{"number", c.number}, {"taken_unix_ms", c.taken_unix_ms}};
  return out;
}

// Throws on a malformed header (the caller treats that as damaged).
Checkpoints checkpoints_from_json(const json& in, int version) {
  Checkpoints out;
  for (const auto& [name, value] : in.items()) {
    out[name] = version == 1
                    ? Checkpoint{value.get<uint8_t>(), 0}
                    : Checkpoint{value.at("number").get<uint8_t>(), value.at("taken_unix_ms").get<int64_t>()};
  }
  return out;
}

json dropped_json(const std::vector<DroppedCheckpoint>& dropped) {
  json out = json::array();
  for (const auto& d : dropped) out.push_back({{"name", d.name}, {"reason", d.reason}});
  return out;
}

std::vector<DroppedCheckpoint> dropped_from_json(const json& header) {
  std::vector<DroppedCheckpoint> out;
  if (!header.contains("dropped_checkpoints")) return out;
  for (const auto& d : header.at("dropped_checkpoints")) {
    out.push_back({d.at("name").get<std::string>(), d.at("reason").get<std::string>()});
  }
  return out;
}

}  // namespace

const char* cbt_load_result_name(CbtLoadResult result) {
  switch (result) {
    case CbtLoadResult::loaded:
      return "loaded";
    case CbtLoadResult::missing:
      return "no saved state";
    case CbtLoadResult::unclean:
      return "the last stop was not clean";
    case CbtLoadResult::mismatch:
      return "the saved state is for a device of another size";
    case CbtLoadResult::damaged:
      return "the saved state is damaged";
  }
  return "unknown";
}

std::string CbtStore::path_for(const std::string& origin) const {
  return dir_ + "/" + object_file_name(origin, ".cbt");
}

CbtLoadResult CbtStore::load(const std::string& origin, uint64_t device_size, CbtState& out) const {
  std::ifstream in(path_for(origin), std::ios::binary);
  if (!in) return CbtLoadResult::missing;
  std::string header_line;
  if (!std::getline(in, header_line)) return CbtLoadResult::damaged;
  try {
    const auto header = nlohmann::json::parse(header_line);
    const int version = header.at("version").get<int>();
    if (header.at("magic") != kMagic || version < 1 || version > kFormatVersion)
      return CbtLoadResult::damaged;
    // Files of earlier versions hold no name; they were only ever written under the plain file name.
    const bool is_this_origin = header.contains("origin")
                                    ? json_text(header.at("origin")) == json_text(origin)
                                    : object_file_name_is_plain(origin, ".cbt");
    if (!is_this_origin) return CbtLoadResult::missing;
    CbtState state;
    const auto generation = Uuid::parse(header.at("generation").get<std::string>());
    if (!generation) return CbtLoadResult::damaged;
    state.generation = *generation;
    state.number = header.at("number").get<uint8_t>();
    state.block_size = header.at("block_size").get<uint64_t>();
    state.device_size = header.at("device_size").get<uint64_t>();
    state.checkpoints = checkpoints_from_json(header.at("checkpoints"), version);
    state.dropped = dropped_from_json(header);
    state.device_fingerprint = header.value("device_fingerprint", std::string());  // older files lack it
    const auto map_bytes = header.at("map_bytes").get<uint64_t>();
    if (state.block_size == 0 || map_bytes != (state.device_size + state.block_size - 1) / state.block_size) {
      return CbtLoadResult::damaged;
    }
    state.map.resize(map_bytes);
    if (!in.read(reinterpret_cast<char*>(state.map.data()), static_cast<std::streamsize>(map_bytes))) {
      return CbtLoadResult::damaged;
    }
    if (header.at("map_hash").get<uint64_t>() != fnv1a(state.map)) return CbtLoadResult::damaged;
    const bool clean = header.at("clean").get<bool>();
    out = std::move(state);  // also when it cannot be resumed: its checkpoints are then remembered as gone
    if (!clean) return CbtLoadResult::unclean;
    if (out.device_size != device_size) return CbtLoadResult::mismatch;
    return CbtLoadResult::loaded;
  } catch (const std::exception&) {
    return CbtLoadResult::damaged;
  }
}

Status CbtStore::save(const std::string& origin, const CbtState& state, bool clean) const {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return Status::from_errno(ec.value(), "create state directory " + dir_);
  const nlohmann::json header = {{"magic", kMagic},
                                 {"version", kFormatVersion},
                                 {"clean", clean},
                                 {"origin", origin},
                                 {"generation", state.generation.to_string()},
                                 {"number", state.number},
                                 {"block_size", state.block_size},
                                 {"device_size", state.device_size},
                                 {"map_bytes", state.map.size()},
                                 {"map_hash", fnv1a(state.map)},
                                 {"checkpoints", checkpoints_json(state.checkpoints)},
                                 {"dropped_checkpoints", dropped_json(state.dropped)},
                                 {"device_fingerprint", state.device_fingerprint}};
  std::string bytes = json_text(header) + '\n';
  bytes.append(reinterpret_cast<const char*>(state.map.data()), state.map.size());
  // A crash leaves either the old or the new state, never a torn one.
  return replace_file_durably(path_for(origin), bytes, 0600);
}

Status CbtStore::remove(const std::string& origin) const {
  if (std::remove(path_for(origin).c_str()) != 0 && errno != ENOENT) {
    return Status::from_errno(errno, "remove " + path_for(origin));
  }
  return Status::ok();
}

}  // namespace nbdsnap
