#!/usr/bin/env bash
# Compare drainpipe dedup with a datasketch pipeline (Pool(2) and one process)
# on the same generated corpus; prints docs/s, peak RSS and duplicates of each
# (medians over the runs) and the ratio drainpipe / datasketch.
#
#   benches/compare/run.sh [--docs N] [--runs R]      (defaults: 20000, 3)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
docs=20000
runs=3
while [ $# -gt 0 ]; do
    case $1 in
        --docs) docs=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        *) echo "usage: $0 [--docs N] [--runs R]" >&2; exit 2 ;;
    esac
done
[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }

# Python side: a virtualenv with a pinned datasketch.
[ -x "$here/.venv/bin/python" ] || python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install -q datasketch==2.0.0
python=$here/.venv/bin/python

# Rust side: the release binary and the corpus.
(cd "$root" && cargo build --release -q)
drainpipe=$root/target/release/drainpipe
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$drainpipe" generate --docs "$docs" -o "$work/corpus.jsonl"
echo "corpus: $docs docs, $(du -h "$work/corpus.jsonl" | cut -f1); $runs run(s) of each; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# One line per run and tool: tool, wall seconds, peak RSS (KiB), duplicates, JSON of the Python run.
results=$work/results.tsv
timed() {  # timed CMD...: runs CMD; sets secs (wall, ns clock) and kib (peak RSS from GNU time)
    local t0 t1
    t0=$(date +%s%N)
    /usr/bin/time -f "%M" -o "$work/time" "$@"
    t1=$(date +%s%N)
    secs=$(( (t1 - t0) / 1000000 ))e-3
    kib=$(cat "$work/time")
}
for run in $(seq "$runs"); do
    # From an empty folder, so the run does not also delete the last one's outputs.
    rm -rf "$work/out"
    timed "$drainpipe" dedup "$work/corpus.jsonl" -o "$work/out" -w 2 --no-progress 2>"$work/drainpipe.log"
    dups=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["result"]["duplicates_removed"])' "$work/out/summary.json")
    printf 'drainpipe -w 2\t%s\t%s\t%s\t{}\n' "$secs" "$kib" "$dups" >>"$results"
    for processes in 2 1; do
        timed "$python" "$here/datasketch_pool.py" "$work/corpus.jsonl" --processes "$processes" >"$work/ds.json"
        label="datasketch Pool($processes)"; [ "$processes" = 1 ] && label="datasketch 1 proc"
        printf '%s\t%s\t%s\t-\t%s\n' "$label" "$secs" "$kib" "$(cat "$work/ds.json")" >>"$results"
    done
    echo "run $run done; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done

"$python" - "$results" "$docs" <<'EOF'
import json, statistics, sys
rows, docs = {}, int(sys.argv[2])
for line in open(sys.argv[1]):
    tool, secs, kib, dups, js = line.rstrip("\n").split("\t")
    rows.setdefault(tool, []).append((float(secs), int(kib), dups, json.loads(js)))

def median(values):
    return statistics.median(values)

print(f"{'':18} {'docs/s':>9} {'process s':>9} {'peak RSS MiB':>26} {'duplicates':>10}  docs/s of each run")
rate = {}
for tool, runs in rows.items():
    wall = median(r[0] for r in runs)
    if tool.startswith("drainpipe"):
        each = [docs / r[0] for r in runs]  # whole process, start to exit
        rss = f"{median(r[1] for r in runs) / 1024:.0f}"
        dups = runs[0][2]
    else:
        each = [r[3]["docs_per_s"] for r in runs]  # reading to result, after imports
        main = median(r[3]["peak_rss_main_mib"] for r in runs)
        worker = runs[0][3]["peak_rss_largest_worker_mib"]
        rss = f"{main:.0f}" + (f" main + {runs[0][3]['processes']} x {worker:.0f} workers" if worker else "")
        dups = runs[0][3]["duplicates"]
    rate[tool] = median(each)
    print(f"{tool:18} {rate[tool]:9.0f} {wall:9.2f} {rss:>26} {dups:>10}  {' '.join(f'{x:.0f}' for x in each)}")
dp = rate["drainpipe -w 2"]
dp_runs = rows["drainpipe -w 2"]
for tool in ("datasketch Pool(2)", "datasketch 1 proc"):
    # Run k of each tool ran back to back: their ratio, run by run, follows
    # the machine's drift less than the ratio of the medians.
    paired = median(docs / d[0] / r[3]["docs_per_s"] for d, r in zip(dp_runs, rows[tool]))
    # Both timed the same way, the whole process from start to exit
    # (datasketch's then includes starting Python and its imports).
    processes = median(r[0] / d[0] for d, r in zip(dp_runs, rows[tool]))
    print(f"drainpipe / {tool}: {dp / rate[tool]:.1f}x (paired run by run: {paired:.1f}x; "
          f"whole processes: {processes:.1f}x)")
EOF
