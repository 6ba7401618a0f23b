#!/usr/bin/env bash
# Build every cargo-fuzz target (installing cargo-fuzz when missing). Stable Rust: no
# sanitizer; -O keeps mail-parser's debug assertions off as in every other profile.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --version "^0.13" --locked --quiet
fi
export CARGO_TARGET_DIR="${ARFWIRE_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-/var/tmp/arfwire-target}-fuzz}"
cargo fuzz build -O --sanitizer none
echo "fuzz targets built: $(cargo fuzz list | tr '\n' ' ')"
