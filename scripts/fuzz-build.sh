#!/usr/bin/env bash
# Build every cargo-fuzz target (installing cargo-fuzz when missing).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --version "^0.13" --locked --quiet
fi
CARGO_TARGET_DIR="${ARFWIRE_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-target}-fuzz}" \
    cargo fuzz build --sanitizer none
