// SPDX-License-Identifier: BSD-3-Clause
// reply_shape.cpp — the table of reply fields per command (docs/control.md) and the walk that checks them.
#include "reply_shape.h"

#include <map>
#include <vector>

namespace nbdsnap::client {

namespace {

enum class Kind { text, count, integer, flag, list, object };

// A field by its path: members separated by '.', "[]" for every element of a list ("origins[].name").
// `required`: the reply means nothing without it (else only its type is checked, when present).
struct FieldShape {
  std::string path;
  Kind kind;
  bool required = false;
};

using Shape = std::vector<FieldShape>;

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::text:
      return "a string";
    case Kind::count:
      return "a number of 0 or more";
    case Kind::integer:
      return "an integer";
    case Kind::flag:
      return "true or false";
    case Kind::list:
      return "an array";
    case Kind::object:
      return "an object";
  }
  return "?";
}

const char* type_of(const nlohmann::json& value) {
  if (value.is_string()) return "a string";
  if (value.is_boolean()) return "a boolean";
  if (value.is_number()) return "a number";
  if (value.is_array()) return "an array";
  if (value.is_object()) return "an object";
  if (value.is_null()) return "null";
  return "something else";
}

bool has_kind(const nlohmann::json& value, Kind kind) {
  switch (kind) {
    case Kind::text:
      return value.is_string();
    case Kind::count:
      return value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0);
    case Kind::integer:
      return value.is_number_integer();
    case Kind::flag:
      return value.is_boolean();
    case Kind::list:
      return value.is_array();
    case Kind::object:
      return value.is_object();
  }
  return false;
}

// `prefix` + each field of `object` (the protocol's origin, snapshot, checkpoint... objects).
Shape under(const std::string& prefix, const Shape& object) {
  Shape shape;
  for (const FieldShape& field : object) shape.push_back({prefix + field.path, field.kind, field.required});
  return shape;
}

Shape join(std::initializer_list<Shape> parts) {
  Shape shape;
  for (const Shape& part : parts) shape.insert(shape.end(), part.begin(), part.end());
  return shape;
}

const Shape& origin_object() {
  static const Shape shape = {{"name", Kind::text, true},
                              {"size", Kind::count},
                              {"minimum_io_size", Kind::count},
                              {"read_only", Kind::flag},
                              {"generation", Kind::text},
                              {"change_number", Kind::count},
                              {"tracking_block_size", Kind::count},
                              {"chunk_size", Kind::count},
                              {"snapshot", Kind::text},
                              {"clients", Kind::count},
                              {"uri", Kind::text}};
  return shape;
}

const Shape& snapshot_object() {
  static const Shape shape = {{"name", Kind::text, true},        {"state", Kind::text},
                              {"writable", Kind::flag},          {"origins", Kind::list},
                              {"origins[]", Kind::text},         {"images", Kind::list},
                              {"images[]", Kind::object},        {"images[].origin", Kind::text},
                              {"images[].export", Kind::text},   {"images[].uri", Kind::text},
                              {"storage", Kind::list},           {"storage[]", Kind::object},
                              {"storage[].path", Kind::text},    {"storage[].offset", Kind::count},
                              {"storage[].size", Kind::count},   {"storage[].created", Kind::flag},
                              {"storage[].sparse", Kind::flag},  {"storage_total", Kind::count},
                              {"storage_used", Kind::count},     {"storage_limit", Kind::count},
                              {"chunks_copied", Kind::count},    {"memory_bytes", Kind::count},
                              {"corruption_reason", Kind::text}, {"origin_errors", Kind::list},
                              {"origin_errors[]", Kind::object}, {"taken_unix_ms", Kind::integer},
                              {"take_hold_us", Kind::count},     {"take_drain_us", Kind::count}};
  return shape;
}

const Shape& checkpoint_object() {
  static const Shape shape = {
      {"name", Kind::text, true}, {"number", Kind::count}, {"taken_unix_ms", Kind::integer}};
  return shape;
}

// What every page of a CBT map says about the map.
const Shape& cbt_page() {
  static const Shape shape = {{"origin", Kind::text},       {"snapshot", Kind::text},
                              {"generation", Kind::text},   {"change_number", Kind::count},
                              {"block_size", Kind::count},  {"device_size", Kind::count},
                              {"next_offset", Kind::count}, {"more", Kind::flag}};
  return shape;
}

const Shape& event_object() {
  static const Shape shape = {{"sequence", Kind::count, true},
                              {"time_unix_ms", Kind::integer},
                              {"type", Kind::text},
                              {"snapshot", Kind::text},
                              {"origin", Kind::text},
                              {"reason", Kind::text},
                              {"requested_bytes", Kind::count},
                              {"bytes", Kind::count},
                              {"errno", Kind::integer},
                              {"error", Kind::text}};
  return shape;
}

const std::map<std::string, Shape>& reply_shapes() {
  static const std::map<std::string, Shape> shapes = [] {
    const Shape origin = join({{{"origin", Kind::object, true}}, under("origin.", origin_object())});
    const Shape snapshot = join({{{"snapshot", Kind::object, true}}, under("snapshot.", snapshot_object())});
    const Shape checkpoints = join({{{"checkpoints", Kind::list}, {"checkpoints[]", Kind::object}},
                                    under("checkpoints[].", checkpoint_object())});
    std::map<std::string, Shape> table;
    table["version"] = {{"version", Kind::text, true}, {"protocol", Kind::count}, {"front_end", Kind::text}};
    table["origins"] = join(
        {{{"origins", Kind::list, true}, {"origins[]", Kind::object}}, under("origins[].", origin_object())});
    table["origin-info"] = origin;
    table["origin-attach"] = origin;
    table["cbt-info"] = {{"cbt", Kind::object, true},        {"cbt.origin", Kind::text},
                         {"cbt.snapshot", Kind::text},       {"cbt.generation", Kind::text},
                         {"cbt.change_number", Kind::count}, {"cbt.block_size", Kind::count},
                         {"cbt.block_count", Kind::count},   {"cbt.device_size", Kind::count},
                         {"cbt.checkpoints", Kind::object}};
    table["cbt-map"] = join({cbt_page(),
                             {{"ranges", Kind::list, true},
                              {"ranges[]", Kind::object},
                              {"ranges[].offset", Kind::count, true},
                              {"ranges[].length", Kind::count, true}}});
    table["cbt-raw-map"] = join({cbt_page(),
                                 checkpoints,
                                 {{"offset", Kind::count},
                                  {"length", Kind::count},
                                  {"runs", Kind::list, true},
                                  {"runs[]", Kind::list},
                                  {"runs[].[]", Kind::count}}});
    table["cbt-reset"] = {{"generation", Kind::text}};
    table["checkpoints"] =
        join({{{"generation", Kind::text}, {"checkpoints", Kind::list, true}}, checkpoints});
    for (const char* command :
         {"snapshot-create", "snapshot-take", "snapshot-append-storage", "snapshot-info"})
      table[command] = snapshot;
    table["snapshot-list"] = join({{{"snapshots", Kind::list, true}, {"snapshots[]", Kind::object}},
                                   under("snapshots[].", snapshot_object())});
    table["events-wait"] =
        join({{{"events", Kind::list, true}, {"events[]", Kind::object}, {"last_sequence", Kind::count}},
              under("events[].", event_object())});
    table["stats"] = {{"origins", Kind::list, true},         {"origins[]", Kind::object},
                      {"origins[].name", Kind::text, true},  {"snapshots", Kind::list, true},
                      {"snapshots[]", Kind::object},         {"snapshots[].name", Kind::text, true},
                      {"snapshots[].state", Kind::text},     {"snapshots[].images", Kind::list},
                      {"snapshots[].images[]", Kind::object}};
    for (const char* counter : {"writes", "bytes_written", "reads", "bytes_read", "chunks_copied",
                                "bytes_copied", "copy_on_write_ns", "cbt_blocks_marked", "clients"}) {
      table["stats"].push_back({std::string("origins[].") + counter, Kind::count});
    }
    for (const char* counter : {"storage_total", "storage_used", "storage_free", "storage_limit"})
      table["stats"].push_back({std::string("snapshots[].") + counter, Kind::count});
    return table;
  }();
  return shapes;
}

std::vector<std::string> segments_of(const std::string& path) {
  std::vector<std::string> segments;
  size_t start = 0;
  for (;;) {
    const size_t dot = path.find('.', start);
    std::string segment = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (segment.size() > 2 && segment.compare(segment.size() - 2, 2, "[]") == 0) {
      segments.push_back(segment.substr(0, segment.size() - 2));
      segments.emplace_back("[]");
    } else {
      segments.push_back(std::move(segment));
    }
    if (dot == std::string::npos) return segments;
    start = dot + 1;
  }
}

// Checks `value` (reached by `shown`, e.g. "snapshots[1]") against the field's remaining segments from `at`.
std::string check_at(const nlohmann::json& value, const std::vector<std::string>& segments, size_t at,
                     const std::string& shown, const FieldShape& field) {
  if (at == segments.size()) {
    if (has_kind(value, field.kind)) return {};
    return "'" + shown + "' is " + type_of(value) + ", expected " + kind_name(field.kind);
  }
  const std::string& segment = segments[at];
  if (segment == "[]") {
    if (!value.is_array()) return {};  // the list's own entry names that
    for (size_t i = 0; i < value.size(); ++i) {
      if (std::string problem =
              check_at(value[i], segments, at + 1, shown + "[" + std::to_string(i) + "]", field);
          !problem.empty())
        return problem;
    }
    return {};
  }
  if (!value.is_object()) return {};  // the enclosing object's own entry names that
  const std::string next = shown.empty() ? segment : shown + "." + segment;
  const auto member = value.find(segment);
  if (member == value.end())
    return field.required && at + 1 == segments.size() ? "'" + next + "' is missing" : "";
  return check_at(*member, segments, at + 1, next, field);
}

}  // namespace

std::string reply_shape_problem(const std::string& command, const nlohmann::json& result) {
  if (!result.is_object()) return std::string("the reply is ") + type_of(result) + ", expected an object";
  const auto shape = reply_shapes().find(command);
  if (shape == reply_shapes().end()) return {};
  for (const FieldShape& field : shape->second) {
    if (std::string problem = check_at(result, segments_of(field.path), 0, "", field); !problem.empty())
      return problem;
  }
  return {};
}

}  // namespace nbdsnap::client
