#!/usr/bin/env bash
# Runs one fuzz target for a fixed time and prints libFuzzer's final figures.
#
#   fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
#   fuzz/run.sh --merge-seeds TARGET
#   targets (fuzz/fuzz_targets/): decode_signed, decode_wire, verify_merkle, path_rules,
#   frame_reader, head_record, share_link, catalog_parts, catalog_tree, licence,
#   delivery_report
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain is enough, RUSTC_BOOTSTRAP=1
# lets cargo-fuzz use the unstable flags it needs. Every run starts from the committed seeds in
# fuzz/seeds/TARGET (a second corpus directory, read but not written) and the corpus grown by
# earlier runs in fuzz/corpus/TARGET, where new inputs go. A crash is saved in
# fuzz/artifacts/TARGET, the whole libFuzzer log goes to fuzz/target/logs/TARGET.log (corpus,
# artifacts and target are ignored by git). Exits non-zero if the target crashed or failed an
# assertion.
#
# --merge-seeds replaces fuzz/seeds/TARGET with a small set of its seeds and the grown corpus
# that reaches every code edge either reaches (libFuzzer's -set_cover_merge=1, edges only);
# commit the result if it stays small (well under 200 KiB).
set -euo pipefail

usage="usage: $0 TARGET SECONDS [libFuzzer flags...] | $0 --merge-seeds TARGET"
merge=false
if [ "${1:-}" = --merge-seeds ]; then
    merge=true
    shift
fi
target=${1:?$usage}
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$fuzz_dir")
seeds=$fuzz_dir/seeds/$target
corpus=$fuzz_dir/corpus/$target
log_dir=$fuzz_dir/target/logs
log=$log_dir/$target.log
mkdir -p "$log_dir" "$corpus"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi
if [ ! -d "$seeds" ]; then
    echo "no seeds for $target in fuzz/seeds/$target: every target has some (see --merge-seeds)" >&2
    exit 2
fi
cd "$root"

if $merge; then
    merged=$(mktemp -d)
    trap 'rm -rf "$merged"' EXIT
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$merged" "$seeds" "$corpus" -- \
        -set_cover_merge=1 -use_counters=0 -rss_limit_mb=2048 >"$log" 2>&1 || {
        echo "merging the seeds of $target failed; last lines of $log:" >&2
        tail -n 30 "$log" >&2
        exit 2
    }
    rm -rf "$seeds"
    mkdir -p "$seeds"
    cp "$merged"/* "$seeds"/
    echo "seeds: $(find "$seeds" -type f | wc -l) files, $(du -sk "$seeds" | cut -f1) KiB in fuzz/seeds/$target"
    exit 0
fi

seconds=${2:?$usage}
shift 2
case $seconds in '' | *[!0-9]*) echo "$usage" >&2; exit 2 ;; esac

status=0
RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$corpus" "$seeds" -- \
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
echo "corpus: $(find "$corpus" -type f | wc -l) files in fuzz/corpus/$target (seeds: $(find "$seeds" -type f | wc -l))"
