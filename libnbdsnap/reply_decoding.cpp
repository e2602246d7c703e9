// SPDX-License-Identifier: BSD-3-Clause
// reply_decoding.cpp — field by field, as docs/control.md describes each object.
#include "reply_decoding.h"

#include <algorithm>

namespace nbdsnap::client {

uint64_t count_of(const nlohmann::json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() > 0)
    return static_cast<uint64_t>(value.get<int64_t>());
  return 0;
}

namespace {

// Reads the members of one JSON object; anything absent or of another type gives the empty value. Every reply
// was checked against the protocol's table first (reply_shape.h), so a present member has its type.
class Members {
 public:
  explicit Members(const nlohmann::json& object) : object_(object) {}

  std::string text(const char* key) const {
    const nlohmann::json* member = find(key);
    return member != nullptr && member->is_string() ? member->get<std::string>() : std::string();
  }
  uint64_t count(const char* key) const {
    const nlohmann::json* member = find(key);
    return member == nullptr ? 0 : count_of(*member);
  }
  int64_t time_ms(const char* key) const {
    const nlohmann::json* member = find(key);
    return member != nullptr && member->is_number_integer() ? member->get<int64_t>() : 0;
  }
  bool flag(const char* key) const {
    const nlohmann::json* member = find(key);
    return member != nullptr && member->is_boolean() && member->get<bool>();
  }
  // The member if it is an array, else an empty array.
  const nlohmann::json& list(const char* key) const {
    static const nlohmann::json empty = nlohmann::json::array();
    const nlohmann::json* member = find(key);
    return member != nullptr && member->is_array() ? *member : empty;
  }
  const nlohmann::json& object(const char* key) const {
    static const nlohmann::json empty = nlohmann::json::object();
    const nlohmann::json* member = find(key);
    return member != nullptr && member->is_object() ? *member : empty;
  }

 private:
  const nlohmann::json* find(const char* key) const {
    if (!object_.is_object()) return nullptr;
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }
  const nlohmann::json& object_;
};

std::vector<ByteRange> decode_ranges(const nlohmann::json& list) {
  std::vector<ByteRange> ranges;
  for (const auto& entry : list) {
    Members range(entry);
    ranges.push_back({range.count("offset"), range.count("length")});
  }
  return ranges;
}

std::vector<Checkpoint> decode_checkpoints(const nlohmann::json& list) {
  std::vector<Checkpoint> checkpoints;
  for (const auto& entry : list) {
    Members checkpoint(entry);
    checkpoints.push_back(
        {checkpoint.text("name"), checkpoint.count("number"), checkpoint.time_ms("taken_unix_ms")});
  }
  return checkpoints;
}

std::vector<std::string> decode_names(const nlohmann::json& list) {
  std::vector<std::string> names;
  for (const auto& name : list) {
    if (name.is_string()) names.push_back(name.get<std::string>());
  }
  return names;
}

// What every page of a CBT map says about the map and where the next page starts.
template <typename Page>
void decode_page(const Members& members, Page& page) {
  page.generation = members.text("generation");
  page.change_number = members.count("change_number");
  page.block_size = members.count("block_size");
  page.device_size = members.count("device_size");
  page.more = members.flag("more");
  page.next_offset = members.count("next_offset");
}

}  // namespace

ServerVersion decode_version(const nlohmann::json& reply) {
  Members members(reply);
  return {members.text("version"), members.count("protocol"), members.text("front_end")};
}

Origin decode_origin(const nlohmann::json& object) {
  Members members(object);
  Origin origin;
  origin.name = members.text("name");
  origin.size = members.count("size");
  origin.read_only = members.flag("read_only");
  origin.generation = members.text("generation");
  origin.change_number = members.count("change_number");
  origin.tracking_block_size = members.count("tracking_block_size");
  origin.chunk_size = members.count("chunk_size");
  origin.snapshot = members.text("snapshot");
  origin.clients = members.count("clients");
  origin.uri = members.text("uri");
  return origin;
}

CbtInfo decode_cbt_info(const nlohmann::json& object) {
  Members members(object);
  CbtInfo info;
  info.origin = members.text("origin");
  info.snapshot = members.text("snapshot");
  info.generation = members.text("generation");
  info.change_number = members.count("change_number");
  info.block_size = members.count("block_size");
  info.block_count = members.count("block_count");
  info.device_size = members.count("device_size");
  // {NAME: NUMBER}; listed oldest (smallest number) first.
  for (const auto& [name, number] : members.object("checkpoints").items()) {
    info.checkpoints.push_back({name, count_of(number), 0});
  }
  std::stable_sort(info.checkpoints.begin(), info.checkpoints.end(),
                   [](const Checkpoint& a, const Checkpoint& b) { return a.number < b.number; });
  return info;
}

CbtMap decode_cbt_map(const nlohmann::json& reply) {
  Members members(reply);
  CbtMap map;
  decode_page(members, map);
  map.ranges = decode_ranges(members.list("ranges"));
  return map;
}

CbtRawMap decode_cbt_raw_map(const nlohmann::json& reply) {
  Members members(reply);
  CbtRawMap map;
  decode_page(members, map);
  map.checkpoints = decode_checkpoints(members.list("checkpoints"));
  map.offset = members.count("offset");
  map.length = members.count("length");
  // Each run is a pair of counts (the table's count_pair): none may be skipped, since a run has no offset of
  // its own and skipping one would move every later run onto other blocks.
  for (const auto& run : members.list("runs")) {
    if (run.is_array() && run.size() == 2)  // always (checked): the guard keeps a bad index out of reach
      map.runs.push_back({count_of(run[0]), count_of(run[1])});
  }
  return map;
}

CheckpointList decode_checkpoint_list(const nlohmann::json& reply) {
  Members members(reply);
  return {members.text("generation"), decode_checkpoints(members.list("checkpoints"))};
}

Snapshot decode_snapshot(const nlohmann::json& object) {
  Members members(object);
  Snapshot snapshot;
  snapshot.name = members.text("name");
  snapshot.state = members.text("state");
  snapshot.writable = members.flag("writable");
  snapshot.origins = decode_names(members.list("origins"));
  for (const auto& entry : members.list("images")) {
    Members image(entry);
    snapshot.images.push_back({image.text("origin"), image.text("export"), image.text("uri")});
  }
  for (const auto& entry : members.list("storage")) {
    Members area(entry);
    snapshot.storage.push_back({area.text("path"), area.count("size"), area.flag("created")});
  }
  snapshot.storage_total = members.count("storage_total");
  snapshot.storage_used = members.count("storage_used");
  snapshot.storage_limit = members.count("storage_limit");
  snapshot.chunks_copied = members.count("chunks_copied");
  snapshot.memory_bytes = members.count("memory_bytes");
  snapshot.corruption_reason = members.text("corruption_reason");
  snapshot.taken_unix_ms = members.time_ms("taken_unix_ms");
  snapshot.take_hold_us = members.count("take_hold_us");
  snapshot.take_drain_us = members.count("take_drain_us");
  return snapshot;
}

Stats decode_stats(const nlohmann::json& reply) {
  Members members(reply);
  Stats stats;
  for (const auto& entry : members.list("origins")) {
    Members o(entry);
    stats.origins.push_back({o.text("name"), o.count("writes"), o.count("bytes_written"), o.count("reads"),
                             o.count("bytes_read"), o.count("chunks_copied"), o.count("bytes_copied"),
                             o.count("copy_on_write_ns"), o.count("cbt_blocks_marked"), o.count("clients")});
  }
  for (const auto& entry : members.list("snapshots")) {
    Members s(entry);
    SnapshotStats snapshot{s.text("name"),
                           s.text("state"),
                           s.count("storage_total"),
                           s.count("storage_used"),
                           s.count("storage_free"),
                           s.count("storage_limit"),
                           {}};
    for (const auto& image_entry : s.list("images")) {
      Members image(image_entry);
      snapshot.images.push_back({image.text("origin"), image.text("export"), image.count("reads"),
                                 image.count("bytes_read"), image.count("clients")});
    }
    stats.snapshots.push_back(std::move(snapshot));
  }
  return stats;
}

Event decode_event(const nlohmann::json& object) {
  Members members(object);
  Event event;
  event.sequence = members.count("sequence");
  event.time_unix_ms = members.time_ms("time_unix_ms");
  event.type = members.text("type");
  event.snapshot = members.text("snapshot");
  event.origin = members.text("origin");
  event.reason = members.text("reason");
  event.requested_bytes = members.count("requested_bytes");
  event.bytes = members.count("bytes");
  return event;
}

EventBatch decode_event_batch(const nlohmann::json& reply) {
  Members members(reply);
  EventBatch batch;
  for (const auto& event : members.list("events")) batch.events.push_back(decode_event(event));
  batch.last_sequence = members.count("last_sequence");
  return batch;
}

nlohmann::json encode_ranges(const std::vector<ByteRange>& ranges) {
  nlohmann::json list = nlohmann::json::array();
  for (const ByteRange& range : ranges) list.push_back({{"offset", range.offset}, {"length", range.length}});
  return list;
}

nlohmann::json encode_cbt_query(const CbtQuery& query, const char* entries_key) {
  nlohmann::json arguments = {{"origin", query.origin}};
  if (!query.snapshot.empty()) arguments["snapshot"] = query.snapshot;
  if (!query.since.empty()) arguments["since"] = query.since;
  if (query.offset != 0) arguments["offset"] = query.offset;
  if (query.length) arguments["length"] = *query.length;
  if (query.max_entries != 0) arguments[entries_key] = query.max_entries;
  return arguments;
}

nlohmann::json encode_storage_area(const StorageArea& area, StorageAllocation allocation) {
  nlohmann::json entry = {{"path", area.path}, {"size", area.size}};
  // Only for a file created at a size (the server refuses sparse elsewhere), and only then sent at all.
  if (allocation == StorageAllocation::sparse && area.size != 0) entry["sparse"] = true;
  return entry;
}

nlohmann::json encode_snapshot_spec(const SnapshotSpec& spec, StorageAllocation allocation) {
  nlohmann::json arguments = {{"name", spec.name}, {"origins", spec.origins}, {"writable", spec.writable}};
  if (!spec.storage.empty()) {
    nlohmann::json storage = nlohmann::json::array();
    for (const StorageArea& area : spec.storage) storage.push_back(encode_storage_area(area, allocation));
    arguments["storage"] = storage;
  }
  if (spec.limit != 0) arguments["limit"] = spec.limit;
  return arguments;
}

}  // namespace nbdsnap::client
