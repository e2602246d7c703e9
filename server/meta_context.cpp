// SPDX-License-Identifier: BSD-3-Clause
// meta_context.cpp — matching metadata context queries against what an export offers (see meta_context.h).
#include "meta_context.h"

#include <algorithm>

namespace nbdsnap {

std::vector<std::string> available_meta_contexts(const std::vector<std::string>& checkpoints) {
  std::vector<std::string> names{std::string(kBaseAllocation)};
  for (const auto& checkpoint : checkpoints) names.push_back(std::string(kDirtyBitmapPrefix) + checkpoint);
  return names;
}

std::vector<std::string> list_meta_context_matches(std::string_view query,
                                                   const std::vector<std::string>& available) {
  std::vector<std::string> out;
  // A query ending in ':' names a namespace (or the dirty-bitmap family) and lists everything under it.
  const bool wildcard = !query.empty() && query.back() == ':';
  for (const auto& name : available) {
    const bool match = wildcard ? std::string_view(name).starts_with(query) : name == query;
    if (match) out.push_back(name);
  }
  return out;
}

std::optional<MetaContext> select_meta_context(std::string_view query,
                                               const std::vector<std::string>& available) {
  if (std::find(available.begin(), available.end(), query) == available.end()) return std::nullopt;
  MetaContext context;
  context.name = std::string(query);
  if (query == kBaseAllocation) {
    context.kind = MetaContextKind::base_allocation;
  } else {
    context.kind = MetaContextKind::dirty_bitmap;
    context.checkpoint = std::string(query.substr(kDirtyBitmapPrefix.size()));
  }
  return context;
}

}  // namespace nbdsnap
