// SPDX-License-Identifier: BSD-3-Clause
// storage_spec_test.cpp — difference storage as users write it: PATH, PATH:SIZE, PATH:OFFSET+LENGTH, PATH:,
// and the messages for what cannot be read (never a file named after a typo).
#include "storage_spec.h"

#include <doctest/doctest.h>

#include "test_support.h"

using namespace nbdsnap;

namespace {

StorageSpec parsed(const std::string& text) {
  StorageSpec spec;
  REQUIRE_OK(parse_storage_spec(text, spec));
  return spec;
}

std::string refusal(const std::string& text) {
  StorageSpec spec;
  const Status s = parse_storage_spec(text, spec);
  CHECK_FALSE(s.is_ok());
  return s.message();
}
}  // namespace

TEST_CASE("a path alone is the whole existing file or device") {
  const StorageSpec spec = parsed("/var/lib/nbdsnap/diff0");
  CHECK(spec.path == "/var/lib/nbdsnap/diff0");
  CHECK(spec.size == 0);
  CHECK_FALSE(spec.is_range());
}

TEST_CASE("PATH:SIZE is a file created at SIZE") {
  StorageSpec spec = parsed("/var/lib/nbdsnap/diff1:2G");
  CHECK(spec.path == "/var/lib/nbdsnap/diff1");
  CHECK(spec.size == 2 * GiB);
  spec = parsed("diff2:1048576");
  CHECK(spec.path == "diff2");
  CHECK(spec.size == MiB);
}

TEST_CASE("PATH:OFFSET+LENGTH is a range of an existing file or device") {
  StorageSpec spec = parsed("/dev/sdb:10G+10G");
  CHECK(spec.path == "/dev/sdb");
  CHECK(spec.offset == 10 * GiB);
  CHECK(spec.length == 10 * GiB);
  CHECK(spec.size == 0);
  CHECK(spec.is_range());
  spec = parsed("/dev/sdb:0+4M");
  CHECK(spec.offset == 0);
  CHECK(spec.length == 4 * MiB);
  CHECK(spec.is_range());
}

TEST_CASE("the last colon splits, and a trailing colon keeps a path that contains colons") {
  StorageSpec spec = parsed("/dev/disk/by-path/pci-0000:00:1f.2-ata-1:");
  CHECK(spec.path == "/dev/disk/by-path/pci-0000:00:1f.2-ata-1");
  CHECK(spec.size == 0);
  CHECK_FALSE(spec.is_range());
  spec = parsed("/dev/disk/by-path/pci-0000:00:1f.2-ata-1:1G+2G");
  CHECK(spec.path == "/dev/disk/by-path/pci-0000:00:1f.2-ata-1");
  CHECK(spec.offset == GiB);
  CHECK(spec.length == 2 * GiB);
  spec = parsed("x:-5M:");
  CHECK(spec.path == "x:-5M");
}

TEST_CASE("what follows the last colon must be a size or a range, said in words") {
  std::string m = refusal("x:-5M");
  CHECK(m.find("storage 'x:-5M': '-5M' after the last ':' is not a size: size '-5M' is negative") == 0);
  CHECK(m.find("end the spec with ':' when the file name itself contains ':'") != std::string::npos);
  m = refusal("x:1.5G");
  CHECK(m.find("'1.5G' after the last ':' is not a size") != std::string::npos);
  CHECK(m.find("1.5G is 1536M") != std::string::npos);
  m = refusal("/dev/disk/by-path/pci-0000:00:1f.2-ata-1");
  CHECK(m.find("'1f.2-ata-1' after the last ':' is not a size") != std::string::npos);
  CHECK(m.find("(/dev/disk/by-path/pci-0000:00:1f.2-ata-1:)") != std::string::npos);
  m = refusal("d:1G+");
  CHECK(m.find("the range's length '' is not a size") != std::string::npos);
  m = refusal("d:+1G");
  CHECK(m.find("the range's offset '' is not a size") != std::string::npos);
  m = refusal("d:1G+0");
  CHECK(m.find("the range is empty") != std::string::npos);
  m = refusal("d:0");
  CHECK(m.find("a size of 0 bytes holds nothing") != std::string::npos);
  m = refusal("d:12Q");
  CHECK(m.find("unknown suffix 'Q'") != std::string::npos);
}

TEST_CASE("a storage spec without a path is refused") {
  CHECK(refusal("").find("has no path") != std::string::npos);
  CHECK(refusal(":1G").find("has no path") != std::string::npos);
}

TEST_CASE("a range whose end does not fit in 64 bits is refused") {
  StorageSpec spec;
  CHECK(parse_storage_spec("d:16383P+2P", spec).code() == Errc::overflow);
}

TEST_CASE("a spec from JSON may not mix a size with a range") {
  StorageSpec spec;
  spec.path = "/x";
  spec.size = GiB;
  spec.offset = MiB;
  CHECK(check_storage_spec(spec).code() == Errc::invalid_argument);
  spec.size = 0;
  CHECK_OK(check_storage_spec(spec));
  spec.path.clear();
  CHECK(check_storage_spec(spec).code() == Errc::invalid_argument);
}
