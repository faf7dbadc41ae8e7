#!/usr/bin/env bash
# dedup under memory budgets: for each corpus size, runs without
# `--max-memory` (the default budget, half the memory available: "default")
# and with each `--max-memory` given, interleaved round by round, and prints per
# size and budget the median wall time, documents/s, the ratio to the
# no-budget run of the same round set, the peak RSS (GNU time's, the highest
# over the runs), bytes spilled and peak temporary disk (`summary.json`), and
# whether `kept.jsonl` and `clusters.jsonl` are byte-identical to the
# no-budget run's.
#
#   benches/budget/run.sh [--docs "N ..."] [--budgets "B ..."] [--runs R] [--dir DIR]
#
# Defaults: --docs "1000000 5000000", --budgets "1G 128M", --runs 3, --dir a
# temporary folder removed at the end. Corpora are short documents
# (`drainpipe generate --min-words 20 --max-words 40`, about 220 bytes each,
# so 20M fit in 4.4 GB); with --dir they are kept there and reused. Outputs
# and spills go to DIR too: put it on the disk you want measured.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
docs="1000000 5000000"
budgets="1G 128M"
runs=3
dir=
while [ $# -gt 0 ]; do
    case $1 in
        --docs) docs=$2; shift 2 ;;
        --budgets) budgets=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        *) echo "usage: $0 [--docs \"N ...\"] [--budgets \"B ...\"] [--runs R] [--dir DIR]" >&2; exit 2 ;;
    esac
done
[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "needs python3 to read summary.json" >&2; exit 1; }

(cd "$root" && cargo build --release -q)
drainpipe=${CARGO_TARGET_DIR:-$root/target}/release/drainpipe
if [ -z "$dir" ]; then
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"
results=$dir/results.tsv
: > "$results"

# One run: appends docs, budget, wall s, peak KB, spilled, peak temp, md5s.
one() {
    local n=$1 budget=$2 corpus=$3 out=$dir/out
    local args=(dedup -q "$corpus" -o "$out")
    [ "$budget" = none ] || args+=(--max-memory "$budget")
    rm -rf "$out"
    /usr/bin/time -o "$dir/time" -f "%e %M" "$drainpipe" "${args[@]}" > /dev/null
    local sums spill
    sums=$(cat "$out/kept.jsonl" "$out/clusters.jsonl" | md5sum | cut -c1-12)
    spill=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["memory"]; print(m["bytes_spilled"], m["peak_temp_bytes"])' "$out/summary.json")
    printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$budget" "$(tr ' ' '\t' < "$dir/time")" "$(tr ' ' '\t' <<< "$spill")" "$sums" >> "$results"
    rm -rf "$out"
}

for n in $docs; do
    corpus=$dir/short-$n.jsonl
    [ -s "$corpus" ] || "$drainpipe" generate --docs "$n" --min-words 20 --max-words 40 -o "$corpus"
    echo "corpus: $n docs, $(du -hL "$corpus" | cut -f1); $runs round(s); load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    for _ in $(seq "$runs"); do
        for budget in none $budgets; do
            one "$n" "$budget" "$corpus"
        done
    done
done

python3 - "$results" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {}
for n, budget, wall, kb, spilled, temp, sums in rows:
    by.setdefault((int(n), budget), []).append((float(wall), int(kb), int(spilled), int(temp), sums))
print("| documents | budget | median wall s | docs/s | ratio to default | peak RSS MiB | bytes spilled | peak temp bytes | outputs as default |")
print("|---|---|---|---|---|---|---|---|---|")
for (n, budget), runs in by.items():
    wall = statistics.median(r[0] for r in runs)
    base = statistics.median(r[0] for r in by[(n, "none")])
    same = all(r[4] == by[(n, "none")][0][4] for r in runs)
    print(f"| {n:,} | {'default' if budget == 'none' else budget} | {wall:.2f} | {n / wall:,.0f} | {base / wall:.2f} | "
          f"{max(r[1] for r in runs) / 1024:.0f} | {max(r[2] for r in runs):,} | "
          f"{max(r[3] for r in runs):,} | {'yes' if same else 'NO'} |")
EOF
