// SPDX-License-Identifier: BSD-3-Clause
// chain_manifest.cpp — the manifest's JSON form, its storage, and the chain and prune rules.
#include "chain_manifest.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "exit_codes.h"
#include "json_fields.h"
#include "private_files.h"

namespace nbdsnap::cli {

namespace {

constexpr const char* kManifestFormat = "nbdsnap-chain";
constexpr int kManifestFormatVersion = 1;

nlohmann::json point_to_json(const ChainPoint& point) {
  return {{"name", point.name},
          {"file", point.file},
          {"backing", point.backing},
          {"state", point.state},
          {"kind", point.kind},
          {"origin", point.origin},
          {"snapshot", point.snapshot},
          {"checkpoint", point.checkpoint},
          {"checkpoint_taken_unix_ms", point.checkpoint_taken_unix_ms},
          {"generation", point.generation},
          {"since", point.since},
          {"image_uri", point.image_uri},
          {"size", point.size},
          {"bytes", point.bytes},
          {"bytes_read", point.bytes_read},
          {"file_bytes", point.file_bytes},
          {"started_unix_ms", point.started_unix_ms},
          {"completed_unix_ms", point.completed_unix_ms},
          {"checksums", point.checksums},
          {"merged", point.merged}};
}

ChainPoint point_from_json(const nlohmann::json& json) {
  ChainPoint point;
  point.name = field_text(json, "name");
  point.file = field_text(json, "file");
  point.backing = field_text(json, "backing");
  point.state = field_text(json, "state");
  point.kind = field_text(json, "kind");
  point.origin = field_text(json, "origin");
  point.snapshot = field_text(json, "snapshot");
  point.checkpoint = field_text(json, "checkpoint");
  point.checkpoint_taken_unix_ms = field_int(json, "checkpoint_taken_unix_ms");  // 0 when absent
  point.generation = field_text(json, "generation");
  point.since = field_text(json, "since");
  point.image_uri = field_text(json, "image_uri");
  point.size = field_uint(json, "size");
  point.bytes = field_uint(json, "bytes");
  point.bytes_read = field_uint(json, "bytes_read");
  point.file_bytes = field_uint(json, "file_bytes");
  point.started_unix_ms = field_int(json, "started_unix_ms");
  point.completed_unix_ms = field_int(json, "completed_unix_ms");
  const nlohmann::json checksums = json.value("checksums", nlohmann::json::object());
  for (const auto& [key, value] : checksums.items()) {
    if (value.is_string()) point.checksums[key] = value.get<std::string>();
  }
  for (const auto& name : json.value("merged", nlohmann::json::array())) {
    if (name.is_string()) point.merged.push_back(name.get<std::string>());
  }
  return point;
}

// A point's name and file must stay inside the directory.
bool safe_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

}  // namespace

nlohmann::json chain_manifest_to_json(const ChainManifest& manifest) {
  nlohmann::json points = nlohmann::json::array();
  for (const ChainPoint& point : manifest.points) points.push_back(point_to_json(point));
  char mode[8];
  std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(manifest.file_mode));
  return {{"format", kManifestFormat},
          {"version", kManifestFormatVersion},
          {"file_mode", mode},
          {"points", points}};
}

ChainManifest chain_manifest_from_json(const nlohmann::json& json) {
  if (!json.is_object() || field_text(json, "format") != kManifestFormat) {
    throw CliError(ExitCode::io_error, "not an nbdsnap chain manifest");
  }
  if (field_uint(json, "version") != kManifestFormatVersion) {
    throw CliError(ExitCode::io_error,
                   "chain manifest version " + field_text(json, "version") + " is not supported");
  }
  ChainManifest manifest;
  const std::string mode = field_text(json, "file_mode");
  if (!mode.empty()) manifest.file_mode = static_cast<mode_t>(std::strtoul(mode.c_str(), nullptr, 8) & 0777);
  for (const auto& entry : json.value("points", nlohmann::json::array())) {
    ChainPoint point = point_from_json(entry);
    if (!safe_name(point.name) || !safe_name(point.file)) {
      throw CliError(ExitCode::io_error, "chain manifest: a point with the name '" + point.name +
                                             "' and file '" + point.file + "' (names are plain file names)");
    }
    manifest.points.push_back(std::move(point));
  }
  return manifest;
}

ChainManifest load_chain_manifest(const std::string& directory) {
  const std::string path = directory + "/" + kChainManifestName;
  if (!path_exists(path)) return {};
  const nlohmann::json json =
      nlohmann::json::parse(read_whole_file(path), nullptr, /*allow_exceptions=*/false);
  try {
    return chain_manifest_from_json(json);
  } catch (const CliError& error) {
    throw CliError(ExitCode::io_error, path + ": " + error.what());
  }
}

void save_chain_manifest(const std::string& directory, const ChainManifest& manifest, mode_t mode) {
  write_file_atomically(directory + "/" + kChainManifestName, chain_manifest_to_json(manifest).dump(2) + "\n",
                        mode);
}

const ChainPoint* find_point(const ChainManifest& manifest, const std::string& name) {
  for (const ChainPoint& point : manifest.points) {
    if (point.name == name) return &point;
  }
  for (auto it = manifest.points.rbegin(); it != manifest.points.rend(); ++it) {
    if (!it->checkpoint.empty() && it->checkpoint == name) return &*it;
  }
  return nullptr;
}

const ChainPoint* newest_complete_point(const ChainManifest& manifest) {
  for (auto it = manifest.points.rbegin(); it != manifest.points.rend(); ++it) {
    if (it->state == "complete") return &*it;
  }
  return nullptr;
}

std::string next_point_name(const ChainManifest& manifest) {
  unsigned long largest = 0;
  for (const ChainPoint& point : manifest.points) {
    char* end = nullptr;
    const unsigned long number = std::strtoul(point.name.c_str(), &end, 10);
    if (end != point.name.c_str() && *end == '\0') largest = std::max(largest, number);
  }
  char name[32];
  std::snprintf(name, sizeof(name), "%04lu", largest + 1);
  return name;
}

std::vector<const ChainPoint*> backing_chain(const ChainManifest& manifest, const ChainPoint& point) {
  std::vector<const ChainPoint*> chain = {&point};
  std::set<std::string> seen = {point.name};
  while (!chain.back()->backing.empty()) {
    const std::string& backing = chain.back()->backing;
    const ChainPoint* base = nullptr;
    for (const ChainPoint& candidate : manifest.points) {
      if (candidate.name == backing) base = &candidate;
    }
    if (base == nullptr) {
      throw CliError(ExitCode::io_error, "point " + chain.back()->name + " is built on point " + backing +
                                             ", which the chain manifest does not list");
    }
    if (!seen.insert(base->name).second) {
      throw CliError(ExitCode::io_error, "the chain manifest's backing links loop at point " + base->name);
    }
    chain.push_back(base);
  }
  std::reverse(chain.begin(), chain.end());
  return chain;
}

PrunePlan plan_prune(const ChainManifest& manifest, size_t keep) {
  std::vector<const ChainPoint*> complete;
  for (const ChainPoint& point : manifest.points) {
    if (point.state == "complete") complete.push_back(&point);
  }
  std::set<std::string> kept;
  for (size_t i = complete.size() > keep ? complete.size() - keep : 0; i < complete.size(); ++i) {
    kept.insert(complete[i]->name);
  }
  PrunePlan plan;
  for (const ChainPoint& point : manifest.points) {
    if (kept.count(point.name) == 0) plan.remove.push_back(point.name);
  }
  if (plan.remove.empty()) return plan;
  const size_t first_kept = complete.size() > keep ? complete.size() - keep : 0;
  const ChainPoint* oldest_kept = complete.empty() ? nullptr : complete[first_kept];
  if (oldest_kept != nullptr && !oldest_kept->backing.empty()) {
    plan.merge_into = oldest_kept->name;
    for (const ChainPoint* base : backing_chain(manifest, *oldest_kept)) {
      if (base != oldest_kept) plan.merged_bases.push_back(base->name);
    }
  }
  return plan;
}

}  // namespace nbdsnap::cli
