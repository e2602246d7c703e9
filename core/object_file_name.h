// SPDX-License-Identifier: BSD-3-Clause
// object_file_name.h — the one rule that turns an origin's or snapshot's name into a file name.
//
// Object names are 1..255 bytes (check_object_name), and Linux file names are at most 255 bytes (NAME_MAX),
// so NAME + ".cbt" + ".tmp" or NAME + ".nbdsnap-diff" cannot always be a file name. A name that is a valid
// object name and leaves room for the suffix and a temporary suffix keeps the plain form NAME+SUFFIX, the
// file name every earlier version used (so their CBT state still resumes). Any other name becomes
// PREFIX@HASH+SUFFIX: PREFIX is the start of the name with unsafe bytes replaced by '_', cut at a UTF-8
// character boundary; HASH is 16 hex digits of the 64-bit FNV-1a hash of the whole name. Object names never
// hold '@', so a hashed file name never equals a plain one. Two names may still share a hash (odds 2^-64):
// files that matter across runs therefore carry the readable name inside (the CBT state file does), and a
// reader treats a file holding another name as missing.
#pragma once

#include <string>
#include <string_view>

namespace nbdsnap {

// The suffix of the file written before a rename into place (durable_file.h).
inline constexpr std::string_view kTemporaryFileSuffix = ".tmp";
// The longest file name Linux file systems take (NAME_MAX).
inline constexpr size_t kMaxFileNameBytes = 255;

// The file name (no directory) for the object `name` with `suffix` (".cbt", ".nbdsnap-diff"): NAME+SUFFIX
// when `name` is a valid object name and NAME+SUFFIX+kTemporaryFileSuffix fits in kMaxFileNameBytes, else the
// hashed form above, which also fits with kTemporaryFileSuffix appended. The same inputs give the same file
// name in every run. REQUIRES: suffix.size() <= 64. Thread-safe (pure function).
std::string object_file_name(std::string_view name, std::string_view suffix);

// True when object_file_name(name, suffix) is the plain form NAME+SUFFIX.
bool object_file_name_is_plain(std::string_view name, std::string_view suffix);

}  // namespace nbdsnap
