#!/usr/bin/env bash
# Wall time of benchmarks/paper_grid.sh with the T1 cache (a fresh one) and without it, on the
# same grid, and how many T1 models its runs trained (environment.json: t1_cache entries not hit).
#
#   bash benchmarks/paper_grid_t1_cache.sh [JOBS] [bench run args...]
#   e.g. PAPER_GRID_METHODS="SinMoAll FineSmax SinMo" bash benchmarks/paper_grid_t1_cache.sh 2 --epochs 2
set -eu
jobs=${1:-2}
shift $(( $# < 1 ? $# : 1 ))
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "| T1 cache | runs | T1 models trained | wall time |"
echo "|---|---|---|---|"
for mode in on off; do
    if [ "$mode" = on ]; then export BENCH_T1_CACHE="$scratch/t1"; else export BENCH_T1_CACHE=off; fi
    start=$(date +%s.%N)
    bash "$here/paper_grid.sh" "$scratch/$mode" "$jobs" 0 "$@" > "$scratch/$mode.out"
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    runs=$(grep -c "rc=0" "$scratch/$mode.out" || true)
    trained=$(cat "$scratch/$mode"/runs/*/environment.json | grep -c '"hit": false' || true)
    printf "| %s | %s | %s | %.0f s |\n" "$mode" "$runs" "$trained" "$seconds"
done
