// SPDX-License-Identifier: BSD-3-Clause
// meta_context_test.cpp — which contexts LIST and SET queries find.
#include <doctest/doctest.h>

#include "meta_context.h"

using namespace nbdsnap;

TEST_CASE("image_offers_base_allocation_and_one_dirty_bitmap_per_checkpoint") {
  const auto names = available_meta_contexts({"s1", "s2"});
  CHECK(names == std::vector<std::string>{"base:allocation", "qemu:dirty-bitmap:s1", "qemu:dirty-bitmap:s2"});
}

TEST_CASE("list_wildcards_match_namespaces_and_the_bitmap_family") {
  const auto names = available_meta_contexts({"s1"});
  CHECK(list_meta_context_matches("base:", names) == std::vector<std::string>{"base:allocation"});
  CHECK(list_meta_context_matches("qemu:", names) == std::vector<std::string>{"qemu:dirty-bitmap:s1"});
  CHECK(list_meta_context_matches("qemu:dirty-bitmap:", names).size() == 1);
  CHECK(list_meta_context_matches("x-other:", names).empty());
  CHECK(list_meta_context_matches("qemu:dirty-bitmap:nope", names).empty());
}

TEST_CASE("set_selects_exact_names_only") {
  const auto names = available_meta_contexts({"s1"});
  auto base = select_meta_context("base:allocation", names);
  REQUIRE(base);
  CHECK(base->kind == MetaContextKind::base_allocation);
  auto bitmap = select_meta_context("qemu:dirty-bitmap:s1", names);
  REQUIRE(bitmap);
  CHECK(bitmap->kind == MetaContextKind::dirty_bitmap);
  CHECK(bitmap->checkpoint == "s1");
  CHECK_FALSE(select_meta_context("base:", names));
  CHECK_FALSE(select_meta_context("qemu:dirty-bitmap:s2", names));
}
