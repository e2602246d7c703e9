// SPDX-License-Identifier: BSD-3-Clause
// block_device_writes_test.cpp — a block device's content fingerprint changes with every write through it,
// ours or another program's, and stays the same while nobody writes; the reasons a changed one gives. The
// loop-device cases need root and losetup(8) and skip otherwise.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "block_device_writes.h"
#include "file_device.h"
#include "test_loop_device.h"
#include "test_support.h"
#include "unique_fd.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

TEST_CASE("a changed fingerprint says why: a new boot, uncounted writes, or writes while nothing tracked") {
  const std::string boot1 = "block 7:1 boot 11111111-aaaa sectors written 2490 discarded 0";
  const std::string boot1_later = "block 7:1 boot 11111111-aaaa sectors written 2514 discarded 0";
  const std::string boot2 = "block 7:1 boot 22222222-bbbb sectors written 2490 discarded 0";
  const std::string uncounted = uncounted_block_device_fingerprint(makedev(7, 1), "no boot id in /proc");
  CHECK(fingerprint_change_reason(boot1, boot1_later).find("changed while nothing tracked it") !=
        std::string::npos);
  CHECK(fingerprint_change_reason(boot1, boot2).find("the machine restarted since its clean stop") !=
        std::string::npos);
  CHECK(fingerprint_change_reason(boot1, uncounted).find("cannot be counted (no boot id in /proc)") !=
        std::string::npos);
  CHECK(fingerprint_change_reason(uncounted, boot1).find("could not be counted at its clean stop") !=
        std::string::npos);
  CHECK(fingerprint_change_reason("file 1:2 size 3", "file 1:2 size 4") ==
        "the origin was changed while nothing tracked it");
  // Uncounted fingerprints match nothing, not even each other: CBT then never resumes.
  CHECK(uncounted != uncounted_block_device_fingerprint(makedev(7, 1), "no boot id in /proc"));
}

TEST_CASE("a block device's fingerprint changes with each write through it, ours or not, and only then") {
  TempDir dir;
  const std::string file = (dir.path() / "disk.raw").string();
  {
    UniqueFd fd(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    REQUIRE(fd.get() >= 0);
    REQUIRE(::ftruncate(fd.get(), 4 * MiB) == 0);
  }
  const LoopDevice loop(file);
  if (loop.path().empty()) {
    MESSAGE("skipped: no loop device (needs root and losetup)");
    return;
  }
  std::unique_ptr<FileDevice> device;
  REQUIRE_OK(FileDevice::open(loop.path(), false, device));
  const std::string before = device->content_fingerprint();
  INFO("fingerprint: ", before);
  REQUIRE(before.rfind("block ", 0) == 0);
  REQUIRE(before.find(" uncounted ") == std::string::npos);  // this kernel counts a loop device's writes
  CHECK(device->content_fingerprint() == before);            // nobody wrote
  std::string identity;
  REQUIRE_OK(FileDevice::identity_of(loop.path(), identity));
  CHECK(FileDevice::content_fingerprint_of(loop.path(), identity) == before);  // as the filter reads it

  // Our own buffered write: counted once written back, which the fingerprint does first; then stable.
  const std::vector<char> data(4096, 'x');
  REQUIRE_OK(device->pwrite(data.data(), data.size(), 0, false));
  const std::string ours = device->content_fingerprint();
  CHECK(ours != before);
  CHECK(device->content_fingerprint() == ours);
  CHECK(FileDevice::content_fingerprint_of(loop.path(), identity) == ours);

  // Another program writing through the same device node, past the origin's tracker.
  {
    UniqueFd other(::open(loop.path().c_str(), O_WRONLY | O_CLOEXEC));
    REQUIRE(other.get() >= 0);
    REQUIRE(::pwrite(other.get(), data.data(), data.size(), MiB) == static_cast<ssize_t>(data.size()));
    REQUIRE(::fdatasync(other.get()) == 0);
  }
  const std::string theirs = device->content_fingerprint();
  CHECK(theirs != ours);
  CHECK(fingerprint_change_reason(ours, theirs).find("changed while nothing tracked it") !=
        std::string::npos);
}
