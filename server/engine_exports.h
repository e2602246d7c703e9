// SPDX-License-Identifier: BSD-3-Clause
// engine_exports.h — the exports nbdsnapd serves, over the engine: an origin (read-write through its tracker)
// and a snapshot image (frozen, read-only unless the snapshot is writable), plus the catalog naming them.
//
// These classes only translate; every decision (copy-on-write, CBT, frozen reads) is the engine's.
#pragma once

#include <memory>
#include <string>

#include "engine.h"
#include "image.h"
#include "origin.h"
#include "served_export.h"

namespace nbdsnap {

class OriginExport final : public ServedExport {
 public:
  explicit OriginExport(std::shared_ptr<Origin> origin) : origin_(std::move(origin)) {}
  const std::string& name() const override { return origin_->name(); }
  std::string description() const override;
  uint64_t size() const override { return origin_->size(); }
  ExportFeatures features() const override;
  Status read(void* buf, uint64_t len, uint64_t offset) override { return origin_->read(buf, len, offset); }
  Status write(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    return origin_->write(buf, len, offset, fua);
  }
  Status trim(uint64_t offset, uint64_t len, bool fua) override { return origin_->trim(offset, len, fua); }
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override {
    return origin_->zero(offset, len, may_trim, fua);
  }
  Status flush() override { return origin_->flush(); }
  Status allocation(uint64_t offset, uint64_t len, std::vector<Extent>& out) override {
    return origin_->extents(offset, len, out);
  }

 private:
  std::shared_ptr<Origin> origin_;
};

class ImageExport final : public ServedExport {
 public:
  ImageExport(std::shared_ptr<Image> image, std::string name, std::string description)
      : image_(std::move(image)), name_(std::move(name)), description_(std::move(description)) {}
  const std::string& name() const override { return name_; }
  std::string description() const override { return description_; }
  uint64_t size() const override { return image_->size(); }
  ExportFeatures features() const override;
  std::vector<std::string> dirty_bitmap_checkpoints() const override { return image_->usable_checkpoints(); }
  Status read(void* buf, uint64_t len, uint64_t offset) override { return image_->read(buf, len, offset); }
  Status write(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    return image_->write(buf, len, offset);
  }
  Status trim(uint64_t offset, uint64_t len, bool fua) override {
    return {Errc::not_supported, "images cannot be trimmed"};
  }
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override {
    return image_->zero(offset, len);
  }
  Status flush() override { return {Errc::not_supported, "images have no flush"}; }
  Status allocation(uint64_t offset, uint64_t len, std::vector<Extent>& out) override {
    return image_->extents(offset, len, out);
  }
  Status changed_since(const std::string& checkpoint, uint64_t offset, uint64_t len,
                       std::vector<Range>& out) override {
    return image_->changed_since(checkpoint, offset, len, out);
  }

 private:
  std::shared_ptr<Image> image_;
  std::string name_;
  std::string description_;
};

// Every origin of the engine as `NAME` and every image of a taken snapshot as `NAME@SNAPSHOT`.
class EngineCatalog final : public ExportCatalog {
 public:
  explicit EngineCatalog(Engine& engine) : engine_(engine) {}
  std::vector<std::string> export_names() const override;
  Status open(const std::string& name, std::shared_ptr<ServedExport>& out) const override;

 private:
  std::string image_description(const Image& image) const;
  Engine& engine_;
};

}  // namespace nbdsnap
