#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it. Starts PostgreSQL and the test broker itself
# (installing them when missing), then: format check, lints, every test, the fuzz build and
# a short benchmark run.
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/arfwire-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

step() { printf '\n=== %s\n' "$*"; }

step "services"
scripts/services.sh up
# shellcheck disable=SC1091
source .services.env
trap 'scripts/services.sh down' EXIT

step "format"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked

step "fuzz targets build"
scripts/fuzz-build.sh

step "benchmark (short run)"
# The short run skips timing the bare parser on the hostile shapes (one of them costs it
# seconds); a full run (cargo bench) shows both.
ARFWIRE_BENCH_MS="${ARFWIRE_BENCH_MS:-300}" ARFWIRE_BENCH_HOSTILE_BARE="${ARFWIRE_BENCH_HOSTILE_BARE:-0}" cargo bench -p arfwire-tests --bench pipeline --locked

step "done"
