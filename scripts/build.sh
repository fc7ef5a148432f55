#!/usr/bin/env bash
# Configures and builds pgmux (binary and tests) with CMake + Ninja.
#   scripts/build.sh [ninja targets...]
# BUILD_DIR (default: build) picks another build directory; BUILD_TYPE (default RelWithDebInfo);
# CMAKE_ARGS adds configure options, e.g. CMAKE_ARGS=-DPGMUX_TEST_BASEPORT=26433 when another
# checkout's tests run on this machine at the same time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir="${BUILD_DIR:-build}"
read -r -a extra_args <<<"${CMAKE_ARGS:-}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "${extra_args[@]}"
ninja -C "$build_dir" "$@"
