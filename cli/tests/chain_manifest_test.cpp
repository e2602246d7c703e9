// SPDX-License-Identifier: BSD-3-Clause
// chain_manifest_test.cpp — the chain manifest: its JSON round trip, point names, backing chains, finding
// points by name or checkpoint, and what a prune keeps, merges and removes.
#include <doctest/doctest.h>

#include "chain_manifest.h"
#include "exit_codes.h"

using namespace nbdsnap::cli;

namespace {

ChainPoint point(const std::string& name, const std::string& backing, const std::string& state = "complete") {
  ChainPoint p;
  p.name = name;
  p.file = name + ".qcow2";
  p.backing = backing;
  p.state = state;
  p.kind = backing.empty() ? "full" : "incremental";
  p.checkpoint = "s" + name;
  p.size = 1 << 20;
  return p;
}

// 0001 (full) <- 0002 <- 0003, 0004 (full) <- 0005
ChainManifest two_chains() {
  ChainManifest manifest;
  manifest.points = {point("0001", ""), point("0002", "0001"), point("0003", "0002"), point("0004", ""),
                     point("0005", "0004")};
  return manifest;
}

}  // namespace

TEST_CASE("a_chain_manifest_survives_its_json_form") {
  ChainManifest manifest = two_chains();
  manifest.file_mode = 0640;
  manifest.points[1].checksums = {{"file_xxh3_128", "abc"}, {"file_sha256", "def"}};
  manifest.points[1].merged = {"0000"};
  ChainManifest back = chain_manifest_from_json(chain_manifest_to_json(manifest));
  REQUIRE(back.points.size() == 5);
  CHECK(back.file_mode == 0640);
  CHECK(back.points[1].backing == "0001");
  CHECK(back.points[1].checksums == manifest.points[1].checksums);
  CHECK(back.points[1].merged == std::vector<std::string>{"0000"});
  CHECK(chain_manifest_to_json(back) == chain_manifest_to_json(manifest));
}

TEST_CASE("a_manifest_whose_file_names_leave_the_directory_is_refused") {
  nlohmann::json json = chain_manifest_to_json(two_chains());
  json["points"][0]["file"] = "../etc/passwd";
  CHECK_THROWS_AS(chain_manifest_from_json(json), CliError);
  CHECK_THROWS_AS(chain_manifest_from_json(nlohmann::json{{"format", "other"}}), CliError);
}

TEST_CASE("point_names_count_up_from_the_largest_ever_used") {
  CHECK(next_point_name({}) == "0001");
  ChainManifest manifest = two_chains();
  manifest.points.erase(manifest.points.begin(), manifest.points.begin() + 3);  // pruned: 0004, 0005 left
  CHECK(next_point_name(manifest) == "0006");
}

TEST_CASE("points_are_found_by_name_or_by_checkpoint_and_the_newest_complete_is_the_base") {
  ChainManifest manifest = two_chains();
  manifest.points.push_back(point("0006", "0005", "writing"));
  CHECK(find_point(manifest, "0002")->name == "0002");
  CHECK(find_point(manifest, "s0003")->name == "0003");
  CHECK(find_point(manifest, "nothing") == nullptr);
  CHECK(newest_complete_point(manifest)->name == "0005");
}

TEST_CASE("a_backing_chain_lists_the_base_first_and_refuses_a_missing_link") {
  ChainManifest manifest = two_chains();
  std::vector<const ChainPoint*> chain = backing_chain(manifest, manifest.points[2]);
  REQUIRE(chain.size() == 3);
  CHECK(chain[0]->name == "0001");
  CHECK(chain[2]->name == "0003");
  manifest.points[1].backing = "0000";
  CHECK_THROWS_AS(backing_chain(manifest, manifest.points[2]), CliError);
}

TEST_CASE("prune_keeps_the_newest_points_and_merges_the_oldest_kept_one_with_its_bases") {
  ChainManifest manifest;
  manifest.points = {point("0001", ""), point("0002", "0001"), point("0003", "0002"), point("0004", "0003")};
  PrunePlan plan = plan_prune(manifest, 2);
  REQUIRE(plan.merge_into);
  CHECK(*plan.merge_into == "0003");
  CHECK(plan.merged_bases == std::vector<std::string>{"0001", "0002"});
  CHECK(plan.remove == std::vector<std::string>{"0001", "0002"});
}

TEST_CASE("prune_needs_no_merge_when_the_oldest_kept_point_is_full") {
  PrunePlan plan = plan_prune(two_chains(), 2);
  CHECK_FALSE(plan.merge_into);
  CHECK(plan.remove == std::vector<std::string>{"0001", "0002", "0003"});
}

TEST_CASE("prune_with_enough_room_removes_only_unfinished_points") {
  ChainManifest manifest = two_chains();
  CHECK(plan_prune(manifest, 5).empty());
  CHECK(plan_prune(manifest, 50).empty());
  manifest.points.push_back(point("0006", "0005", "writing"));
  PrunePlan plan = plan_prune(manifest, 10);
  CHECK_FALSE(plan.merge_into);
  CHECK(plan.remove == std::vector<std::string>{"0006"});
}

TEST_CASE("an_interrupted_prune_is_planned_again_the_same_way") {
  ChainManifest manifest;
  manifest.points = {point("0001", "", "pruning"), point("0002", "0001", "pruning"), point("0003", "0002"),
                     point("0004", "0003")};
  PrunePlan plan = plan_prune(manifest, 2);
  REQUIRE(plan.merge_into);
  CHECK(*plan.merge_into == "0003");
  CHECK(plan.remove == std::vector<std::string>{"0001", "0002"});
  // Even when more points would fit, points being pruned go.
  PrunePlan roomy = plan_prune(manifest, 10);
  REQUIRE(roomy.merge_into);
  CHECK(*roomy.merge_into == "0003");
}
