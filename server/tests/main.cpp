// SPDX-License-Identifier: BSD-3-Clause
// main.cpp — doctest's runner for nbdsnapd's unit tests (wire format, handshake, request execution, config).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
