// SPDX-License-Identifier: BSD-3-Clause
// client_commands.cpp — each command of docs/control.md as a typed call: its arguments encoded, its reply
// decoded (reply_decoding.h); the exchange itself is Client::Impl::exchange().
#include <algorithm>
#include <cerrno>

#include "client_impl.h"
#include "reply_decoding.h"

namespace nbdsnap::client {

namespace {

using std::chrono::milliseconds;

constexpr milliseconds kMaximumEventWait{24 * 3600 * 1000};  // the server's bound (docs/control.md)

Result<nlohmann::json> moved_from() {
  return client_failure(kNotConnected, ENOTCONN, "a moved-from client");
}

// The reply's member `key` decoded with `decode`, or the call's error.
template <typename Decode>
auto decoded(Result<nlohmann::json> reply, Decode decode) -> Result<decltype(decode(*reply))> {
  if (!reply) return reply.error();
  return decode(*reply);
}

template <typename Decode>
auto member_decoded(Result<nlohmann::json> reply, const char* key, Decode decode)
    -> Result<decltype(decode(*reply))> {
  if (!reply) return reply.error();
  static const nlohmann::json empty = nlohmann::json::object();
  auto it = reply->find(key);
  return decode(it != reply->end() ? *it : empty);
}

template <typename Decode>
auto list_decoded(Result<nlohmann::json> reply, const char* key, Decode decode)
    -> Result<std::vector<decltype(decode(*reply))>> {
  if (!reply) return reply.error();
  std::vector<decltype(decode(*reply))> values;
  auto it = reply->find(key);
  if (it != reply->end() && it->is_array()) {
    for (const auto& entry : *it) values.push_back(decode(entry));
  }
  return values;
}

// One exchange on the handle's state (Client::Impl, a private type the template deduces).
template <typename Impl>
Result<nlohmann::json> run(Impl* impl, const std::string& command, nlohmann::json arguments,
                           milliseconds server_wait = milliseconds(0)) {
  if (impl == nullptr) return moved_from();
  return impl->exchange(command, std::move(arguments), server_wait);
}

Result<void> done(const Result<nlohmann::json>& reply) {
  if (!reply) return reply.error();
  return {};
}

}  // namespace

Result<ServerVersion> Client::version() {
  return decoded(run(impl_.get(), "version", nlohmann::json::object()), decode_version);
}

Result<std::vector<Origin>> Client::origins() {
  return list_decoded(run(impl_.get(), "origins", nlohmann::json::object()), "origins", decode_origin);
}

Result<Origin> Client::origin_info(const std::string& name) {
  return member_decoded(run(impl_.get(), "origin-info", {{"name", name}}), "origin", decode_origin);
}

Result<Origin> Client::origin_attach(const std::string& name, const std::string& path, bool read_only) {
  nlohmann::json arguments = {{"name", name}, {"path", path}, {"read_only", read_only}};
  return member_decoded(run(impl_.get(), "origin-attach", arguments), "origin", decode_origin);
}

Result<void> Client::origin_detach(const std::string& name, bool force) {
  return done(run(impl_.get(), "origin-detach", nlohmann::json({{"name", name}, {"force", force}})));
}

Result<CbtInfo> Client::cbt_info(const std::string& origin, const std::string& snapshot) {
  nlohmann::json arguments = {{"origin", origin}};
  if (!snapshot.empty()) arguments["snapshot"] = snapshot;
  return member_decoded(run(impl_.get(), "cbt-info", arguments), "cbt", decode_cbt_info);
}

Result<CbtMap> Client::cbt_map(const CbtQuery& query) {
  if (!impl_) return moved_from().error();
  return decoded(impl_->one_page("cbt-map", encode_cbt_query(query, "max_ranges")), decode_cbt_map);
}

Result<CbtMap> Client::cbt_changed_ranges(const CbtQuery& query) {
  if (!impl_) return moved_from().error();
  return decoded(impl_->all_pages("cbt-map", encode_cbt_query(query, "max_ranges")), decode_cbt_map);
}

Result<CbtRawMap> Client::cbt_raw_map(const CbtQuery& query) {
  if (!impl_) return moved_from().error();
  nlohmann::json arguments = encode_cbt_query(query, "max_runs");
  arguments.erase("since");
  return decoded(impl_->one_page("cbt-raw-map", arguments), decode_cbt_raw_map);
}

Result<CbtRawMap> Client::cbt_whole_raw_map(const CbtQuery& query) {
  if (!impl_) return moved_from().error();
  nlohmann::json arguments = encode_cbt_query(query, "max_runs");
  arguments.erase("since");
  return decoded(impl_->all_pages("cbt-raw-map", std::move(arguments)), decode_cbt_raw_map);
}

Result<void> Client::cbt_mark_dirty(const std::string& origin, const std::vector<ByteRange>& ranges) {
  // Long lists go in several requests, each far below the protocol's 1 MiB line (docs/control.md); marking
  // only adds to what a backup copies, so stopping at a failed request leaves a safe map.
  constexpr size_t kPerRequest = kMarkDirtyRangesPerRequest;
  size_t first = 0;
  do {
    const size_t last = std::min(ranges.size(), first + kPerRequest);
    const std::vector<ByteRange> part(ranges.begin() + static_cast<std::ptrdiff_t>(first),
                                      ranges.begin() + static_cast<std::ptrdiff_t>(last));
    Result<void> sent = done(run(impl_.get(), "cbt-mark-dirty",
                                 nlohmann::json({{"origin", origin}, {"ranges", encode_ranges(part)}})));
    if (!sent) return sent;
    first = last;
  } while (first < ranges.size());
  return {};
}

Result<std::string> Client::cbt_reset(const std::string& origin) {
  Result<nlohmann::json> reply = run(impl_.get(), "cbt-reset", nlohmann::json({{"origin", origin}}));
  if (!reply) return reply.error();
  auto it = reply->find("generation");
  return it != reply->end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<CheckpointList> Client::checkpoints(const std::string& origin, const std::string& snapshot) {
  nlohmann::json arguments = {{"origin", origin}};
  if (!snapshot.empty()) arguments["snapshot"] = snapshot;
  return decoded(run(impl_.get(), "checkpoints", arguments), decode_checkpoint_list);
}

Result<void> Client::checkpoint_delete(const std::string& origin, const std::string& name) {
  return done(run(impl_.get(), "checkpoint-delete", nlohmann::json({{"origin", origin}, {"name", name}})));
}

Result<Snapshot> Client::snapshot_create(const SnapshotSpec& spec) {
  return snapshot_create(spec, StorageAllocation::allocated);
}

Result<Snapshot> Client::snapshot_create(const SnapshotSpec& spec, StorageAllocation allocation) {
  return member_decoded(run(impl_.get(), "snapshot-create", encode_snapshot_spec(spec, allocation)),
                        "snapshot", decode_snapshot);
}

Result<void> Client::snapshot_add(const std::string& name, const std::string& origin) {
  return done(run(impl_.get(), "snapshot-add", nlohmann::json({{"name", name}, {"origin", origin}})));
}

Result<void> Client::snapshot_remove(const std::string& name, const std::string& origin) {
  return done(run(impl_.get(), "snapshot-remove", nlohmann::json({{"name", name}, {"origin", origin}})));
}

Result<Snapshot> Client::snapshot_take(const std::string& name) {
  return member_decoded(run(impl_.get(), "snapshot-take", nlohmann::json({{"name", name}})), "snapshot",
                        decode_snapshot);
}

Result<Snapshot> Client::snapshot_append_storage(const std::string& name, const StorageArea& storage) {
  return snapshot_append_storage(name, storage, StorageAllocation::allocated);
}

Result<Snapshot> Client::snapshot_append_storage(const std::string& name, const StorageArea& storage,
                                                 StorageAllocation allocation) {
  nlohmann::json arguments = encode_storage_area(storage, allocation);
  arguments["name"] = name;
  return member_decoded(run(impl_.get(), "snapshot-append-storage", arguments), "snapshot", decode_snapshot);
}

Result<Snapshot> Client::snapshot_info(const std::string& name) {
  return member_decoded(run(impl_.get(), "snapshot-info", nlohmann::json({{"name", name}})), "snapshot",
                        decode_snapshot);
}

Result<std::vector<Snapshot>> Client::snapshots() {
  return list_decoded(run(impl_.get(), "snapshot-list", nlohmann::json::object()), "snapshots",
                      decode_snapshot);
}

Result<void> Client::snapshot_destroy(const std::string& name) {
  return snapshot_destroy(name, false);
}

Result<void> Client::snapshot_destroy(const std::string& name, bool force) {
  nlohmann::json request{{"name", name}};
  if (force) request["force"] = true;
  return done(run(impl_.get(), "snapshot-destroy", request));
}

Result<Stats> Client::stats() {
  return decoded(run(impl_.get(), "stats", nlohmann::json::object()), decode_stats);
}

Result<EventBatch> Client::wait_events(uint64_t after, milliseconds wait) {
  wait = std::clamp(wait, milliseconds(0), kMaximumEventWait);
  nlohmann::json arguments = {{"after", after}, {"timeout_ms", wait.count()}};
  return decoded(run(impl_.get(), "events-wait", arguments, wait), decode_event_batch);
}

Result<std::optional<Event>> EventStream::next(milliseconds wait) {
  if (next_buffered_ == buffered_.size()) {
    Result<EventBatch> batch = client_->wait_events(after_, wait);
    if (!batch) return batch.error();
    // Each event once, in sequence order: one at or below the newest kept is a replay (watch_events too).
    buffered_.clear();
    for (Event& event : batch->events) {
      if (event.sequence > (buffered_.empty() ? after_ : buffered_.back().sequence))
        buffered_.push_back(std::move(event));
    }
    next_buffered_ = 0;
  }
  if (next_buffered_ == buffered_.size()) return std::optional<Event>();
  Event event = std::move(buffered_[next_buffered_++]);
  after_ = event.sequence;
  return std::optional<Event>(std::move(event));
}

}  // namespace nbdsnap::client
