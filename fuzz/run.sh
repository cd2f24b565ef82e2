#!/usr/bin/env bash
# Runs one fuzz target for a fixed time and prints libFuzzer's final figures.
#
#   fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
#   targets: decode_signed, decode_wire, verify_merkle, path_rules (fuzz/fuzz_targets/)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain is enough, RUSTC_BOOTSTRAP=1
# lets cargo-fuzz use the unstable flags it needs. The corpus grows in fuzz/corpus/TARGET, a crash
# is saved in fuzz/artifacts/TARGET, the whole libFuzzer log goes to fuzz/target/logs/TARGET.log
# (all three are ignored by git). Exits non-zero if the target crashed or failed an assertion.
set -euo pipefail

usage="usage: $0 TARGET SECONDS [libFuzzer flags...]"
target=${1:?$usage}
seconds=${2:?$usage}
shift 2
case $seconds in '' | *[!0-9]*) echo "$usage" >&2; exit 2 ;; esac

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz_dir")
log_dir=$fuzz_dir/target/logs
log=$log_dir/$target.log
mkdir -p "$log_dir" "$fuzz_dir/corpus/$target"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi

cd "$root"
status=0
RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 "$@" \
    >"$log" 2>&1 || status=$?

if [ "$status" -ne 0 ]; then
    echo "fuzz target $target failed (exit $status); last lines of $log:" >&2
    tail -n 60 "$log" >&2
    exit "$status"
fi
# libFuzzer's last status line (#N DONE cov: ... ft: ... corp: ... exec/s: ...) and its totals.
grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1
grep -E '^(Done [0-9]+ runs|stat::)' "$log" || true
echo "corpus: $(find "$fuzz_dir/corpus/$target" -type f | wc -l) files in fuzz/corpus/$target"
