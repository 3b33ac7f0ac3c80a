#!/usr/bin/env bash
# Called by .ci/run: replay every committed corpus (-runs=0), then fuzz each target for
# FUZZ_SECONDS (default 60) under AddressSanitizer. See replay.sh and README.md.
set -euo pipefail
exec "$(dirname "$0")/replay.sh" "$@"
