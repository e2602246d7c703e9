// SPDX-License-Identifier: BSD-3-Clause
// nbdsnap/types.h — the objects of the control protocol as C++ values: origins, snapshots, CBT maps,
// checkpoints and events (docs/control.md, "Commands" and the object descriptions below it).
//
// Sizes, offsets and lengths are bytes; times are milliseconds since the Unix epoch (0: unknown). A field
// the server does not send (an older server) reads as empty, 0 or false. Adding a field changes the ABI:
// the library's soname changes with it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace nbdsnap::client {

struct ServerVersion {
  std::string version;    // the server's nbdsnap version
  uint64_t protocol = 0;  // the control protocol's version (1)
  std::string front_end;  // "nbdsnapd" or "nbdkit-filter"
};

struct Origin {
  std::string name;
  uint64_t size = 0;
  bool read_only = false;
  std::string generation;  // the CBT generation: a new one means history was lost (do a full backup)
  uint64_t change_number = 0;
  uint64_t tracking_block_size = 0;
  uint64_t chunk_size = 0;
  std::string snapshot;  // the snapshot the origin is in, "" if none
  uint64_t clients = 0;  // NBD clients of the origin's export
  std::string uri;       // the origin's NBD URI, "" when the server does not know its own address
};

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t end() const { return offset + length; }
  bool operator==(const ByteRange&) const = default;
};

struct Checkpoint {
  std::string name;  // the snapshot whose take recorded it
  uint64_t number = 0;
  int64_t taken_unix_ms = 0;  // 0 when the server does not record take times
};

// cbt-info: the CBT of an origin, live or (with a snapshot) frozen at that snapshot's take.
struct CbtInfo {
  std::string origin;
  std::string snapshot;  // "" for the live map
  std::string generation;
  uint64_t change_number = 0;
  uint64_t block_size = 0;
  uint64_t block_count = 0;
  uint64_t device_size = 0;
  std::vector<Checkpoint> checkpoints;  // oldest first (cbt-info sends no take times)
};

// Which map a CBT query reads and which part of it. Paging (offset, length, max_*) needs a server that
// pages; an older one ignores these fields and answers with the whole map.
struct CbtQuery {
  std::string origin;
  std::string snapshot;            // "" for the live map; else the map frozen at this snapshot's take
  std::string since;               // cbt-map only: a checkpoint name; "" for all changes in the generation
  uint64_t offset = 0;             // first byte asked for
  std::optional<uint64_t> length;  // bytes asked for (none: to the end of the device)
  uint64_t max_entries = 0;        // max_ranges (cbt-map) or max_runs (cbt-raw-map); 0: the server's default
};

// cbt-map: one page of changed ranges.
struct CbtMap {
  std::string generation;
  uint64_t change_number = 0;
  uint64_t block_size = 0;
  uint64_t device_size = 0;
  std::vector<ByteRange> ranges;  // sorted, disjoint
  bool more = false;              // another page starts at next_offset
  uint64_t next_offset = 0;
};

// cbt-raw-map: one page of change numbers per tracking block, run-length encoded.
struct CbtRun {
  uint64_t number = 0;  // the blocks' change number (0: unchanged in this generation)
  uint64_t blocks = 0;  // how many consecutive blocks have it
};
struct CbtRawMap {
  std::string generation;
  uint64_t change_number = 0;
  uint64_t block_size = 0;
  uint64_t device_size = 0;
  std::vector<Checkpoint> checkpoints;
  uint64_t offset = 0;  // the first block covered, in bytes
  uint64_t length = 0;  // the bytes of the blocks covered
  std::vector<CbtRun> runs;
  bool more = false;
  uint64_t next_offset = 0;
};

struct CheckpointList {
  std::string generation;
  std::vector<Checkpoint> checkpoints;  // oldest first
};

// Difference storage: a file or block device given to a snapshot.
struct StorageArea {
  std::string path;      // as the server sees it: give absolute paths
  uint64_t size = 0;     // create (or grow) to this size; 0: use the existing size
  bool created = false;  // in replies: the server created the file
};

// How the server makes the files it creates at a size (docs/control.md, storage entries): fully allocated at
// once (a full filesystem fails the create), or sparse (nothing taken now; a full filesystem during
// copy-on-write fails the copy with ENOSPC and corrupts the snapshot). A separate argument, not a field of
// StorageArea, so that StorageArea's layout (and the soname) stays.
enum class StorageAllocation { allocated, sparse };

struct SnapshotSpec {
  std::string name;
  std::vector<std::string> origins;
  std::vector<StorageArea> storage;  // empty: the server's default storage (the filter's nbdsnap-storage=)
  uint64_t limit = 0;                // most difference storage the snapshot may use; 0: no limit
  bool writable = false;             // images accept writes (kept in difference storage)
};

struct SnapshotImage {
  std::string origin;
  std::string export_name;  // ORIGIN@SNAPSHOT
  std::string uri;
};

struct Snapshot {
  std::string name;
  std::string state;  // "created", "taken" or "corrupted"
  bool writable = false;
  std::vector<std::string> origins;
  std::vector<SnapshotImage> images;  // once taken
  std::vector<StorageArea> storage;
  uint64_t storage_total = 0;
  uint64_t storage_used = 0;
  uint64_t storage_limit = 0;
  uint64_t chunks_copied = 0;
  uint64_t memory_bytes = 0;
  std::string corruption_reason;
  int64_t taken_unix_ms = 0;
  uint64_t take_hold_us = 0;   // how long the take held new writes at its origins (microseconds)
  uint64_t take_drain_us = 0;  // how much of that it waited for writes in flight
};

// The `stats` command (docs/control.md): counters since the origin was attached / the snapshot taken.
struct OriginStats {
  std::string name;
  uint64_t writes = 0;  // write, trim and zero requests
  uint64_t bytes_written = 0;
  uint64_t reads = 0;  // read requests of the origin export
  uint64_t bytes_read = 0;
  uint64_t chunks_copied = 0;  // chunks whose old data reached difference storage
  uint64_t bytes_copied = 0;
  uint64_t copy_on_write_ns = 0;   // time writers spent copying chunks
  uint64_t cbt_blocks_marked = 0;  // CBT blocks marked by writes
  uint64_t clients = 0;            // connections to the origin export now
};

struct ImageStats {
  std::string origin;
  std::string export_name;  // ORIGIN@SNAPSHOT
  uint64_t reads = 0;       // read requests of the image
  uint64_t bytes_read = 0;
  uint64_t clients = 0;
};

struct SnapshotStats {
  std::string name;
  std::string state;  // "created", "taken" or "corrupted"
  uint64_t storage_total = 0;
  uint64_t storage_used = 0;
  uint64_t storage_free = 0;       // still allocatable, within the limit
  uint64_t storage_limit = 0;      // 0: none beyond the storage given
  std::vector<ImageStats> images;  // once taken
};

struct Stats {
  std::vector<OriginStats> origins;
  std::vector<SnapshotStats> snapshots;
};

struct Event {
  uint64_t sequence = 0;
  int64_t time_unix_ms = 0;
  std::string type;  // low_free_space, corrupted, storage_appended, snapshot_taken, snapshot_destroyed, ...
  std::string snapshot;
  std::string origin;
  std::string reason;
  uint64_t requested_bytes = 0;  // low_free_space: how much more storage would relieve it
  uint64_t bytes = 0;            // storage_appended
};

struct EventBatch {
  std::vector<Event> events;   // sequence > the `after` asked for, oldest first
  uint64_t last_sequence = 0;  // the newest sequence in the log
};

}  // namespace nbdsnap::client
