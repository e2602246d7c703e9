// SPDX-License-Identifier: BSD-3-Clause
// export_name_test.cpp — "ORIGIN" and "ORIGIN@SNAPSHOT" export names, and object name rules.
#include "export_name.h"

#include <doctest/doctest.h>

#include "test_support.h"

using namespace nbdsnap;

TEST_CASE("a name without at sign is an origin export") {
  ExportName name;
  REQUIRE_OK(parse_export_name("disk0", name));
  CHECK(name.origin == "disk0");
  CHECK(name.snapshot.empty());
  CHECK_FALSE(name.is_image());
}

TEST_CASE("origin at snapshot is an image export") {
  ExportName name;
  REQUIRE_OK(parse_export_name("disk0@nightly", name));
  CHECK(name.origin == "disk0");
  CHECK(name.snapshot == "nightly");
  CHECK(name.is_image());
}

TEST_CASE("an export name with two at signs is refused: origin names cannot hold one") {
  ExportName name;
  CHECK_ERRC(parse_export_name("a@b@c", name), Errc::invalid_argument);
}

TEST_CASE("export names with an empty part are refused") {
  ExportName name;
  CHECK_ERRC(parse_export_name("@snap", name), Errc::invalid_argument);
  CHECK_ERRC(parse_export_name("disk@", name), Errc::invalid_argument);
  CHECK_ERRC(parse_export_name("@", name), Errc::invalid_argument);
  CHECK_FALSE(parse_export_name("", name).is_ok());
}

TEST_CASE("format and parse of export names round-trip") {
  CHECK(format_export_name("disk0", "snap") == "disk0@snap");
  CHECK(format_export_name("disk0", "") == "disk0");
  ExportName name;
  REQUIRE_OK(parse_export_name(format_export_name("vm-1.img", "2026-11-26_night"), name));
  CHECK(name.origin == "vm-1.img");
  CHECK(name.snapshot == "2026-11-26_night");
}

TEST_CASE("object names allow printable characters other than slash and at sign") {
  CHECK_OK(check_object_name("origin", "disk0"));
  CHECK_OK(check_object_name("origin", "a.b-c_D9"));
  // Origins are often file names an nbdkit plugin chose.
  for (const char* good : {"vm disk.img", "a+b", "a:b", "é", "a\\b", "a*", "x.."}) {
    CAPTURE(good);
    CHECK_OK(check_object_name("origin", good));
  }
  CHECK_OK(check_object_name("snapshot", "x"));
  CHECK_OK(check_object_name("snapshot", "_x"));
  CHECK_OK(check_object_name("snapshot", std::string(255, 'a')));
}

TEST_CASE("object names that are empty, too long, or hold slash, at sign or control characters are refused") {
  CHECK_ERRC(check_object_name("origin", ""), Errc::invalid_argument);
  CHECK_ERRC(check_object_name("origin", std::string(256, 'a')), Errc::invalid_argument);
  CHECK_ERRC(check_object_name("origin", ".hidden"), Errc::invalid_argument);
  CHECK_ERRC(check_object_name("origin", "-option"), Errc::invalid_argument);
  for (const char* bad : {"a/b", "a@b", "a\nb", "..", "a\x7f", "\tx", "/"}) {
    CAPTURE(bad);
    CHECK_ERRC(check_object_name("snapshot", bad), Errc::invalid_argument);
  }
}

TEST_CASE("the refusal message names the kind of object") {
  const Status status = check_object_name("snapshot", "a/b");
  CHECK(status.message().find("snapshot") != std::string::npos);
}

TEST_CASE("export names in URI paths keep letters, digits and '@' and percent-encode the rest") {
  CHECK(export_name_uri_path("vm1@monday") == "vm1@monday");
  CHECK(export_name_uri_path("disk 1+2.raw") == "disk%201%2B2.raw");
  CHECK(export_name_uri_path("a?b#c%") == "a%3Fb%23c%25");
  CHECK(export_name_uri_path("\xc3\xa9t\xc3\xa9") == "%C3%A9t%C3%A9");
}

TEST_CASE("unix URIs percent-encode the socket path but keep its slashes") {
  CHECK(nbd_unix_uri("disk@s1", "/run/nbdsnap/nbdsnapd.sock") ==
        "nbd+unix:///disk@s1?socket=/run/nbdsnap/nbdsnapd.sock");
  CHECK(nbd_unix_uri("my disk", "/tmp/a b&c=d/nbd.sock") ==
        "nbd+unix:///my%20disk?socket=/tmp/a%20b%26c%3Dd/nbd.sock");
}
