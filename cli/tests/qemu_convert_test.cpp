// SPDX-License-Identifier: BSD-3-Clause
// qemu_convert_test.cpp — the pure parts of qemu_convert.h: which URIs QEMU opens as given, and reading
// qemu-img's -p output (progress and the messages around it).
#include <doctest/doctest.h>

#include "qemu_convert.h"
#include "qemu_tools.h"

using namespace nbdsnap::cli;

TEST_CASE("qemu-img reads plain NBD URIs, not TLS ones or libnbd-only parameters") {
  CHECK(qemu_can_read_uri("nbd+unix:///disk@s1?socket=/tmp/x/nbd.sock"));
  CHECK(qemu_can_read_uri("nbd://127.0.0.1:10809/disk@s1"));
  CHECK(qemu_can_read_uri("nbd+tcp://[::1]:10809/disk@s1"));
  CHECK(qemu_can_read_uri("nbd://host/"));
  CHECK_FALSE(qemu_can_read_uri("nbds://host/disk@s1"));
  CHECK_FALSE(qemu_can_read_uri("nbds+unix:///disk@s1?socket=/s"));
  CHECK_FALSE(qemu_can_read_uri("nbd+unix:///disk@s1?socket=/s&tls-psk-file=/k"));
  CHECK_FALSE(qemu_can_read_uri("nbd://host/disk?tls=require"));
  CHECK_FALSE(qemu_can_read_uri("nbd+vsock://2:10809/disk"));
  CHECK_FALSE(qemu_can_read_uri("nbd+unix:///disk?socket=/s#frag"));
  CHECK(qemu_can_read_uri("nbd+unix://agent@/disk@s1?socket=/s"));
  CHECK(qemu_can_read_uri("nbd://agent@127.0.0.1/disk@s1"));
  // libnbd opens these (the last socket=, the host ignored, localhost), QEMU refuses them: the copier's.
  CHECK_FALSE(qemu_can_read_uri("nbd+unix:///disk?socket=/s&socket=/t"));
  CHECK_FALSE(qemu_can_read_uri("nbd+unix:///disk?socket=/s;socket=/t"));
  CHECK_FALSE(qemu_can_read_uri("nbd+unix://localhost/disk?socket=/s"));
  CHECK_FALSE(qemu_can_read_uri("nbd+unix://:5/disk?socket=/s"));
  CHECK_FALSE(qemu_can_read_uri("nbd+unix:///disk?socket="));
  CHECK_FALSE(qemu_can_read_uri("nbd+unix:///disk"));
  CHECK_FALSE(qemu_can_read_uri("nbd:///disk"));
  CHECK_FALSE(qemu_can_read_uri("nbd://:10809/disk"));
  CHECK_FALSE(qemu_can_read_uri("nbd://host/disk?socket=/s"));
  CHECK_FALSE(qemu_can_read_uri("nbd://host/disk#frag"));
  CHECK_FALSE(qemu_can_read_uri("/tmp/plain/file"));
  CHECK_FALSE(qemu_can_read_uri(""));
}

TEST_CASE("qemu-img -p output: the last share done, and the messages without the progress lines") {
  CHECK(qemu_progress_percent("") == -1);
  CHECK(qemu_progress_percent("    (0.00/100%)\r") == 0);
  CHECK(qemu_progress_percent("    (0.00/100%)\r    (1.01/100%)\r    (42.50/100%)\r") == 42.5);
  CHECK(qemu_progress_percent("    (100.00/100%)\n") == 100);
  CHECK(qemu_progress_percent("    (4") == -1);            // a line still being written
  CHECK(qemu_progress_percent("    (x/100%)\r") == -1);    // not a number
  CHECK(qemu_progress_percent("    (250/100%)\r") == -1);  // not a share
  CHECK(without_qemu_progress("    (0.00/100%)\r    (50.00/100%)\r") == "");
  CHECK(without_qemu_progress("    (0.00/100%)\rqemu-img: Could not open 'x': No such file\n") ==
        "qemu-img: Could not open 'x': No such file");
  CHECK(without_qemu_progress("Content mismatch at offset 65536!\n") == "Content mismatch at offset 65536!");
}

TEST_CASE("a qcow2 disk holds a disk of any size rounded up to 512-byte sectors, and no other") {
  CHECK(qcow2_holds_disk_of(1048576, 1048576));
  CHECK(qcow2_holds_disk_of(1049088, 1048676));  // 1 MiB + 100 bytes: QEMU's size is 1 MiB + 512
  CHECK(qcow2_holds_disk_of(512, 1));
  CHECK_FALSE(qcow2_holds_disk_of(1049088, 1048576));  // a whole sector more: another disk
  CHECK_FALSE(qcow2_holds_disk_of(1048576, 1048676));  // smaller than the disk
  CHECK_FALSE(qcow2_holds_disk_of(1049600, 1048676));  // two sectors up
}
