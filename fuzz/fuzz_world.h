// SPDX-License-Identifier: BSD-3-Clause
// fuzz_world.h — the server-side world the NBD protocol harnesses run against: an engine with one origin
// ("disk", 4 MiB in memory) and two taken snapshots, so images and qemu:dirty-bitmap contexts exist.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "engine.h"
#include "engine_exports.h"
#include "memory_device.h"

namespace nbdsnap::fuzz {

struct EngineWorld {
  EngineWorld() {
    scratch = std::filesystem::temp_directory_path() / ("nbdsnap-fuzz-nbd-" + std::to_string(::getpid()));
    std::filesystem::create_directories(scratch);
    EngineConfig config;
    config.sizing.chunk_minimum_shift = 16;
    config.sizing.tracking_block_minimum_shift = 16;
    engine = std::make_unique<Engine>(config);
    (void)engine->attach_origin("disk", std::make_shared<MemoryDevice>(4 << 20), false);
    auto origin = engine->find_origin("disk");
    const std::string payload(65536, 'x');
    (void)origin->write(payload.data(), payload.size(), 0, false);
    take("s1", 64 << 20);
    (void)origin->write(payload.data(), payload.size(), 1 << 20, false);
    (void)engine->destroy_snapshot("s1");
    take("s2", 64 << 20);
    catalog = std::make_unique<EngineCatalog>(*engine);
  }
  ~EngineWorld() {
    catalog.reset();
    engine.reset();
    std::error_code ignored;
    std::filesystem::remove_all(scratch, ignored);
  }

  void take(const std::string& name, uint64_t storage) {
    SnapshotOptions options;
    options.origins = {"disk"};
    options.storage = {{(scratch / name).string(), storage}};
    (void)engine->create_snapshot(name, options);
    (void)engine->take_snapshot(name);
  }

  std::filesystem::path scratch;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<EngineCatalog> catalog;
};

}  // namespace nbdsnap::fuzz
