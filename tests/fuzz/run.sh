#!/usr/bin/env bash
# Runs one libFuzzer target for a given time: tests/fuzz/run.sh TARGET SECONDS [extra libFuzzer flags]
#   TARGET   fuzz_cli | fuzz_control | fuzz_segment
# Builds the target first if needed (clang, -DBALANCE_FUZZ=ON) in $BALANCE_FUZZ_BUILD (default
# build-fuzz). Starts from the committed corpus (tests/fuzz/corpus/TARGET), works in a copy
# ($BALANCE_FUZZ_BUILD/fuzz-work/TARGET/corpus) so new inputs never land in the repository, and
# writes crashes to $BALANCE_FUZZ_BUILD/fuzz-work/TARGET/artifacts/. Exits non-zero on a finding.
# A finding worth keeping: minimize it (TARGET -minimize_crash=1 -runs=10000 FILE) and add it
# to the committed corpus once fixed, so the CTest regression (TARGET_corpus) replays it.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${1:?usage: tests/fuzz/run.sh TARGET SECONDS [libFuzzer flags]}
seconds=${2:?usage: tests/fuzz/run.sh TARGET SECONDS [libFuzzer flags]}
shift 2
case "$target" in fuzz_cli|fuzz_control|fuzz_segment) ;; *) echo "unknown target $target" >&2; exit 64 ;; esac
build=${BALANCE_FUZZ_BUILD:-build-fuzz}
if [[ ! -x "$build/fuzz/$target" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DBALANCE_FUZZ=ON >/dev/null
fi
ninja -C "$build" "$target" >/dev/null
work="$build/fuzz-work/$target"
mkdir -p "$work/corpus" "$work/artifacts"
cp -n tests/fuzz/corpus/"$target"/* "$work/corpus/" 2>/dev/null || true
echo "=== $target for ${seconds}s (corpus $work/corpus, findings in $work/artifacts)"
exec "$build/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$work/artifacts/" "$@" "$work/corpus"
