// SPDX-License-Identifier: BSD-3-Clause
// meta_context.h — the NBD metadata contexts nbdsnapd serves and how client queries select them.
//
// Every export has `base:allocation`; an image export also has `qemu:dirty-bitmap:CHECKPOINT` for each
// checkpoint its CBT can answer (blocks changed between CHECKPOINT and the image's take, dirty flag 1 as QEMU
// encodes it). LIST accepts the wildcards `base:`, `qemu:` and `qemu:dirty-bitmap:`; SET selects exact names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nbdsnap {

inline constexpr std::string_view kBaseAllocation = "base:allocation";
inline constexpr std::string_view kDirtyBitmapPrefix = "qemu:dirty-bitmap:";

enum class MetaContextKind { base_allocation, dirty_bitmap };

// A context selected for a connection, with the id the server gave it.
struct MetaContext {
  uint32_t id = 0;
  MetaContextKind kind = MetaContextKind::base_allocation;
  std::string name;
  std::string checkpoint;  // dirty_bitmap only
};

// All context names an export offers, given its dirty bitmap checkpoints.
std::vector<std::string> available_meta_contexts(const std::vector<std::string>& checkpoints);
// Names of available contexts that one LIST query matches (wildcards allowed); unknown namespaces match none.
std::vector<std::string> list_meta_context_matches(std::string_view query,
                                                   const std::vector<std::string>& available);
// The context a SET query selects (exact name only), without its id.
std::optional<MetaContext> select_meta_context(std::string_view query,
                                               const std::vector<std::string>& available);

}  // namespace nbdsnap
