#!/usr/bin/env bash
# Fuzzes the archive reader for a while (default 60 s): scripts/fuzz.sh [SECONDS]
#
# Needs a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`). Not part of scripts/test.sh: building dbkeeper and
# its drivers with sanitizer instrumentation takes minutes. The same property
# (any bytes -> an error or a valid archive, never a panic) is checked on
# stable, in every test run, by tests/faults_proptest.rs and tests/archive_format.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-60}
mkdir -p fuzz/corpus/archive_reader
exec cargo +nightly fuzz run archive_reader fuzz/corpus/archive_reader -- \
    -max_total_time="$seconds" -max_len=65536
