#!/usr/bin/env bash
# Replays every committed corpus, then fuzzes each target for a bounded time under
# AddressSanitizer (cargo-fuzz's default). This is what CI runs (see README.md).
#
#   fuzz/replay.sh                 # replay + 60 s per target
#   FUZZ_SECONDS=0 fuzz/replay.sh  # replay only
#   FUZZ_SECONDS=600 fuzz/replay.sh timer_wheel bus_ops
#
# Exits non-zero on the first crash; the reproducer is left in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(ring_spsc ring_mpmc timer_wheel dead_letters decode bus_ops)
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# One build for all targets (about 1-2 min from scratch on 2 cores).
cargo +nightly fuzz build

for t in "${TARGETS[@]}"; do
    echo "== replay $t (corpus/$t, -runs=0)"
    # -runs=0: execute every corpus file once, fuzz nothing. The corpus dir is copied so
    # that the committed one is never written to.
    work="$(mktemp -d)"
    cp -r "corpus/$t/." "$work/"
    cargo +nightly fuzz run "$t" "$work" -- -runs=0
    if [ "$SECONDS_PER_TARGET" -gt 0 ]; then
        echo "== fuzz $t for ${SECONDS_PER_TARGET}s"
        cargo +nightly fuzz run "$t" "$work" -- \
            -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -print_final_stats=1
    fi
    rm -rf "$work"
done
