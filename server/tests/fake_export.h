// SPDX-License-Identifier: BSD-3-Clause
// fake_export.h — an in-memory ServedExport and ExportCatalog for tests of the wire code.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "memory_device.h"
#include "served_export.h"

namespace nbdsnap::testing {

class FakeExport final : public ServedExport {
 public:
  FakeExport(std::string name, uint64_t size, ExportFeatures features,
             std::vector<std::string> checkpoints = {})
      : name_(std::move(name)), device_(size), features_(features), checkpoints_(std::move(checkpoints)) {}
  const std::string& name() const override { return name_; }
  std::string description() const override { return "fake " + name_; }
  uint64_t size() const override { return device_.size(); }
  ExportFeatures features() const override { return features_; }
  std::vector<std::string> dirty_bitmap_checkpoints() const override { return checkpoints_; }
  Status read(void* buf, uint64_t len, uint64_t offset) override {
    if (fail_reads) return {Errc::io_error, "injected"};
    return device_.pread(buf, len, offset);
  }
  Status write(const void* buf, uint64_t len, uint64_t offset, bool fua) override {
    last_fua = fua;
    return device_.pwrite(buf, len, offset, fua);
  }
  Status trim(uint64_t offset, uint64_t len, bool fua) override { return device_.trim(offset, len, fua); }
  Status zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override {
    last_may_trim = may_trim;
    return device_.zero(offset, len, may_trim, fua);
  }
  Status flush() override { return Status::ok(); }
  Status allocation(uint64_t offset, uint64_t len, std::vector<Extent>& out) override {
    return device_.extents(offset, len, out);
  }
  Status changed_since(const std::string& checkpoint, uint64_t offset, uint64_t len,
                       std::vector<Range>& out) override {
    if (checkpoint != "c1") return {Errc::not_found, "no checkpoint " + checkpoint};
    out = changed;
    return Status::ok();
  }

  std::vector<Range> changed;
  bool fail_reads = false;
  bool last_fua = false;
  bool last_may_trim = false;

 private:
  std::string name_;
  MemoryDevice device_;
  ExportFeatures features_;
  std::vector<std::string> checkpoints_;
};

class FakeCatalog final : public ExportCatalog {
 public:
  void add(std::shared_ptr<FakeExport> e) { exports_[e->name()] = std::move(e); }
  std::vector<std::string> export_names() const override {
    std::vector<std::string> names;
    for (const auto& [name, e] : exports_) names.push_back(name);
    return names;
  }
  Status open(const std::string& name, std::shared_ptr<ServedExport>& out) const override {
    auto it = exports_.find(name);
    if (it == exports_.end()) return {Errc::not_found, "no export " + name};
    out = it->second;
    return Status::ok();
  }

 private:
  std::map<std::string, std::shared_ptr<FakeExport>> exports_;
};

inline ExportFeatures writable_features() {
  ExportFeatures f;
  f.read_only = false;
  f.can_flush = f.can_trim = f.can_zero = f.can_fast_zero = true;
  return f;
}

}  // namespace nbdsnap::testing
