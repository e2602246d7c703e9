// SPDX-License-Identifier: BSD-3-Clause
// request_errno.h — the errno a front end reports for a failed block I/O request, from the engine's Status.
// Both front ends use it for requests' errors (nbdsnapd turns it into the NBD error value, the nbdkit filter
// hands it to nbdkit), so a client sees the same error from either.
#pragma once

#include "status.h"

namespace nbdsnap {

// The errno a block I/O request (read, write, trim, zero, flush, block status) reports for a Status:
// to_errno's where a block protocol can carry it (NBD proto.md's error values: EPERM, EIO, ENOMEM, EINVAL,
// ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN), else EIO — an image of a destroyed snapshot (ENOENT), a busy or
// corrupted one: the data is unavailable, the request itself was not wrong. Both front ends report requests'
// errors so.
int to_request_errno(const Status& status);

}  // namespace nbdsnap
