#!/usr/bin/env bash
# Benchmarks of api-consumer against node-sim (docs/BENCHMARKS.md).
#
#   bash bench/run.sh              # every scenario, full size
#   bash bench/run.sh --quick      # a small, fast version of every scenario
#   bash bench/run.sh --only S2    # some scenarios (S1..S11, comma-separated)
#
# Builds the release binaries of the main crate (target/release) and the
# harness (bench/target), then runs the harness: one JSON line per scenario
# on stdout, progress and build output on stderr.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! command -v wrk >/dev/null 2>&1; then
    cat >&2 <<'EOF'
bench: wrk is not installed; S2 compares the job with it.
Install it with your package manager, e.g. on Debian or Ubuntu:
    sudo apt-get install wrk
(or `brew install wrk` on macOS), then run bash bench/run.sh again.
EOF
    exit 2
fi

echo "bench: building the release binaries (cargo build --release --locked --bins --example http_stack)" >&2
(cd "$root" && cargo build --release --locked --bins --example http_stack --target-dir "$root/target" >&2)
echo "bench: building the harness (bench/)" >&2
(cd "$root/bench" && cargo build --release --locked --target-dir "$root/bench/target" >&2)

exec "$root/bench/target/release/api-consumer-bench" --root "$root" "$@"
