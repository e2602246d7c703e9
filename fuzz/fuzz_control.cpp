// SPDX-License-Identifier: BSD-3-Clause
// fuzz_control.cpp — feeds arbitrary lines to the control command set of an engine with two small origins.
//
// Finds crashes, hangs and sanitizer reports in JSON parsing, argument checking and the engine calls behind
// them. Requests that would block or touch the file system outside a scratch directory are defused first.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "control.h"
#include "memory_device.h"

namespace {

class FuzzFrontEnd final : public nbdsnap::ControlFrontEnd {
 public:
  std::string front_end_name() const override { return "fuzz"; }
  std::string export_uri(const std::string& name) const override { return "nbd+unix:///" + name; }
};

struct World {
  World() {
    scratch = std::filesystem::temp_directory_path() / ("nbdsnap-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(scratch);
    nbdsnap::EngineConfig config;
    config.sizing.chunk_minimum_shift = 12;
    config.sizing.tracking_block_minimum_shift = 12;
    engine = std::make_unique<nbdsnap::Engine>(config);
    (void)engine->attach_origin("a", std::make_shared<nbdsnap::MemoryDevice>(1 << 20), false);
    (void)engine->attach_origin("b", std::make_shared<nbdsnap::MemoryDevice>(1 << 20), false);
    control = std::make_unique<nbdsnap::Control>(*engine, front_end);
  }
  std::filesystem::path scratch;
  FuzzFrontEnd front_end;
  std::unique_ptr<nbdsnap::Engine> engine;
  std::unique_ptr<nbdsnap::Control> control;
};

// Keeps storage paths inside the scratch directory and sizes small, and never lets events-wait sleep.
nlohmann::json defuse(nlohmann::json request, const std::filesystem::path& scratch) {
  if (!request.is_object()) return request;
  request.erase("timeout_ms");
  auto confine = [&](nlohmann::json& path) {
    if (path.is_string())
      path = (scratch / std::to_string(std::hash<std::string>{}(path.get<std::string>()) % 8)).string();
  };
  auto limit_size = [](nlohmann::json& object) {
    if (object.is_object() && object.contains("size") && object["size"].is_number_unsigned() &&
        object["size"].get<uint64_t>() > (1u << 20)) {
      object["size"] = 1u << 20;
    }
  };
  if (request.contains("path")) confine(request["path"]);
  limit_size(request);
  if (request.contains("storage") && request["storage"].is_array()) {
    for (auto& area : request["storage"]) {
      if (area.is_object() && area.contains("path")) confine(area["path"]);
      limit_size(area);
    }
  }
  return request;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World world;
  const std::string line(reinterpret_cast<const char*>(data), size);
  nlohmann::json request = nlohmann::json::parse(line, nullptr, false);
  if (request.is_discarded()) {
    (void)world.control->handle_line(line);  // the text path: parse errors must come back as error replies
    return 0;
  }
  const std::string reply = world.control->handle(defuse(std::move(request), world.scratch))
                                .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (reply.empty()) std::abort();
  return 0;
}
