// SPDX-License-Identifier: BSD-3-Clause
// reply_shape.cpp — the table of reply fields per command (docs/control.md, kept in
// python/nbdsnap/reply_shapes.json for both clients) and the walk that checks a reply against it.
#include "reply_shape.h"

#include <map>
#include <stdexcept>
#include <vector>

#include "reply_shapes_json.h"

namespace nbdsnap::client {

namespace {

enum class Kind { text, count, integer, flag, list, object, count_pair };

// A field by its path: members separated by '.', "[]" for every element of a list ("origins[].name"), "{}"
// for every member of an object ("cbt.checkpoints{}").
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
    case Kind::count_pair:
      return "an array of two numbers of 0 or more";
  }
  return "?";
}

const char* type_of(const nlohmann::json& value) {
  if (value.is_string()) return "a string";
  if (value.is_boolean()) return "a boolean";
  if (value.is_number_float()) return "a number that is not a 64-bit integer";
  if (value.is_number()) return "a number";
  if (value.is_array()) return "an array";
  if (value.is_object()) return "an object";
  if (value.is_null()) return "null";
  return "something else";
}

bool is_count(const nlohmann::json& value) {
  return value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0);
}

bool has_kind(const nlohmann::json& value, Kind kind) {
  switch (kind) {
    case Kind::text:
      return value.is_string();
    case Kind::count:
      return is_count(value);
    case Kind::integer:  // an unsigned value above 2^63 - 1 would read as a negative one
      return value.is_number_integer() &&
             (!value.is_number_unsigned() || value.get<uint64_t>() <= uint64_t(INT64_MAX));
    case Kind::flag:
      return value.is_boolean();
    case Kind::list:
      return value.is_array();
    case Kind::object:
      return value.is_object();
    case Kind::count_pair:
      return value.is_array() && value.size() == 2 && is_count(value[0]) && is_count(value[1]);
  }
  return false;
}

Kind kind_named(const std::string& name) {
  static const std::map<std::string, Kind> kinds = {
      {"text", Kind::text}, {"count", Kind::count},   {"integer", Kind::integer},      {"flag", Kind::flag},
      {"list", Kind::list}, {"object", Kind::object}, {"count_pair", Kind::count_pair}};
  const auto kind = kinds.find(name);
  if (kind == kinds.end()) throw std::logic_error("reply_shapes.json: unknown kind '" + name + "'");
  return kind->second;
}

// The fields of `fields` ({PATH: KIND} of reply_shapes.json) under `prefix`, an "@NAME" entry expanded to
// the fields of objects.NAME under its path.
void add_fields(const nlohmann::ordered_json& objects, const nlohmann::ordered_json& fields,
                const std::string& prefix, Shape& shape) {
  for (const auto& [path, kind_text] : fields.items()) {
    const std::string kind = kind_text.get<std::string>();
    if (kind.rfind('@', 0) == 0) {
      add_fields(objects, objects.at(kind.substr(1)), prefix + path, shape);
    } else {
      const bool required = !kind.empty() && kind.back() == '!';
      shape.push_back(
          {prefix + path, kind_named(required ? kind.substr(0, kind.size() - 1) : kind), required});
    }
  }
}

// The table, read once from python/nbdsnap/reply_shapes.json (compiled in): the Python package checks
// replies against the same file. `broken` says why a malformed table could not be read (then every reply is
// refused, which the library's unit tests see at once: they check replies of every command).
struct ReplyShapes {
  std::map<std::string, Shape> by_command;
  size_t max_depth = 0;
  std::string broken;
};

const ReplyShapes& reply_shapes() {
  static const ReplyShapes shapes = [] {
    ReplyShapes read;
    try {
      const nlohmann::ordered_json table = nlohmann::ordered_json::parse(kReplyShapesJson);
      read.max_depth = table.at("max_depth").get<size_t>();
      for (const auto& [command, fields] : table.at("commands").items())
        add_fields(table.at("objects"), fields, "", read.by_command[command]);
    } catch (const std::exception& e) {
      read.by_command.clear();
      read.broken =
          std::string("libnbdsnap's table of reply shapes (reply_shapes.json) is malformed: ") + e.what();
    }
    return read;
  }();
  return shapes;
}

std::vector<std::string> segments_of(const std::string& path) {
  std::vector<std::string> segments;
  size_t start = 0;
  for (;;) {
    const size_t dot = path.find('.', start);
    std::string segment = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (segment.size() > 2 && (segment.compare(segment.size() - 2, 2, "[]") == 0 ||
                               segment.compare(segment.size() - 2, 2, "{}") == 0)) {
      segments.push_back(segment.substr(0, segment.size() - 2));
      segments.push_back(segment.substr(segment.size() - 2));
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
  if (segment == "{}") {
    if (!value.is_object()) return {};  // the object's own entry names that
    for (const auto& [key, member] : value.items()) {
      if (std::string problem = check_at(member, segments, at + 1, shown + "." + key, field);
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
  const ReplyShapes& shapes = reply_shapes();
  if (!shapes.broken.empty()) return shapes.broken;
  const auto shape = shapes.by_command.find(command);
  if (shape == shapes.by_command.end()) return {};
  for (const FieldShape& field : shape->second) {
    if (std::string problem = check_at(result, segments_of(field.path), 0, "", field); !problem.empty())
      return problem;
  }
  return {};
}

std::string reply_nesting_problem(std::string_view line) {
  const ReplyShapes& shapes = reply_shapes();
  if (!shapes.broken.empty()) return shapes.broken;
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : line) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > shapes.max_depth)
        return "the reply nests lists and objects deeper than " + std::to_string(shapes.max_depth) +
               " levels";
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return {};
}

}  // namespace nbdsnap::client
