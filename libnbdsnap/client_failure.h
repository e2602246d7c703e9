// SPDX-License-Identifier: BSD-3-Clause
// client_failure.h — the one way the client library's own code (not a server's reply) makes an Error.
#pragma once

#include <string>
#include <utility>

#include "nbdsnap/result.h"

namespace nbdsnap::client {

// An Error from the client side: `code` is one of result.h's k* codes, `err` the local errno or 0.
inline Error client_failure(const char* code, int err, std::string message) {
  return Error{ErrorSource::client, code, err, std::move(message)};
}

}  // namespace nbdsnap::client
