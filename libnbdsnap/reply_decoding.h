// SPDX-License-Identifier: BSD-3-Clause
// reply_decoding.h — the protocol's JSON objects turned into the values of nbdsnap/types.h, and back for
// the few a request carries. Every reply was checked first (reply_shape.h: a field of another type, or a
// missing one the reply needs, failed the call); a field left out reads as empty, 0 or false, and a newer
// server's extra fields are ignored. Internal.
#pragma once

#include <nlohmann/json.hpp>

#include "nbdsnap/types.h"

namespace nbdsnap::client {

// A number of 0 or more as reply_shape.cpp's "count" kind accepts it (-0 is a signed 0), else 0.
uint64_t count_of(const nlohmann::json& value);

ServerVersion decode_version(const nlohmann::json& reply);
Origin decode_origin(const nlohmann::json& object);
CbtInfo decode_cbt_info(const nlohmann::json& object);
CbtMap decode_cbt_map(const nlohmann::json& reply);
CbtRawMap decode_cbt_raw_map(const nlohmann::json& reply);
CheckpointList decode_checkpoint_list(const nlohmann::json& reply);
Snapshot decode_snapshot(const nlohmann::json& object);
Stats decode_stats(const nlohmann::json& reply);
Event decode_event(const nlohmann::json& object);
EventBatch decode_event_batch(const nlohmann::json& reply);

nlohmann::json encode_ranges(const std::vector<ByteRange>& ranges);
// The arguments of cbt-map / cbt-raw-map for a query; `entries_key` is "max_ranges" or "max_runs".
nlohmann::json encode_cbt_query(const CbtQuery& query, const char* entries_key);
// {path, size[, sparse]} of a storage area in snapshot-create and snapshot-append-storage.
nlohmann::json encode_storage_area(const StorageArea& area, StorageAllocation allocation);
nlohmann::json encode_snapshot_spec(const SnapshotSpec& spec, StorageAllocation allocation);

}  // namespace nbdsnap::client
