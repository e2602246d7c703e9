// SPDX-License-Identifier: BSD-3-Clause
// storage_spec.cpp — the text form of difference storage and its checks (see storage_spec.h).
#include "storage_spec.h"

#include "units.h"

namespace nbdsnap {

namespace {

// How to write each form, for every message about a malformed spec.
std::string forms_advice(const std::string& text, const std::string& path) {
  return "write " + path + ":SIZE to create a file of SIZE bytes (e.g. " + path + ":2G), " + path +
         ":OFFSET+LENGTH for a range of an existing file or device (e.g. " + path +
         ":0+10G), or end the spec with ':' when the file name itself contains ':' (" + text + ":)";
}

Status bad_spec(const std::string& text, const std::string& problem, const std::string& path) {
  return {Errc::invalid_argument, "storage '" + text + "': " + problem + "; " + forms_advice(text, path)};
}

}  // namespace

std::string StorageSpec::to_string() const {
  if (is_range())
    return path + ":" + std::to_string(offset) + "+" + (length ? std::to_string(length) : "end");
  if (size != 0) return path + ":" + std::to_string(size);
  return path;
}

Status parse_storage_spec(const std::string& text, StorageSpec& out) {
  out = StorageSpec{};
  const auto colon = text.rfind(':');
  out.path = colon == std::string::npos ? text : text.substr(0, colon);
  if (out.path.empty()) {
    return {Errc::invalid_argument,
            "storage '" + text + "' has no path: write PATH, PATH:SIZE or PATH:OFFSET+LENGTH"};
  }
  if (colon == std::string::npos || colon + 1 == text.size()) return Status::ok();
  const std::string tail = text.substr(colon + 1);
  const auto plus = tail.find('+');
  if (plus == std::string::npos) {
    if (Status s = parse_size(tail, out.size); !s) {
      return bad_spec(text, "'" + tail + "' after the last ':' is not a size: " + s.message(), out.path);
    }
    if (out.size == 0) return bad_spec(text, "a size of 0 bytes holds nothing", out.path);
    return Status::ok();
  }
  const std::string offset = tail.substr(0, plus), length = tail.substr(plus + 1);
  if (Status s = parse_size(offset, out.offset); !s) {
    return bad_spec(text, "the range's offset '" + offset + "' is not a size: " + s.message(), out.path);
  }
  if (Status s = parse_size(length, out.length); !s) {
    return bad_spec(text, "the range's length '" + length + "' is not a size: " + s.message(), out.path);
  }
  if (out.length == 0) return bad_spec(text, "the range is empty (length 0)", out.path);
  return check_storage_spec(out);
}

Status check_storage_spec(const StorageSpec& spec) {
  if (spec.path.empty()) return {Errc::invalid_argument, "difference storage needs a path"};
  if (spec.size != 0 && spec.is_range()) {
    return {Errc::invalid_argument,
            "storage " + spec.path +
                ": give either a size (a file created at that size) or an offset and a "
                "length (a range of an existing file or device), not both"};
  }
  if (spec.sparse && spec.size == 0) {
    return {Errc::invalid_argument,
            "storage " + spec.to_string() +
                ": sparse applies to a file created (or grown) at a size (PATH:SIZE); a "
                "range or an existing file is used as it is, nothing is allocated there"};
  }
  if (spec.offset + spec.length < spec.offset) {
    return {Errc::overflow, "storage " + spec.to_string() + ": the range ends beyond 2^64 bytes"};
  }
  return Status::ok();
}

}  // namespace nbdsnap
