// SPDX-License-Identifier: BSD-3-Clause
// file_device_test.cpp — the file / block-device backend: create, read/write, short reads, extents, trim, and
// the locks that keep other processes out (with forked children holding locks as QEMU would).
#include "file_device.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "file_lock.h"
#include "test_support.h"

using namespace nbdsnap;
using namespace nbdsnap::test;

namespace {

// Whether the file system under dir reports holes (SEEK_HOLE before the end of a sparse file).
bool file_system_reports_holes(const TempDir& dir) {
  const std::string path = dir.file("probe");
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return false;
  const bool ok = ::ftruncate(fd, 1 << 20) == 0 && ::lseek(fd, 0, SEEK_HOLE) == 0;
  ::close(fd);
  ::unlink(path.c_str());
  return ok;
}

void check_contiguous(const std::vector<Extent>& extents, uint64_t offset, uint64_t len) {
  REQUIRE_FALSE(extents.empty());
  uint64_t next = offset;
  for (const Extent& extent : extents) {
    CHECK(extent.offset == next);
    CHECK(extent.length > 0);
    next = extent.offset + extent.length;
  }
  CHECK(next == offset + len);
}

}  // namespace

TEST_CASE("create makes a file of the given size and says it created it") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("diff"), 3 << 20, device, created));
  CHECK(created);
  CHECK(device->size() == (3u << 20));
  CHECK(std::filesystem::file_size(dir.file("diff")) == (3u << 20));
  CHECK(device->path() == dir.file("diff"));
  CHECK_FALSE(device->is_block_device());
  CHECK_FALSE(device->is_read_only());
  struct stat st {};
  REQUIRE(::stat(dir.file("diff").c_str(), &st) == 0);
  CHECK(device->file_identity() == "file " + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
  // A hard link is the same file: refused while the file is open here, the same identity once it is closed.
  std::filesystem::create_hard_link(dir.file("diff"), dir.file("link"));
  std::unique_ptr<FileDevice> link;
  CHECK_ERRC(FileDevice::open(dir.file("link"), true, link), Errc::already_exists);
  const std::string identity = device->file_identity();
  device.reset();
  REQUIRE_OK(FileDevice::open(dir.file("link"), true, link));
  CHECK(link->file_identity() == identity);
}

TEST_CASE("create on an existing file grows it and says it did not create it") {
  TempDir dir;
  {
    std::ofstream out(dir.file("diff"), std::ios::binary);
    out << "hello";
  }
  std::unique_ptr<FileDevice> device;
  bool created = true;
  REQUIRE_OK(FileDevice::create(dir.file("diff"), 1 << 20, device, created));
  CHECK_FALSE(created);
  CHECK(device->size() >= (1u << 20));
  std::vector<char> buf(5);
  REQUIRE_OK(device->pread(buf.data(), 5, 0));
  CHECK(std::string(buf.data(), 5) == "hello");
}

TEST_CASE("create in a missing directory fails") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  CHECK_FALSE(FileDevice::create(dir.file("no/such/dir"), 1 << 20, device, created).is_ok());
}

TEST_CASE("a descriptor's identity is its file's, whatever the path names since") {
  TempDir dir;
  const std::string path = dir.file("disk.raw"), moved = dir.file("moved.raw");
  std::ofstream(path) << "x";
  std::string by_path;
  REQUIRE_OK(FileDevice::identity_of(path, by_path));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  std::rename(path.c_str(), moved.c_str());
  std::ofstream(path) << "another file at the old path";
  std::string by_descriptor, now_named;
  CHECK(FileDevice::identity_of_descriptor(fd, by_descriptor));
  CHECK(by_descriptor == by_path);
  REQUIRE_OK(FileDevice::identity_of(path, now_named));
  CHECK(now_named != by_path);
  ::close(fd);
  CHECK_FALSE(FileDevice::identity_of_descriptor(fd, by_descriptor));
}

TEST_CASE("open of a missing file is not found") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  CHECK_ERRC(FileDevice::open(dir.file("missing"), false, device), Errc::not_found);
}

TEST_CASE("file device writes read back at unaligned offsets") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("disk"), 1 << 20, device, created));
  const auto data = pattern(70000, 1234, 5);
  REQUIRE_OK(device->pwrite(data.data(), data.size(), 1234, false));
  REQUIRE_OK(device->pwrite(data.data(), 1, (1 << 20) - 1, true));
  REQUIRE_OK(device->flush());
  std::vector<uint8_t> back(70000);
  REQUIRE_OK(device->pread(back.data(), back.size(), 1234));
  CHECK(back == data);

  // Another open of the same file, once this one is closed, sees the data.
  device.reset();
  std::unique_ptr<FileDevice> again;
  REQUIRE_OK(FileDevice::open(dir.file("disk"), true, again));
  CHECK(again->size() == (1u << 20));
  std::fill(back.begin(), back.end(), 0);
  REQUIRE_OK(again->pread(back.data(), back.size(), 1234));
  CHECK(back == data);
}

TEST_CASE("file device refuses ranges past its end") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("disk"), 8192, device, created));
  std::vector<uint8_t> buf(4096);
  CHECK_ERRC(device->pread(buf.data(), 4096, 4097), Errc::out_of_range);
  CHECK_ERRC(device->pwrite(buf.data(), 4096, 8192, false), Errc::out_of_range);
  CHECK(std::filesystem::file_size(dir.file("disk")) == 8192);
}

TEST_CASE("a short read from a file that shrank underneath is an error, not zeroes") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("disk"), 1 << 20, device, created));
  std::filesystem::resize_file(dir.file("disk"), 4096);
  std::vector<uint8_t> buf(8192, 0xaa);
  const Status status = device->pread(buf.data(), 8192, 0);
  CHECK_FALSE(status.is_ok());
  CHECK_FALSE(device->pread(buf.data(), 4096, 65536).is_ok());
}

TEST_CASE("a read-only file device refuses writes") {
  TempDir dir;
  {
    std::unique_ptr<FileDevice> device;
    bool created = false;
    REQUIRE_OK(FileDevice::create(dir.file("disk"), 65536, device, created));
  }
  std::unique_ptr<FileDevice> device;
  REQUIRE_OK(FileDevice::open(dir.file("disk"), true, device));
  CHECK(device->is_read_only());
  std::vector<uint8_t> buf(4096, 1);
  CHECK_ERRC(device->pwrite(buf.data(), 4096, 0, false), Errc::read_only);
}

TEST_CASE("file device extents report holes and data of a sparse file") {
  TempDir dir;
  const bool holes = file_system_reports_holes(dir);
  const uint64_t size = 4 << 20;
  {
    const int fd = ::open(dir.file("sparse").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
    const auto data = pattern(65536, 1 << 20, 1);
    REQUIRE(::pwrite(fd, data.data(), data.size(), 1 << 20) == 65536);
    REQUIRE(::pwrite(fd, data.data(), data.size(), 3 << 20) == 65536);
    ::close(fd);
  }
  std::unique_ptr<FileDevice> device;
  REQUIRE_OK(FileDevice::open(dir.file("sparse"), true, device));
  std::vector<Extent> extents;
  REQUIRE_OK(device->extents(0, size, extents));
  check_contiguous(extents, 0, size);
  bool hole_seen = false;
  for (const Extent& extent : extents) {
    const uint64_t end = extent.offset + extent.length;
    const bool covers_data = (extent.offset < (1 << 20) + 65536 && end > (1 << 20)) ||
                             (extent.offset < (3 << 20) + 65536 && end > (3u << 20));
    if (covers_data) CHECK_FALSE(extent.hole);
    if (extent.hole) {
      hole_seen = true;
      CHECK(extent.zero);
    }
  }
  if (holes) CHECK(hole_seen);

  // A window in the middle is clipped to the window.
  extents.clear();
  REQUIRE_OK(device->extents(512 << 10, 2 << 20, extents));
  check_contiguous(extents, 512 << 10, 2 << 20);
}

TEST_CASE("trim and zero on a file make the range read as zeroes") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("disk"), 1 << 20, device, created));
  CHECK(device->can_trim());
  const auto data = pattern(1 << 20, 0, 2);
  REQUIRE_OK(device->pwrite(data.data(), data.size(), 0, false));
  REQUIRE_OK(device->trim(256 << 10, 256 << 10, false));
  REQUIRE_OK(device->zero(700000, 5000, false, false));
  REQUIRE_OK(device->zero(800 << 10, 65536, true, false));
  std::vector<uint8_t> back(1 << 20);
  REQUIRE_OK(device->pread(back.data(), back.size(), 0));
  auto expected = data;
  std::fill(expected.begin() + (256 << 10), expected.begin() + (512 << 10), 0);
  std::fill(expected.begin() + 700000, expected.begin() + 705000, 0);
  std::fill(expected.begin() + (800 << 10), expected.begin() + (800 << 10) + 65536, 0);
  CHECK(first_difference(back, expected) == -1);
  CHECK(device->size() == (1u << 20));
}

TEST_CASE("concurrent writers to one file device all land") {
  TempDir dir;
  std::unique_ptr<FileDevice> device;
  bool created = false;
  REQUIRE_OK(FileDevice::create(dir.file("disk"), 1 << 20, device, created));
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back([&device, t] {
      for (uint64_t offset = t * 4096; offset < device->size(); offset += 4 * 4096) {
        const auto data = pattern(4096, offset, 4);
        CHECK(device->pwrite(data.data(), 4096, offset, false).is_ok());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::vector<uint8_t> back(1 << 20);
  REQUIRE_OK(device->pread(back.data(), back.size(), 0));
  CHECK(back == pattern(1 << 20, 0, 4));
}

// ---------------------------------------------------------------- locks (file_lock.h)

namespace {

struct ByteLock {
  short type;  // F_RDLCK or F_WRLCK
  off_t start;
  off_t length;  // 0: to the end
};

// A forked child that opens `path` read-write, takes OFD locks as another program would (QEMU, a second
// nbdsnapd), names itself `command` and holds them until destroyed. Every wait is bounded.
class LockHoldingChild {
 public:
  LockHoldingChild(const std::string& path, const std::vector<ByteLock>& locks, const char* command) {
    int ready[2], release[2];
    REQUIRE(::pipe(ready) == 0);
    REQUIRE(::pipe(release) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {  // only async-signal-safe calls from here on
      ::close(ready[0]);
      ::close(release[1]);  // so that the parent closing its end wakes the poll below
      ::prctl(PR_SET_NAME, command);
      const int fd = ::open(path.c_str(), O_RDWR);
      char status = fd >= 0 ? 'y' : 'n';
      for (const ByteLock& lock : locks) {
        struct flock fl {};
        fl.l_type = lock.type;
        fl.l_whence = SEEK_SET;
        fl.l_start = lock.start;
        fl.l_len = lock.length;
        if (::fcntl(fd, F_OFD_SETLK, &fl) != 0) status = 'n';
      }
      (void)!::write(ready[1], &status, 1);
      struct pollfd until_released {
        release[0], POLLIN, 0
      };
      ::poll(&until_released, 1, 30000);
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(release[0]);
    release_ = release[1];
    struct pollfd wait_ready {
      ready[0], POLLIN, 0
    };
    char status = 'n';
    const bool answered = ::poll(&wait_ready, 1, 10000) == 1 && ::read(ready[0], &status, 1) == 1;
    ::close(ready[0]);
    REQUIRE_MESSAGE((answered && status == 'y'), "the child could not take its locks");
  }
  ~LockHoldingChild() {
    ::close(release_);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  LockHoldingChild(const LockHoldingChild&) = delete;
  LockHoldingChild& operator=(const LockHoldingChild&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int release_ = -1;
};

std::string make_file(const TempDir& dir, const std::string& name, size_t size) {
  const std::string path = dir.file(name);
  std::ofstream out(path, std::ios::binary);
  out << std::string(size, 'o');
  return path;
}

// Whether an open file other than `fd`'s own holds a lock that conflicts with a write lock on one byte.
bool byte_is_locked(const std::string& path, off_t byte) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  REQUIRE(::fcntl(fd, F_OFD_GETLK, &fl) == 0);
  ::close(fd);
  return fl.l_type != F_UNLCK;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("a file another process locked exclusively is refused, naming the process, and left unchanged") {
  TempDir dir;
  const std::string path = make_file(dir, "disk", 4096);
  LockHoldingChild holder(path, {{F_WRLCK, 0, 0}}, "lock-holder");
  const std::string named = "(lock-holder, pid " + std::to_string(holder.pid()) + ")";
  std::unique_ptr<FileDevice> device;
  Status rw = FileDevice::open(path, false, device);
  CHECK(rw.code() == Errc::busy);
  CHECK_MESSAGE(contains(rw.message(), path + " is locked by another process " + named), rw.message());
  CHECK(to_errno(rw) == EBUSY);
  Status ro = FileDevice::open(path, true, device);
  CHECK(ro.code() == Errc::busy);
  CHECK_MESSAGE(contains(ro.message(), named), ro.message());
  bool created = true;
  CHECK_ERRC(FileDevice::create(path, 1 << 20, device, created), Errc::busy);
  CHECK_FALSE(created);
  CHECK(std::filesystem::file_size(path) == 4096);  // not grown behind the holder's back
}

// attack13 F6: a holder that let go between our refused lock and the /proc scan was reported as "a process
// not found in /proc" holding a file that was free by then. A child takes and drops its lock over and over
// (held 1 ms, free 10 ms): each open either gets the file or names the child.
TEST_CASE("a holder that lets go while it is looked up is neither reported as hidden nor blocks the open") {
  TempDir dir;
  const std::string path = make_file(dir, "disk", 4096);
  int stop[2];
  REQUIRE(::pipe(stop) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // only async-signal-safe calls from here on
    ::close(stop[1]);
    ::prctl(PR_SET_NAME, "lock-toggler");
    const int fd = ::open(path.c_str(), O_RDWR);
    struct flock fl {};
    fl.l_whence = SEEK_SET;
    struct pollfd until_stopped {
      stop[0], POLLIN, 0
    };
    for (int i = 0; i < 3000 && ::poll(&until_stopped, 1, 10) == 0; ++i) {  // 30 s at most
      fl.l_type = F_WRLCK;
      if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) {
        const struct timespec held { 0, 1000000 };
        ::nanosleep(&held, nullptr);
        fl.l_type = F_UNLCK;
        (void)::fcntl(fd, F_OFD_SETLK, &fl);
      }
    }
    ::_exit(0);
  }
  ::close(stop[0]);
  const std::string named = "(lock-toggler, pid " + std::to_string(child) + ")";
  int opened = 0, refused = 0;
  for (int i = 0; i < 300; ++i) {
    std::unique_ptr<FileDevice> device;
    const Status s = FileDevice::open(path, false, device);
    if (s) {
      ++opened;
    } else {
      ++refused;
      CHECK_MESSAGE(contains(s.message(), named), s.message());
    }
    device.reset();  // lets the child lock again
    std::this_thread::sleep_for(std::chrono::microseconds(500 + 1000 * (i % 7)));
  }
  ::close(stop[1]);
  int status = 0;
  ::waitpid(child, &status, 0);
  INFO("opened " << opened << ", refused naming the child " << refused);
  CHECK(opened > 0);
}

TEST_CASE("the lock holder lookup finds the process by the file's device and inode") {
  TempDir dir;
  const std::string path = make_file(dir, "disk", 4096);
  const std::string other = make_file(dir, "other", 4096);
  LockHoldingChild holder(path, {{F_RDLCK, 100, 1}, {F_RDLCK, 101, 1}}, "qemu-like");
  struct stat st {
  }, other_st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  REQUIRE(::stat(other.c_str(), &other_st) == 0);
  const auto holders = find_lock_holders(st.st_dev, st.st_ino, 0, 0, FileLockMode::exclusive);
  REQUIRE(holders.size() == 1);
  CHECK(holders[0].pid == holder.pid());
  CHECK(holders[0].command == "qemu-like");
  // Only locks that overlap the range and conflict with the mode count.
  CHECK(find_lock_holders(st.st_dev, st.st_ino, 101, 1, FileLockMode::exclusive).size() == 1);
  CHECK(find_lock_holders(st.st_dev, st.st_ino, 102, 0, FileLockMode::exclusive).empty());
  CHECK(find_lock_holders(st.st_dev, st.st_ino, 0, 0, FileLockMode::shared_read).empty());  // read locks only
  CHECK(find_lock_holders(other_st.st_dev, other_st.st_ino, 0, 0, FileLockMode::exclusive).empty());
}

TEST_CASE("a read-only open lets readers in and keeps writers and resizers out, in QEMU's lock bytes") {
  TempDir dir;
  const std::string path = make_file(dir, "disk", 4096);
  {
    LockHoldingChild reader(path, {{F_RDLCK, 100, 1}}, "qemu-reader");  // qemu-io -r
    std::unique_ptr<FileDevice> first, second;
    REQUIRE_OK(FileDevice::open(path, true, first));
    REQUIRE_OK(FileDevice::open(path, true, second));  // another read-only origin
    CHECK(byte_is_locked(path, 201));                  // QEMU opening for write tests this byte and fails
    CHECK(byte_is_locked(path, 203));                  // ... and for resize this one
    CHECK_FALSE(byte_is_locked(path, 200));            // QEMU opening for read tests this one and succeeds
    std::unique_ptr<FileDevice> writer;
    CHECK_ERRC(FileDevice::open(path, false, writer), Errc::already_exists);  // held by this process
  }
  {
    LockHoldingChild writer(path, {{F_RDLCK, 100, 1}, {F_RDLCK, 101, 1}}, "qemu-writer");  // qemu-io
    std::unique_ptr<FileDevice> device;
    const Status status = FileDevice::open(path, true, device);
    CHECK(status.code() == Errc::busy);
    CHECK_MESSAGE(contains(status.message(), "open for writing by another process (qemu-writer, pid " +
                                                 std::to_string(writer.pid()) + ")"),
                  status.message());
  }
  {
    LockHoldingChild reader(path, {{F_RDLCK, 100, 1}}, "qemu-reader");
    std::unique_ptr<FileDevice> device;
    CHECK_ERRC(FileDevice::open(path, false, device), Errc::busy);  // read-write needs the file to itself
  }
}

TEST_CASE("a second read-write open in this process is refused as already in use, until the first closes") {
  TempDir dir;
  const std::string path = make_file(dir, "disk", 4096);
  std::unique_ptr<FileDevice> first, second;
  REQUIRE_OK(FileDevice::open(path, false, first));
  const Status again = FileDevice::open(path, false, second);
  CHECK(again.code() == Errc::already_exists);
  CHECK_MESSAGE(contains(again.message(), "already open in this process"), again.message());
  first.reset();
  REQUIRE_OK(FileDevice::open(path, false, second));
}

TEST_CASE("the lock outlives the thread that opened the file and ends with the device") {
  TempDir dir;
  const std::string path = make_file(dir, "disk", 4096);
  std::unique_ptr<FileDevice> device;
  std::thread opener([&] { CHECK_OK(FileDevice::open(path, false, device)); });
  opener.join();
  REQUIRE(device);
  CHECK(byte_is_locked(path, 0));
  CHECK(byte_is_locked(path, 1 << 30));  // the whole file, also beyond its end
  device.reset();
  CHECK_FALSE(byte_is_locked(path, 0));
}
