#!/usr/bin/env bash
# Wall time of the paper grid (`bench grid`, a run per method and seed, JOBS per device) with
# the T1 cache (a fresh one: the grid's T1 stage trains each T1 model once) and without it
# (every run trains its own), and how many T1 models were trained (`"hit": false` entries in
# the runs' environment.json and the T1 jobs' outcomes).
#
#   bash benchmarks/paper_grid_t1_cache.sh [JOBS] [bench grid args...]
#   e.g. PAPER_GRID_METHODS="SinMoAll,FineSmax,SinMo" bash benchmarks/paper_grid_t1_cache.sh 2 --epochs 2
set -eu
jobs=${1:-2}
shift $(( $# < 1 ? $# : 1 ))
methods=${PAPER_GRID_METHODS:-"Conure,HAT,TERACON,MTL,PeterRec,FineAll,SinMoAll,SinMo,FineSmax,DNN"}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "| T1 cache | runs | T1 models trained | wall time |"
echo "|---|---|---|---|"
for mode in on off; do
    if [ "$mode" = on ]; then export BENCH_T1_CACHE="$scratch/t1"; else export BENCH_T1_CACHE=off; fi
    start=$(date +%s.%N)
    python -m bench grid --name paper --preset paper --methods "$methods" --seeds 0,1,2 --per-device "$jobs" \
        --results "$scratch/$mode" "$@" > "$scratch/$mode.out" 2>&1 || true
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    runs=$(grep -c "^paper-.* rc=0 " "$scratch/$mode.out" || true)
    trained=$(cat "$scratch/$mode"/runs/*/environment.json "$scratch/$mode"/grids/paper/t1/*.json 2>/dev/null \
              | grep -c '"hit": false' || true)
    printf "| %s | %s | %s | %.0f s |\n" "$mode" "$runs" "$trained" "$seconds"
done
