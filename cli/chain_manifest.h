// SPDX-License-Identifier: BSD-3-Clause
// chain_manifest.h — DIR/nbdsnap-chain.json: the restore points of a backup chain directory, oldest first.
//
// A chain directory holds one qcow2 file per point: a full point is a qcow2 file of its own; an incremental
// point is a qcow2 overlay backed by the previous point's file (a name relative to DIR), holding only the
// ranges that changed. The manifest records per point what it holds (origin, snapshot, CBT checkpoint and
// generation), when it was written, how many bytes, and a checksum of its file (file_digest.h), so `backup
// verify` can name a damaged file. A point is "writing" from before its file is created until its data is
// synced, and "complete" after; "pruning" marks points a prune is removing. Only complete points are restored
// or built upon. Pure (no I/O) but for load_chain_manifest() and save_chain_manifest().
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sys/types.h>

namespace nbdsnap::cli {

inline constexpr const char* kChainManifestName = "nbdsnap-chain.json";
inline constexpr const char* kChainLockName = ".nbdsnap-chain.lock";

struct ChainPoint {
  std::string name;     // "0001", "0002", ...: numbers never reused in a directory
  std::string file;     // "0001.qcow2", relative to the directory
  std::string backing;  // the point this one is an overlay of ("" for a point that stands alone)
  std::string state;    // "writing", "complete" or "pruning"
  std::string kind;     // "full" or "incremental" (as written; a merged point stands alone but keeps it)
  std::string origin;
  std::string snapshot;
  std::string checkpoint;                // the CBT checkpoint the point's content corresponds to ("" if none)
  int64_t checkpoint_taken_unix_ms = 0;  // when the server took it (0 unknown): BackupRecord says why
  std::string generation;                // the origin's CBT generation at backup time
  std::string since;                     // incremental: the checkpoint it copied the changes after
  std::string image_uri;
  uint64_t size = 0;        // the disk's size
  uint64_t bytes = 0;       // data and zeroes the point's own file holds
  uint64_t bytes_read = 0;  // read from the image to write it
  uint64_t file_bytes = 0;  // the qcow2 file's size
  int64_t started_unix_ms = 0;
  int64_t completed_unix_ms = 0;
  // Of the file once complete: manifest key ("file_xxh3_128", older points "file_sha256") -> lowercase
  // hex. Keys this version does not know are kept as they are.
  std::map<std::string, std::string> checksums;
  std::vector<std::string> merged;  // points a prune merged into this one's file
};

struct ChainManifest {
  mode_t file_mode = 0600;         // of the chain's files (set when it is created, or by --mode)
  std::vector<ChainPoint> points;  // oldest first
};

nlohmann::json chain_manifest_to_json(const ChainManifest& manifest);
// Throws CliError (io_error) for JSON that is not a chain manifest of ours.
ChainManifest chain_manifest_from_json(const nlohmann::json& json);

// The manifest of `directory`; empty when it has none. Throws CliError (io_error) when unreadable.
ChainManifest load_chain_manifest(const std::string& directory);
// Writes it atomically with `mode`.
void save_chain_manifest(const std::string& directory, const ChainManifest& manifest, mode_t mode);

// The point named `name` or whose checkpoint is `name` (the newest such), or null.
const ChainPoint* find_point(const ChainManifest& manifest, const std::string& name);
// The newest complete point, or null.
const ChainPoint* newest_complete_point(const ChainManifest& manifest);
// The name of the next point: one more than the largest number used so far ("0001" for the first).
std::string next_point_name(const ChainManifest& manifest);
// The point and the points it is built on, base first. Throws CliError (io_error) when a link is missing
// or loops.
std::vector<const ChainPoint*> backing_chain(const ChainManifest& manifest, const ChainPoint& point);

// What a prune keeping the newest `keep` complete points does: `merge_into` (if set) is the oldest kept
// point, an overlay whose base points are all dropped — its chain is merged into its base file, which then
// takes its place; `remove` lists every other point that goes (older, not complete, or being pruned).
struct PrunePlan {
  std::optional<std::string> merge_into;
  std::vector<std::string> merged_bases;  // merge_into's backing chain, base first
  std::vector<std::string> remove;
  bool empty() const { return !merge_into && remove.empty(); }
};
// REQUIRES: keep >= 1. Only complete points are kept; "writing" ones (left by a backup that did not finish:
// a backup and a prune never run at once) and "pruning" ones (an earlier prune that did not finish) go.
PrunePlan plan_prune(const ChainManifest& manifest, size_t keep);

}  // namespace nbdsnap::cli
