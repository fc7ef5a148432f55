#!/usr/bin/env bash
# Configures and builds pgmux (binary and tests) with CMake + Ninja.
#   scripts/build.sh [ninja targets...]
# BUILD_DIR (default: build) picks another build directory; BUILD_TYPE (default RelWithDebInfo).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_dir="${BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}"
ninja -C "$build_dir" "$@"
