// SPDX-License-Identifier: BSD-3-Clause
// engine_exports.cpp — descriptions, features and name resolution of origin and image exports.
#include "engine_exports.h"

#include <algorithm>
#include <ctime>

#include "export_name.h"
#include "units.h"

namespace nbdsnap {

namespace {

std::string utc_time(int64_t unix_ms) {
  const std::time_t seconds = std::time_t(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return text;
}

}  // namespace

std::string OriginExport::description() const {
  return "origin, " + format_size(size()) + (origin_->read_only() ? ", read-only" : ", read-write");
}

ExportFeatures OriginExport::features() const {
  ExportFeatures f;
  f.read_only = origin_->read_only();
  f.can_flush = !f.read_only;
  f.can_zero = !f.read_only;
  f.can_trim = !f.read_only && origin_->can_trim();
  f.can_fast_zero = f.can_trim;  // zeroing by punching holes
  return f;
}

ExportFeatures ImageExport::features() const {
  ExportFeatures f;
  f.read_only = !image_->writable();
  f.can_zero = !f.read_only;
  return f;
}

std::vector<std::string> EngineCatalog::export_names() const {
  std::vector<std::string> names;
  std::vector<std::string> images = engine_.image_export_names();
  std::sort(images.begin(), images.end());
  for (const auto& origin : engine_.origins()) {
    names.push_back(origin.name);
    for (const auto& image : images) {
      ExportName parsed;
      if (parse_export_name(image, parsed).is_ok() && parsed.origin == origin.name) names.push_back(image);
    }
  }
  return names;
}

std::string EngineCatalog::image_description(const Image& image) const {
  std::string text = "snapshot " + image.snapshot_name() + " of " + image.origin_name();
  SnapshotInfo info;
  if (engine_.snapshot_info(image.snapshot_name(), info).is_ok() && info.taken_unix_ms > 0) {
    text += ", taken " + utc_time(info.taken_unix_ms);
  }
  text += ", " + format_size(image.size());
  text += image.writable() ? ", writable" : ", read-only";
  return text;
}

Status EngineCatalog::open(const std::string& name, std::shared_ptr<ServedExport>& out) const {
  std::string wanted = name;
  if (wanted.empty()) {  // the default export: the only origin, if there is exactly one
    auto origins = engine_.origins();
    if (origins.size() != 1) return {Errc::not_found, "no default export: name an origin or image"};
    wanted = origins.front().name;
  }
  ExportName parsed;
  Status status = parse_export_name(wanted, parsed);
  if (!status.is_ok()) return status;
  if (parsed.is_image()) {
    std::shared_ptr<Image> image;
    status = engine_.find_image(parsed.origin, parsed.snapshot, image);
    if (!status.is_ok()) return status;
    out = std::make_shared<ImageExport>(image, wanted, image_description(*image));
    return Status::ok();
  }
  std::shared_ptr<Origin> origin = engine_.find_origin(parsed.origin);
  if (!origin) return {Errc::not_found, "export '" + wanted + "' does not exist"};
  out = std::make_shared<OriginExport>(std::move(origin));
  return Status::ok();
}

}  // namespace nbdsnap
