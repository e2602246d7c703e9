// SPDX-License-Identifier: BSD-3-Clause
// prometheus_text.cpp — `nbdsnap stats --prometheus` (see prometheus_text.h for the format's rules).
#include "prometheus_text.h"

#include <cstdio>
#include <functional>
#include <vector>

#include "json_fields.h"

namespace nbdsnap::cli {

namespace {

// One metric family: its name, type, help, and how to read its value from one JSON entry.
struct Family {
  const char* name;
  const char* type;  // "counter" or "gauge"
  const char* help;
  std::function<std::string(const nlohmann::json&)> value;
};

std::string integer(const nlohmann::json& entry, const char* key) {
  return std::to_string(field_uint(entry, key));
}

// Nanoseconds as seconds with every digit kept ("1.000000250").
std::string seconds_from_ns(uint64_t ns) {
  char text[48];
  std::snprintf(text, sizeof text, "%llu.%09llu", static_cast<unsigned long long>(ns / 1000000000),
                static_cast<unsigned long long>(ns % 1000000000));
  return text;
}

std::string label(const char* name, const std::string& value) {
  return std::string(name) + "=\"" + escape_label_value(value) + "\"";
}

// HELP and TYPE once, then one sample per entry (each with its labels).
void write_family(std::string& out, const Family& family, const std::vector<const nlohmann::json*>& entries,
                  const std::vector<std::string>& labels) {
  out += std::string("# HELP ") + family.name + " " + family.help + "\n";
  out += std::string("# TYPE ") + family.name + " " + family.type + "\n";
  for (size_t i = 0; i < entries.size(); ++i) {
    out += std::string(family.name) + "{" + labels[i] + "} " + family.value(*entries[i]) + "\n";
  }
}

auto count_of(const char* key) {
  return [key](const nlohmann::json& entry) { return integer(entry, key); };
}

const std::vector<Family>& origin_families() {
  static const std::vector<Family> families = {
      {"nbdsnap_origin_writes_total", "counter",
       "Write, trim and zero requests the origin's tracker admitted.", count_of("writes")},
      {"nbdsnap_origin_written_bytes_total", "counter", "Bytes of those requests.",
       count_of("bytes_written")},
      {"nbdsnap_origin_reads_total", "counter", "Read requests of the origin export that succeeded.",
       count_of("reads")},
      {"nbdsnap_origin_read_bytes_total", "counter", "Bytes of those reads.", count_of("bytes_read")},
      {"nbdsnap_origin_chunks_copied_total", "counter",
       "Chunks whose old data copy-on-write stored in difference storage (failed copies not counted).",
       count_of("chunks_copied")},
      {"nbdsnap_origin_copied_bytes_total", "counter", "Bytes of those chunks.", count_of("bytes_copied")},
      {"nbdsnap_origin_copy_on_write_seconds_total", "counter", "Time writers spent copying chunks.",
       [](const nlohmann::json& e) { return seconds_from_ns(field_uint(e, "copy_on_write_ns")); }},
      {"nbdsnap_origin_cbt_blocks_marked_total", "counter",
       "Change-tracking blocks marked by writes (a block written twice counts twice).",
       count_of("cbt_blocks_marked")},
      {"nbdsnap_origin_clients", "gauge", "NBD connections to the origin export.", count_of("clients")},
  };
  return families;
}

const std::vector<Family>& snapshot_families() {
  static const std::vector<Family> families = {
      {"nbdsnap_snapshot_storage_size_bytes", "gauge",
       "Bytes of all difference storage areas of the snapshot.", count_of("storage_total")},
      {"nbdsnap_snapshot_storage_used_bytes", "gauge", "Bytes of difference storage holding copied chunks.",
       count_of("storage_used")},
      {"nbdsnap_snapshot_storage_free_bytes", "gauge",
       "Bytes of difference storage still free (within the limit).", count_of("storage_free")},
      {"nbdsnap_snapshot_storage_limit_bytes", "gauge", "The snapshot's storage limit (0: none).",
       count_of("storage_limit")},
      {"nbdsnap_snapshot_corrupted", "gauge", "1 when the snapshot is corrupted, else 0.",
       [](const nlohmann::json& e) {
         return std::string(field_text(e, "state") == "corrupted" ? "1" : "0");
       }},
  };
  return families;
}

const std::vector<Family>& image_families() {
  static const std::vector<Family> families = {
      {"nbdsnap_image_reads_total", "counter", "Read requests of the snapshot image that succeeded.",
       count_of("reads")},
      {"nbdsnap_image_read_bytes_total", "counter", "Bytes of those reads.", count_of("bytes_read")},
      {"nbdsnap_image_clients", "gauge", "NBD connections to the snapshot image.", count_of("clients")},
  };
  return families;
}

}  // namespace

std::string escape_label_value(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_prometheus(const nlohmann::json& stats) {
  std::vector<const nlohmann::json*> origins, snapshots, images;
  std::vector<std::string> origin_labels, snapshot_labels, image_labels;
  for (const auto& origin : field_list(stats, "origins")) {
    origins.push_back(&origin);
    origin_labels.push_back(label("origin", field_text(origin, "name")));
  }
  for (const auto& snapshot : field_list(stats, "snapshots")) {
    snapshots.push_back(&snapshot);
    snapshot_labels.push_back(label("snapshot", field_text(snapshot, "name")));
    for (const auto& image : field_list(snapshot, "images")) {
      images.push_back(&image);
      image_labels.push_back(label("origin", field_text(image, "origin")) + "," +
                             label("snapshot", field_text(snapshot, "name")));
    }
  }
  std::string out;
  for (const Family& family : origin_families()) write_family(out, family, origins, origin_labels);
  for (const Family& family : snapshot_families()) write_family(out, family, snapshots, snapshot_labels);
  for (const Family& family : image_families()) write_family(out, family, images, image_labels);
  return out;
}

}  // namespace nbdsnap::cli
