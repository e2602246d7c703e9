// SPDX-License-Identifier: BSD-3-Clause
// status_test.cpp — error values, their names, and the one mapping to errno.
#include "status.h"
#include "request_errno.h"

#include <doctest/doctest.h>

#include <cerrno>

using namespace nbdsnap;

TEST_CASE("a default status is ok") {
  const Status status;
  CHECK(status.is_ok());
  CHECK(static_cast<bool>(status));
  CHECK(status.code() == Errc::ok);
  CHECK(Status::ok().is_ok());
}

TEST_CASE("a failed status keeps its code and message") {
  const Status status(Errc::not_found, "snapshot 'x' does not exist");
  CHECK_FALSE(status.is_ok());
  CHECK(status.code() == Errc::not_found);
  CHECK(status.message() == "snapshot 'x' does not exist");
  CHECK(status.to_string() == "not_found: snapshot 'x' does not exist");
}

TEST_CASE("error codes are named as in the control protocol") {
  CHECK(std::string(errc_name(Errc::invalid_argument)) == "invalid_argument");
  CHECK(std::string(errc_name(Errc::out_of_range)) == "out_of_range");
  CHECK(std::string(errc_name(Errc::not_found)) == "not_found");
  CHECK(std::string(errc_name(Errc::already_exists)) == "already_exists");
  CHECK(std::string(errc_name(Errc::busy)) == "busy");
  CHECK(std::string(errc_name(Errc::bad_state)) == "bad_state");
  CHECK(std::string(errc_name(Errc::read_only)) == "read_only");
  CHECK(std::string(errc_name(Errc::no_space)) == "no_space");
  CHECK(std::string(errc_name(Errc::io_error)) == "io_error");
  CHECK(std::string(errc_name(Errc::corrupted)) == "corrupted");
  CHECK(std::string(errc_name(Errc::not_supported)) == "not_supported");
  CHECK(std::string(errc_name(Errc::overflow)) == "overflow");
  CHECK(std::string(errc_name(Errc::name_too_long)) == "name_too_long");
}

TEST_CASE("statuses map to the errno a front end reports") {
  CHECK(to_errno(Status(Errc::invalid_argument, "")) == EINVAL);
  CHECK(to_errno(Status(Errc::not_found, "")) == ENOENT);
  CHECK(to_errno(Status(Errc::already_exists, "")) == EEXIST);
  CHECK(to_errno(Status(Errc::busy, "")) == EBUSY);
  CHECK(to_errno(Status(Errc::no_space, "")) == ENOSPC);
  CHECK(to_errno(Status(Errc::io_error, "")) == EIO);
  CHECK(to_errno(Status(Errc::overflow, "")) == EOVERFLOW);
  CHECK(to_errno(Status(Errc::not_supported, "")) == EOPNOTSUPP);
  CHECK(to_errno(Status(Errc::name_too_long, "")) == ENAMETOOLONG);
  const int read_only = to_errno(Status(Errc::read_only, ""));
  CHECK((read_only == EROFS || read_only == EPERM));
  CHECK(to_errno(Status(Errc::corrupted, "")) != 0);
  CHECK(to_errno(Status(Errc::bad_state, "")) != 0);
  CHECK(to_errno(Status(Errc::out_of_range, "")) != 0);
}

TEST_CASE("a status from errno maps common errors and keeps the system message") {
  const Status missing = Status::from_errno(ENOENT, "open /nope");
  CHECK(missing.code() == Errc::not_found);
  CHECK(missing.message().find("open /nope") != std::string::npos);
  CHECK(Status::from_errno(ENOSPC, "write").code() == Errc::no_space);
  CHECK(Status::from_errno(EIO, "read").code() == Errc::io_error);
  CHECK(Status::from_errno(EEXIST, "create").code() == Errc::already_exists);
  CHECK(Status::from_errno(EINVAL, "x").code() == Errc::invalid_argument);
  CHECK_FALSE(Status::from_errno(EBADF, "x").is_ok());
}

TEST_CASE("a file name that is too long is reported as such, not as an I/O error") {
  const Status status = Status::from_errno(ENAMETOOLONG, "create /state/x.cbt.tmp");
  CHECK(status.code() == Errc::name_too_long);
  CHECK(to_errno(status) == ENAMETOOLONG);
  CHECK(status.to_string() == "name_too_long: create /state/x.cbt.tmp: File name too long");
}

TEST_CASE("I/O requests report errors a block protocol can carry: a destroyed image is EIO, not ENOENT") {
  CHECK(to_request_errno(Status{Errc::not_found, "snapshot destroyed"}) == EIO);
  CHECK(to_request_errno(Status{Errc::busy, "x"}) == EIO);
  CHECK(to_request_errno(Status{Errc::corrupted, "x"}) == EIO);
  CHECK(to_request_errno(Status{Errc::invalid_argument, "x"}) == EINVAL);
  CHECK(to_request_errno(Status{Errc::no_space, "x"}) == ENOSPC);
  CHECK(to_request_errno(Status{Errc::permission_denied, "x"}) == EPERM);
  CHECK(to_request_errno(Status{Errc::not_supported, "x"}) == EOPNOTSUPP);
  CHECK(to_request_errno(Status::ok()) == 0);
}
