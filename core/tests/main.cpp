// SPDX-License-Identifier: BSD-3-Clause
// main.cpp — doctest's runner for the engine's unit tests.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
