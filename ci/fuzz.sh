#!/usr/bin/env bash
# A short fuzzing run of every target in fuzz/ (configuration parsing and
# response classification; docs/FUZZING.md says what each one checks):
#
#   1. cargo-fuzz from crates.io, pinned, installed into .cache/cargo-fuzz
#      (git-ignored) unless already there;
#   2. the targets built with libFuzzer and AddressSanitizer on the stable
#      toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer=address,
#      -Cpasses=sancov-module ...), which RUSTC_BOOTSTRAP=1 lets stable accept;
#   3. each target run for FUZZ_SECONDS (default 10) seconds from its corpus
#      in fuzz/corpus/<target> (git-ignored, so empty on a clean clone).
#
# Exits non-zero if any target crashes, panics (a property violated), hangs
# on one input for more than 10 s or leaks; the input is then in
# fuzz/artifacts/<target>/, and the command to replay it is printed.
# Run from anywhere; .ci/run calls it last.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cargo_fuzz_version=0.13.2
seconds=${FUZZ_SECONDS:-10}
cache=$root/.cache/cargo-fuzz
start=$SECONDS

if ! "$cache/bin/cargo-fuzz" --version 2>/dev/null | grep -qx "cargo-fuzz $cargo_fuzz_version"; then
    echo "--- cargo install cargo-fuzz $cargo_fuzz_version (into .cache/cargo-fuzz)"
    cargo install cargo-fuzz --locked --version "$cargo_fuzz_version" --root "$cache"
fi
export PATH=$cache/bin:$PATH
export RUSTC_BOOTSTRAP=1
# The config target writes its files under $TMPDIR; keep them in the build
# directory (git-ignored) instead of /tmp.
export TMPDIR=$root/fuzz/target/tmp
mkdir -p "$TMPDIR"

cd fuzz
echo "--- cargo fuzz build (AddressSanitizer)"
cargo fuzz build
installed_and_built=$((SECONDS - start))

logs=$root/fuzz/target/ci-logs
mkdir -p "$logs"
passed=0
failed=()
# The minimised inputs of past findings (docs/FUZZING.md) must keep passing.
for dir in reproducers/*/; do
    target=$(basename "$dir")
    echo "--- replay the findings of $target"
    if cargo fuzz run "$target" "$dir"* -- -timeout=10 >"$logs/$target-replay.log" 2>&1; then
        passed=$((passed + 1))
    else
        failed+=("$target (replay of $dir)")
        grep -E -A 3 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" \
            "$logs/$target-replay.log" | head -n 20 || true
    fi
done
for target in $(cargo fuzz list); do
    echo "--- cargo fuzz run $target (${seconds}s)"
    # -timeout: one input taking 10 s is a hang, reported like a crash.
    if cargo fuzz run "$target" -- -max_total_time="$seconds" -timeout=10 \
        >"$logs/$target.log" 2>&1; then
        passed=$((passed + 1))
    else
        failed+=("$target")
        grep -E -A 3 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" \
            "$logs/$target.log" | head -n 20 || true
        echo "replay: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $target artifacts/$target/<file>"
    fi
    # libFuzzer's last status line: executions, coverage, features, corpus.
    grep -E "^#[0-9]+" "$logs/$target.log" | tail -n 1 || true
    grep -E "^Done [0-9]+ runs" "$logs/$target.log" || true
done
rm -rf "$TMPDIR"

echo "--- fuzz: install and build ${installed_and_built}s, total $((SECONDS - start))s"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz targets that failed: ${failed[*]} (inputs in fuzz/artifacts/)"
fi
echo "fuzz: $passed passed, ${#failed[@]} failed"
[ "${#failed[@]}" -eq 0 ]
